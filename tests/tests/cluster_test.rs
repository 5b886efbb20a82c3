//! Three brokers in cluster mode, in-process on 127.0.0.1:0: the metadata quorum forms from the
//! peer list, every broker serves the same cluster view, a topic created on any broker is placed
//! over all of them and described identically everywhere, produce goes to partition leaders (a
//! non-leader answers NOT_LEADER with the leader's address), and the controller can be killed.
//! `acks=all` on RF 3 is acknowledged once the followers have copied the batch. Failover under
//! faults is covered by the process harness (`tests/tests/fault_*.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silt_broker::{Broker, BrokerConfig};
use silt_client::{
    Acks, Client, ConsumerConfig, ProducerConfig, ProducerRecord, Seek, TopicPartition,
};
use silt_proto::v1::{self, ErrorCode};
use tokio::net::TcpListener;

struct Running {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn kill(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }
}

/// A broker's client and internal listeners, bound before any broker starts.
struct Listeners {
    client: TcpListener,
    internal: TcpListener,
}

impl Listeners {
    async fn bind() -> Listeners {
        Listeners {
            client: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            internal: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }
}

/// `peers` lists the voters' client addresses, `routes` their internal ones.
async fn start(
    id: u64,
    dir: std::path::PathBuf,
    listeners: Listeners,
    (peers, routes): (&str, &str),
) -> Running {
    let addr = listeners.client.local_addr().unwrap().to_string();
    let config = BrokerConfig {
        node_id: id,
        peers: Some(peers.to_string()),
        internal_peers: Some(routes.to_string()),
        ..BrokerConfig::for_test(dir)
    };
    let broker = Broker::bind_listeners(config, listeners.client, listeners.internal)
        .await
        .expect("broker binds");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = broker
            .run(async {
                let _ = rx.await;
            })
            .await;
    });
    Running { addr, stop: Some(stop), task }
}

