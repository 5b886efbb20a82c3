//! Three metadata nodes in-process on 127.0.0.1:0: the quorum forms from the peer list alone,
//! commands proposed anywhere reach every image, a killed leader is replaced with a higher term
//! and the image survives, a restarted node rejoins without re-initializing, and a lone node
//! cannot elect itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use silt_raft::{Command, CommandResponse, MetadataNode, NodeConfig};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

struct Member {
    node: MetadataNode,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(
    id: u64,
    dir: PathBuf,
    listener: TcpListener,
    peers: BTreeMap<u64, String>,
) -> Member {
    let node = MetadataNode::start(NodeConfig::new(id, dir, peers)).await.expect("node starts");
    let svc = node.service();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = rx.await;
            })
            .await;
    });
    Member { node, stop: Some(stop), server }
}

async fn kill(mut m: Member) {
    m.node.shutdown().await;
    if let Some(s) = m.stop.take() {
        let _ = s.send(());
    }
    m.server.abort();
}

/// Polls `cond` every 50 ms until it holds or `secs` pass.
async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn register(id: u64) -> Command {
    Command::RegisterBroker {
        kafka_address: String::new(),
        id,
        address: format!("broker{id}:9300"),
        internal_address: String::new(),
        rack: None,
        incarnation: id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_quorum_forms_survives_its_leader_and_refuses_to_run_without_a_majority() {
    let tmp = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push((id, l));
    }
    let mut members = BTreeMap::new();
    for (id, l) in listeners {
        members.insert(id, start(id, tmp.path().join(format!("n{id}")), l, peers.clone()).await);
    }

    tracing::info!("--- formation: one leader, known to all");
    let leader = members[&1].node.wait_for_leader(Duration::from_secs(20)).await.expect("a leader");
    eventually(10, "all agree on the leader", || {
        members.values().all(|m| m.node.leader() == Some(leader))
    })
    .await;
    assert_eq!(members[&1].node.voters().len(), 3);

    tracing::info!("--- proposals from a follower are forwarded");
    let follower = *members.keys().find(|id| **id != leader).unwrap();
    let r = members[&follower].node.propose(register(7)).await.unwrap();
    assert!(matches!(r, CommandResponse::BrokerEpoch(_)), "{r:?}");
    let create = Command::CreateTopic {
        name: "orders".into(),
        assignment: vec![vec![7]],
        configs: BTreeMap::new(),
        uuid: String::new(),
    };
    assert!(matches!(
        members[&leader].node.propose(create).await.unwrap(),
        CommandResponse::TopicId(_)
    ));
    eventually(10, "every image has the topic", || {
        members.values().all(|m| m.node.image().topics.contains_key("orders"))
    })
    .await;

    tracing::info!("--- kill the leader: a new one with a higher term, image intact");
    let term_before = members[&follower].node.term();
    let old = members.remove(&leader).unwrap();
    kill(old).await;
    let survivors: Vec<u64> = members.keys().copied().collect();
    eventually(20, "a new leader among the survivors", || {
        members
            .values()
            .all(|m| m.node.leader().is_some_and(|l| l != leader && survivors.contains(&l)))
    })
    .await;
    assert!(members[&follower].node.term() > term_before);
    let r = members[&survivors[0]].node.propose(register(8)).await.unwrap();
    assert!(matches!(r, CommandResponse::BrokerEpoch(_)));
    assert!(members.values().all(|m| m.node.image().topics.contains_key("orders")));

    tracing::info!("--- restart the old leader on its address: it rejoins and catches up");
    let addr: SocketAddr = peers[&leader].parse().unwrap();
    let listener = TcpListener::bind(addr).await.expect("rebind the old address");
    let back = start(leader, tmp.path().join(format!("n{leader}")), listener, peers.clone()).await;
    eventually(20, "the restarted node sees broker 8", || {
        back.node.image().brokers.contains_key(&8)
    })
    .await;
    members.insert(leader, back);

    tracing::info!("--- stop two of three: no election without a majority");
    // Keep a follower: a leader that lost its quorum may still call itself leader until it
    // hears of a higher term, but cannot commit; a follower must not get itself elected.
    let current = members.values().next().unwrap().node.leader().expect("a leader");
    let lone = *members.keys().find(|id| **id != current).unwrap();
    let others: Vec<u64> = members.keys().copied().filter(|id| *id != lone).collect();
    for id in others {
        kill(members.remove(&id).unwrap()).await;
    }
    let lone = members.remove(&lone).unwrap();
    // Several election timeouts (1-2 s each) pass; the lone node must not lead.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_ne!(lone.node.leader(), Some(lone.node.id()), "a minority elected itself");
    let r = tokio::time::timeout(Duration::from_secs(5), lone.node.propose(register(9))).await;
    assert!(!matches!(r, Ok(Ok(_))), "a minority committed a command");
    kill(lone).await;
}
