//! Chaos in containers (RELIABILITY.md §2): the compose cluster of `silt:dev` images under two
//! `acks=all` producers, an assign-mode consumer and two members of a consumer group committing
//! after processing, with, in turn, `docker kill` of the leader of
//! partition 0, `docker pause` past the session timeout, `docker network disconnect` (total
//! isolation), and a selective partition from its peers with `nsenter ... iptables` while clients
//! still reach it (both ways, then one way: it receives nothing from its peers). After each fault the cluster heals to three live brokers with full ISRs; at
//! the end the checker runs (C1 no acknowledged record lost, C2, C4, C5), the group has kept
//! progressing through every fault, consumed every acknowledged record, and its committed offsets
//! never went backwards (C8), and no broker panicked.
//!
//! Needs a Docker engine, docker-compose, root (nsenter) and the image (deploy/docker/build.sh):
//! ignored by `cargo test`, run by `.ci/run` with `--ignored` when Docker is present.

use std::time::{Duration, Instant};

use silt_client::Client;
use silt_tests::cluster::describe_on;
use silt_tests::containers::{ComposeCluster, available};
use silt_tests::group_load::{Consumed, OffsetWatch, committed_to_end, drain, spawn_member};
use silt_tests::history::Outcome;
use silt_tests::workload::{LoadSpec, Workload, fault_topic_configs, final_read};

const TOPIC: &str = "chaos";
const PARTITIONS: u32 = 3;
const GROUP: &str = "chaos-group";

/// Partition 0 as each reachable broker sees it: (leader, leader epoch, ISR). A paused or cut-off
/// broker is skipped (each ask is bounded), so its stale view does not hide the others'.
async fn views(cluster: &ComposeCluster) -> Vec<(u64, u32, Vec<u64>, bool)> {
    let mut out = Vec::new();
    for addr in cluster.bootstrap() {
        if let Some(t) = describe_on(&addr, TOPIC).await
            && let Some(p) = t.partitions.first()
            && let Some(l) = p.leader
        {
            let full = t.partitions.iter().all(|p| p.isr.len() == 3);
            out.push((l, p.leader_epoch, p.isr.clone(), full));
        }
    }
    out
}

async fn wait_full_isr(cluster: &ComposeCluster, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = views(cluster).await;
        if v.len() == 3 && v.iter().all(|(.., full)| *full) {
            return;
        }
        assert!(Instant::now() < deadline, "ISRs not full again; logs:\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_new_leader(cluster: &ComposeCluster, old: u64, epoch: u32) -> Duration {
    let started = Instant::now();
    loop {
        if views(cluster).await.iter().any(|(l, e, ..)| *l != old && *e > epoch) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no new leader; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker, root and the silt:dev image; run by .ci/run"]
async fn container_faults_lose_no_acknowledged_record() {
    assert!(available("silt:dev"), "build the image first: deploy/docker/build.sh");
    let cluster = ComposeCluster::up("siltchaos").await;
    let client = Client::connect(&cluster.bootstrap()).await.expect("client");
    client.admin().create_topic(TOPIC, PARTITIONS, 3, fault_topic_configs()).await.expect("topic");
    wait_full_isr(&cluster, Duration::from_secs(30)).await;
    let load =
        Workload::start(cluster.bootstrap(), LoadSpec::standard(TOPIC, PARTITIONS, 15_000)).await;
    let consumed: Consumed = Default::default();
    let members: Vec<_> =
        (0..2).map(|_| spawn_member(client.clone(), GROUP, TOPIC, consumed.clone())).collect();
    let watch = OffsetWatch::start(client.clone(), GROUP);
    tokio::time::sleep(Duration::from_secs(5)).await;

    for fault in ["kill", "pause", "disconnect", "iptables", "iptables-one-way"] {
        let (leader, epoch, ..) = views(&cluster)
            .await
            .into_iter()
            .max_by_key(|v| v.1)
            .expect("partition 0 has a leader");
        let acked_before = load.history.acked();
        let consumed_before = consumed.lock().unwrap().len();
        match fault {
            "kill" => cluster.kill(leader),
            "pause" => cluster.pause(leader, true),
            "disconnect" => cluster.disconnect(leader, true),
            "iptables" => cluster.partition_from_peers(leader, true, false),
            _ => cluster.partition_from_peers(leader, true, true),
        }
        let took = wait_new_leader(&cluster, leader, epoch).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        match fault {
            "kill" => cluster.start(leader),
            "pause" => cluster.pause(leader, false),
            "disconnect" => cluster.disconnect(leader, false),
            _ => cluster.partition_from_peers(leader, false, false),
        }
        cluster.wait_alive(3, Duration::from_secs(60)).await;
        wait_full_isr(&cluster, Duration::from_secs(60)).await;
        let progressed = consumed.lock().unwrap().len() - consumed_before;
        println!(
            "[chaos] {fault} of leader {leader}: new leader after {took:?}; {} sends acknowledged, {progressed} records consumed by the group during the fault window",
            load.history.acked() - acked_before
        );
        assert!(progressed > 0, "the group made no progress through the {fault} fault");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = load.stop().await;
    let fin = final_read(&cluster.bootstrap(), TOPIC, PARTITIONS).await;
    let report = history.check(&fin);
    println!("[chaos] {}", report.summary());
    let acked: std::collections::BTreeSet<String> = history
        .sends()
        .into_iter()
        .filter(|s| matches!(s.outcome, Outcome::Acked { .. }))
        .map(|s| s.value)
        .collect();
    if let Err(missing) = drain(&consumed, &acked, Duration::from_secs(90)).await {
        panic!("the group never consumed {missing} acknowledged records");
    }
    committed_to_end(&client, GROUP, TOPIC, PARTITIONS, Duration::from_secs(30))
        .await
        .expect("the group commits up to the end");
    let regressions = watch.stop();
    for m in &members {
        m.abort();
    }
    println!(
        "[chaos] group: {} records consumed (every acknowledged one), {} committed-offset regressions",
        consumed.lock().unwrap().len(),
        regressions.len()
    );
    assert!(regressions.is_empty(), "committed offsets went backwards: {regressions:?}");
    assert!(report.ok(), "checker failed:\n{report}\nlogs:\n{}", cluster.logs());
    assert!(report.acked > 1000, "too few acknowledged sends: {}", report.summary());
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
}