async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cluster_view(addr: &str) -> Option<v1::DescribeClusterResponse> {
    let client = Client::connect(&[addr.to_string()]).await.ok()?;
    client.admin().describe_cluster().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_form_a_cluster_place_topics_and_route_to_leaders() {
    let tmp = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(Listeners::bind().await);
    }
    let list = |addr: fn(&Listeners) -> std::net::SocketAddr| {
        let entries: Vec<String> =
            listeners.iter().enumerate().map(|(i, l)| format!("{}@{}", i + 1, addr(l))).collect();
        entries.join(",")
    };
    let peers = list(|l| l.client.local_addr().unwrap());
    let routes = list(|l| l.internal.local_addr().unwrap());
    let mut brokers = BTreeMap::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let dir = tmp.path().join(format!("b{id}"));
        brokers.insert(id, start(id, dir, l, (&peers, &routes)).await);
    }

    tracing::info!("--- formation: every broker sees three live brokers and one controller");
    let addrs: Vec<String> = brokers.values().map(|b| b.addr.clone()).collect();
    eventually(30, "a common view", || {
        let addrs = addrs.clone();
        async move {
            let mut controllers = Vec::new();
            for a in &addrs {
                match cluster_view(a).await {
                    Some(v)
                        if v.brokers.iter().filter(|b| b.alive).count() == 3
                            && v.controller_id.is_some() =>
                    {
                        controllers.push(v.controller_id)
                    }
                    _ => return false,
                }
            }
            controllers.windows(2).all(|w| w[0] == w[1])
        }
    })
    .await;
    let view = cluster_view(&brokers[&1].addr).await.unwrap();
    assert!(view.raft_term > 0);

    tracing::info!("--- a topic created on broker 2 is described the same by all");
    let c2 = Client::connect(&[brokers[&2].addr.clone()]).await.unwrap();
    c2.admin().create_topic("orders", 3, 3, BTreeMap::new()).await.unwrap();
    let mut described = Vec::new();
    for b in brokers.values() {
        let c = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
        let t = c.admin().describe_topics(&["orders".to_string()]).await.unwrap().remove(0);
        described
            .push(t.partitions.iter().map(|p| (p.leader, p.replicas.clone())).collect::<Vec<_>>());
    }
    assert!(described.windows(2).all(|w| w[0] == w[1]), "{described:?}");
    let leaders: std::collections::BTreeSet<_> =
        described[0].iter().map(|(l, _)| l.unwrap()).collect();
    assert_eq!(leaders.len(), 3, "leaderships spread over the brokers: {described:?}");
    assert!(described[0].iter().all(|(_, r)| r.len() == 3));
    assert!(
        c2.admin().create_topic("bad", 1, 4, BTreeMap::new()).await.is_err(),
        "rf above the broker count"
    );

    tracing::info!("--- produce through the client goes to each partition's leader");
    let c1 = Client::connect(&[brokers[&1].addr.clone()]).await.unwrap();
    let producer =
        c1.producer(ProducerConfig { acks: Acks::Leader, linger_ms: 1, ..Default::default() });
    let mut futures = Vec::new();
    for i in 0..60 {
        futures.push(
            producer
                .send(ProducerRecord::new("orders", format!("v{i}")).with_key(format!("k{i}")))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    for f in futures {
        f.await.expect("acknowledged by the leader");
    }
    let mut consumer = c1.consumer(ConsumerConfig { max_wait_ms: 100, ..Default::default() });
    let tps =
        (0..3).map(|partition| TopicPartition { topic: "orders".into(), partition }).collect();
    consumer.assign(tps, Seek::Earliest).await.unwrap();
    let mut got = 0;
    for _ in 0..50 {
        got += consumer.poll().await.unwrap().len();
        if got >= 60 {
            break;
        }
    }
    assert_eq!(got, 60);

    tracing::info!("--- a non-leader answers NOT_LEADER with the leader's address");
    let (leader0, _) = &described[0][0];
    let leader0 = leader0.unwrap();
    let other = *brokers.keys().find(|id| **id != leader0).unwrap();
    let mut raw = v1::data_client::DataClient::connect(format!("http://{}", brokers[&other].addr))
        .await
        .unwrap();
    let mut b = silt_core::batch::BatchBuilder::new();
    b.push(&silt_core::batch::Record::value("x", 1));
    let req = v1::ProduceRequest {
        acks: v1::Acks::Leader as i32,
        timeout_ms: 5_000,
        topics: vec![v1::TopicProduceData {
            topic: "orders".into(),
            partitions: vec![v1::PartitionProduceData {
                partition: 0,
                data: Some(v1::partition_produce_data::Data::RecordBatches(b.build().unwrap())),
            }],
        }],
        ..Default::default()
    };
    let p =
        raw.produce(req.clone()).await.unwrap().into_inner().topics.remove(0).partitions.remove(0);
    assert_eq!(p.error_code(), ErrorCode::NotLeader);
    let hint = p.leader.expect("a leader hint");
    assert_eq!(
        (hint.leader_id, hint.leader_address.as_str()),
        (Some(leader0), brokers[&leader0].addr.as_str())
    );

    tracing::info!("--- acks=all on RF 3 is answered once every in-sync replica has the batch");
    let mut all = req.clone();
    all.acks = v1::Acks::All as i32;
    let mut to_leader =
        v1::data_client::DataClient::connect(format!("http://{}", brokers[&leader0].addr))
            .await
            .unwrap();
    let p =
        to_leader.produce(all).await.unwrap().into_inner().topics.remove(0).partitions.remove(0);
    assert_eq!(p.error_code(), ErrorCode::None, "{}", p.error_message);
    assert_eq!(p.durability(), v1::DurabilityLevel::ReplicatedDisk);
    assert!(p.base_offset >= 0);

    tracing::info!("--- a fetch names the leader epoch the consumer's metadata has");
    let epoch0 = c1.admin().describe_topics(&["orders".to_string()]).await.unwrap()[0].partitions
        [0]
    .leader_epoch;
    let fetch_at = |current: Option<u32>| v1::FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        decode_records: false,
        topics: vec![v1::TopicFetchData {
            topic: "orders".into(),
            partitions: vec![v1::PartitionFetchData {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                current_leader_epoch: current,
            }],
        }],
        ..Default::default()
    };
    for (current, want) in [
        (Some(epoch0), ErrorCode::None),
        (None, ErrorCode::None),
        (Some(epoch0 + 1), ErrorCode::UnknownLeaderEpoch),
    ] {
        let r = to_leader.fetch(fetch_at(current)).await.unwrap().into_inner();
        assert_eq!(
            r.topics[0].partitions[0].error_code(),
            want,
            "current_leader_epoch {current:?}"
        );
    }
    if epoch0 > 0 {
        let r = to_leader.fetch(fetch_at(Some(epoch0 - 1))).await.unwrap().into_inner();
        assert_eq!(r.topics[0].partitions[0].error_code(), ErrorCode::FencedLeaderEpoch);
    }

    tracing::info!("--- durability=replicated: acks=all is answered from the replicas' memory");
    let configs: BTreeMap<String, String> =
        [("durability".to_string(), "replicated".to_string())].into();
    c1.admin().create_topic("mem", 1, 3, configs).await.unwrap();
    let mem = c1.admin().describe_topics(&["mem".to_string()]).await.unwrap().remove(0);
    let mem_leader = mem.partitions[0].leader.expect("a leader");
    let mut to_mem =
        v1::data_client::DataClient::connect(format!("http://{}", brokers[&mem_leader].addr))
            .await
            .unwrap();
    let mut mem_req = req.clone();
    mem_req.acks = v1::Acks::All as i32;
    mem_req.topics[0].topic = "mem".into();
    let mut answer = None;
    for _ in 0..50 {
        let p = to_mem
            .produce(mem_req.clone())
            .await
            .unwrap()
            .into_inner()
            .topics
            .remove(0)
            .partitions
            .remove(0);
        // The leader may still be opening the new partition (retriable).
        if p.error_code() == ErrorCode::None {
            answer = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = answer.expect("acks=all on a replicated-durability topic succeeds");
    assert_eq!(p.durability(), v1::DurabilityLevel::ReplicatedMemory);

    tracing::info!(
        "--- a fourth broker outside the peer list joins as a learner and hosts replicas"
    );
    let l4 = Listeners::bind().await;
    brokers.insert(4, start(4, tmp.path().join("b4"), l4, (&peers, &routes)).await);
    let a4 = brokers[&4].addr.clone();
    eventually(30, "four live brokers", || {
        let a4 = a4.clone();
        async move {
            cluster_view(&a4)
                .await
                .is_some_and(|v| v.brokers.iter().filter(|b| b.alive).count() == 4)
        }
    })
    .await;
    let c4 = Client::connect(std::slice::from_ref(&a4)).await.unwrap();
    c4.admin().create_topic("wide", 4, 4, BTreeMap::new()).await.unwrap();
    let wide = c4.admin().describe_topics(&["wide".to_string()]).await.unwrap().remove(0);
    assert!(wide.partitions.iter().all(|p| p.replicas.contains(&4)));

    tracing::info!("--- kill the controller: the survivors elect another, the topic stays");
    let controller = cluster_view(&brokers[&1].addr).await.unwrap().controller_id.unwrap();
    brokers.remove(&controller).unwrap().kill().await;
    let survivor = brokers.values().next().unwrap().addr.clone();
    eventually(30, "a new controller", || {
        let survivor = survivor.clone();
        async move {
            cluster_view(&survivor)
                .await
                .and_then(|v| v.controller_id)
                .is_some_and(|c| c != controller)
        }
    })
    .await;
    let c = Client::connect(&[survivor]).await.unwrap();
    assert_eq!(
        c.admin().describe_topics(&["orders".to_string()]).await.unwrap()[0].partitions.len(),
        3
    );
    c.admin()
        .create_topic("after", 1, 2, BTreeMap::new())
        .await
        .expect("metadata writes work with 2 of 3");
    for (_, b) in brokers {
        b.kill().await;
    }
}
