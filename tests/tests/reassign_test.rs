//! A cluster that changes (issue 21), with `siltd` processes under acks=all load: a partition
//! moved onto a broker that joined the running cluster as a learner of the metadata quorum, then
//! on with the new replica killed mid-move, then 3 -> 1 -> 3 replicas (RELIABILITY T13); the
//! replication factor raised and lowered; leadership handed back to preferred replicas after a restart; partitions
//! added while producers and a consumer group run; a broker decommissioned under load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silt_client::{
    Acks, Admin, Client, ConnectOptions, ProducerConfig, ProducerRecord, Seek, TopicPartition,
};
use silt_proto::v1;
use silt_tests::cluster::{ClusterSettings, ProcessCluster, describe_on};
use silt_tests::workload::{
    Feeder, LoadSpec, Workload, fault_topic_configs, final_read, replica_bytes,
};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");

/// Moves `topic`/`partition` to `replicas`; panics on a refusal.
async fn reassign(admin: &Admin, topic: &str, partition: u32, replicas: Vec<u64>) {
    let r = admin
        .alter_partition_reassignments(
            vec![v1::PartitionReassignment {
                topic: topic.into(),
                partition,
                replicas: replicas.clone(),
                cancel: false,
            }],
            false,
            0,
        )
        .await
        .expect("the reassignment call is answered");
    assert_eq!(r[0].error_code, 0, "move to {replicas:?} refused: {}", r[0].error_message);
}

/// The partition as some running broker describes it.
async fn describe(
    cluster: &ProcessCluster,
    topic: &str,
    p: u32,
) -> Option<v1::PartitionDescription> {
    for b in cluster.brokers.values().filter(|b| b.is_running()) {
        if let Some(t) = describe_on(&b.addr, topic).await
            && let Some(d) = t.partitions.get(p as usize)
        {
            return Some(d.clone());
        }
    }
    None
}

/// Waits until the move of `topic`/`partition` to `target` completed: exactly those replicas,
/// all in sync, nothing being added or removed. Returns how long that took.
async fn wait_moved(
    cluster: &ProcessCluster,
    topic: &str,
    partition: u32,
    target: &[u64],
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(d) = describe(cluster, topic, partition).await {
            let mut isr = d.isr.clone();
            isr.sort_unstable();
            let mut want = target.to_vec();
            want.sort_unstable();
            if d.replicas == target && isr == want && d.adding_replicas.is_empty() {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < within,
            "{topic}/{partition} did not reach {target:?}: {:?}\nlogs:\n{}",
            describe(cluster, topic, partition).await,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until broker `id` no longer has a directory for `topic`/`partition`.
async fn wait_deleted(cluster: &ProcessCluster, id: u64, topic: &str, partition: u32) {
    let dir = cluster.brokers[&id].dir.join(format!("{topic}-{partition}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.exists() {
        assert!(Instant::now() < deadline, "{} still exists", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_moves_twice_under_load_onto_a_joined_broker_and_past_a_killed_replica() {
    const TOPIC: &str = "moves";
    let settings = ClusterSettings {
        brokers: 4,
        voters: Some(3),
        held_back: vec![4],
        ..ClusterSettings::new(SILTD)
    };
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    let admin = client.admin();
    admin.create_topic(TOPIC, 1, 3, fault_topic_configs()).await.expect("topic created");
    // The same replicas in a known order: only the preference changes, nothing is copied.
    reassign(&admin, TOPIC, 0, vec![1, 2, 3]).await;
    wait_moved(&cluster, TOPIC, 0, &[1, 2, 3], Duration::from_secs(30)).await;

    // A fourth broker joins the running cluster: a learner of the 3-voter quorum.
    cluster.restart(4);
    cluster.wait_alive(4, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.log_of(4).contains("joined the metadata quorum as a learner") {
        assert!(Instant::now() < deadline, "broker 4 never joined:\n{}", cluster.log_of(4));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let load = Workload::start(cluster.bootstrap(), LoadSpec::standard(TOPIC, 1, 10_000)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // {1,2,3} -> {1,2,4}: the joined broker catches up and takes broker 3's place.
    reassign(&admin, TOPIC, 0, vec![1, 2, 4]).await;
    let first = wait_moved(&cluster, TOPIC, 0, &[1, 2, 4], Duration::from_secs(60)).await;
    wait_deleted(&cluster, 3, TOPIC, 0).await;

    // {1,2,4} -> {1,3,4}, and the new replica (broker 3) is killed mid-move: the move waits,
    // with the old replicas serving (min.insync.replicas=2 holds), and completes once broker 3
    // is back and caught up.
    reassign(&admin, TOPIC, 0, vec![1, 3, 4]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill9(3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mid = describe(&cluster, TOPIC, 0).await.expect("described");
    assert_eq!(mid.adding_replicas, vec![3], "the move waits for its new replica: {mid:?}");
    assert_eq!(mid.replicas, vec![1, 3, 4, 2]);
    assert!(mid.isr.len() >= 2, "the ISR never shrinks below min.insync.replicas: {mid:?}");
    cluster.restart(3);
    let second = wait_moved(&cluster, TOPIC, 0, &[1, 3, 4], Duration::from_secs(60)).await;
    wait_deleted(&cluster, 2, TOPIC, 0).await;
    println!(
        "moves took {first:?} and {second:?} (the second counted from the killed replica's restart)"
    );

    // 3 -> 1 -> 3 (RELIABILITY T13): down to broker 4 alone (acks=all sends are refused
    // meanwhile, min.insync.replicas=2: nothing acknowledged is at risk), and back.
    reassign(&admin, TOPIC, 0, vec![4]).await;
    wait_moved(&cluster, TOPIC, 0, &[4], Duration::from_secs(30)).await;
    wait_deleted(&cluster, 1, TOPIC, 0).await;
    wait_deleted(&cluster, 3, TOPIC, 0).await;
    reassign(&admin, TOPIC, 0, vec![4, 1, 3]).await;
    wait_moved(&cluster, TOPIC, 0, &[4, 1, 3], Duration::from_secs(60)).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = load.stop().await;
    let fin = final_read(&cluster.bootstrap(), TOPIC, 1).await;
    let report = history.check(&fin);
    println!("[moves] {}", report.summary());
    assert!(report.ok(), "checker failed:\n{report}\nlogs:\n{}", cluster.logs());
    assert!(report.acked > 100, "too few acknowledged sends: {}", report.summary());

    // The three replicas hold the same bytes below the high watermark.
    let deadline = Instant::now() + Duration::from_secs(30);
    let hw = loop {
        let mut hws = Vec::new();
        for id in [1, 3, 4] {
            let t = describe_on(&cluster.brokers[&id].addr, TOPIC).await;
            hws.push(t.and_then(|t| t.partitions.first().map(|p| p.high_watermark)).unwrap_or(-1));
        }
        if hws.iter().all(|h| *h > 0 && *h == hws[0]) {
            break hws[0] as u64;
        }
        assert!(Instant::now() < deadline, "replicas disagree on the HW: {hws:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
    for id in 1..=4 {
        assert_eq!(cluster.sigterm(id), Some(0), "broker {id} exits cleanly");
    }
    let copies: Vec<Vec<u8>> = [1, 3, 4]
        .iter()
        .map(|id| {
            let dir = cluster.brokers[id].dir.join(format!("{TOPIC}-0"));
            replica_bytes(&dir, hw).expect("replica readable")
        })
        .collect();
    assert!(copies.iter().all(|c| *c == copies[0]), "replicas differ below the HW {hw}");
}

/// Produces `n` records acks=all to `topic` partition 0; returns their values by offset.
async fn produce(client: &Client, topic: &str, n: usize) -> BTreeMap<i64, String> {
    let producer = client.producer(ProducerConfig { acks: Acks::All, ..Default::default() });
    let mut futs = Vec::new();
    for i in 0..n {
        let v = format!("r-{i}");
        let rec = ProducerRecord::new(topic.to_string(), v.clone()).with_partition(0);
        futs.push((v, producer.send(rec).await.expect("queued")));
    }
    let mut out = BTreeMap::new();
    for (v, f) in futs {
        out.insert(f.await.expect("acknowledged").offset, v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_replication_factor_goes_1_3_2_and_leadership_returns_to_preferred_replicas() {
    let settings = ClusterSettings {
        extra: "leader_imbalance_check_interval_seconds = 2\n".into(),
        ..ClusterSettings::new(SILTD)
    };
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    let admin = client.admin();

    // Replication factor 1 -> 3 -> 2: a move that adds two replicas, then one that drops the
    // leader's.
    admin.create_topic("rf", 1, 1, BTreeMap::new()).await.expect("topic created");
    let written = produce(&client, "rf", 2_000).await;
    let first = describe(&cluster, "rf", 0).await.expect("described").replicas[0];
    let others: Vec<u64> = (1..=3).filter(|b| *b != first).collect();
    let three = vec![first, others[0], others[1]];
    reassign(&admin, "rf", 0, three.clone()).await;
    wait_moved(&cluster, "rf", 0, &three, Duration::from_secs(60)).await;
    reassign(&admin, "rf", 0, others.clone()).await;
    wait_moved(&cluster, "rf", 0, &others, Duration::from_secs(30)).await;
    let d = describe(&cluster, "rf", 0).await.expect("described");
    assert!(others.contains(&d.leader.expect("a leader")), "{d:?}");
    wait_deleted(&cluster, first, "rf", 0).await;
    let read = final_read(&cluster.bootstrap(), "rf", 1).await;
    let read: BTreeMap<i64, String> = read.into_iter().map(|((_, o), v)| (o, v)).collect();
    assert_eq!(read, written, "every acknowledged record survives both moves, in place");

    // Leader balance: broker 1 restarts, its leaderships move away, and come back by
    // themselves once it is in sync again (check every 2 s).
    admin.create_topic("bal", 3, 3, fault_topic_configs()).await.expect("topic created");
    for p in 0..3 {
        cluster
            .wait_partition("bal", p, Duration::from_secs(30), "the full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    let preferred: Vec<u64> = {
        let t = describe_on(&cluster.brokers[&2].addr, "bal").await.expect("described");
        t.partitions.iter().map(|p| p.replicas[0]).collect()
    };
    assert!(preferred.contains(&1), "broker 1 is preferred for some partition: {preferred:?}");
    cluster.kill9(1);
    let p1 = preferred.iter().position(|b| *b == 1).expect("found") as u32;
    cluster
        .wait_partition("bal", p1, Duration::from_secs(30), "another leader", |l, _, _| l != 1)
        .await;
    cluster.restart(1);
    let back = Instant::now();
    for (p, want) in preferred.iter().enumerate() {
        cluster
            .wait_partition(
                "bal",
                p as u32,
                Duration::from_secs(40),
                "the preferred leader",
                |l, _, _| l == *want,
            )
            .await;
    }
    println!("leadership back on the preferred replicas {:?} after the restart", back.elapsed());
    assert!(cluster.logs().contains("leadership back to the preferred replica"));
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_added_under_load_reach_producers_and_the_group_then_a_broker_is_decommissioned()
{
    const TOPIC: &str = "grow";
    let settings = ClusterSettings { brokers: 4, voters: Some(3), ..ClusterSettings::new(SILTD) };
    let cluster = ProcessCluster::start(settings).await;
    // Clients that refresh metadata every second (the default is 30 s).
    let options = ConnectOptions { metadata_max_age: Duration::from_secs(1), ..Default::default() };
    let client = Client::connect_with(&cluster.bootstrap(), options).await.expect("connects");
    let admin = client.admin();
    admin.create_topic(TOPIC, 2, 3, fault_topic_configs()).await.expect("topic created");
    let config = ProducerConfig { acks: Acks::All, linger_ms: 2, ..Default::default() };
    let feeder = Feeder::start(client.clone(), TOPIC, config, Duration::from_millis(2));
    let consumed = silt_tests::group_load::Consumed::default();
    let member = silt_tests::group_load::spawn_member(client.clone(), "g", TOPIC, consumed.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2 -> 4 partitions while the feeder produces keyed records.
    admin.create_partitions(TOPIC, 4).await.expect("partitions added");
    let refused = admin.create_partitions(TOPIC, 3).await.expect_err("fewer is refused");
    assert!(refused.to_string().contains("must be larger"), "{refused}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The leaders' high watermarks (a describe answers -1 for partitions the answering
        // broker hosts no replica of).
        let mut hws = Vec::new();
        for partition in [2, 3] {
            let tp = TopicPartition { topic: TOPIC.into(), partition };
            hws.push(client.offset(&tp, Seek::Latest).await.unwrap_or(-1));
        }
        if hws.iter().all(|h| *h > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the new partitions got no records: {hws:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Decommission broker 4 under that load: every replica it holds moves elsewhere.
    let moves = admin.decommission_broker(4, 0).await.expect("decommission starts");
    assert!(moves > 0, "broker 4 held replicas");
    let start = Instant::now();
    loop {
        let topics = admin.list_topics().await.expect("listed");
        let held = topics.iter().flat_map(|t| &t.partitions).filter(|p| p.replicas.contains(&4));
        if held.count() == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "broker 4 still holds replicas");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("broker 4 emptied of {moves} replicas in {:?}", start.elapsed());
    let info = admin.describe_cluster().await.expect("described");
    assert!(info.brokers.iter().any(|b| b.node_id == 4 && b.decommissioning));
    // New topics are not placed on a decommissioning broker.
    admin.create_topic("after", 4, 3, BTreeMap::new()).await.expect("topic created");
    let after = admin.describe_topics(&["after".to_string()]).await.expect("described");
    assert!(after[0].partitions.iter().all(|p| !p.replicas.contains(&4)));
    for p in 0..4 {
        wait_deleted(&cluster, 4, TOPIC, p).await;
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_sent, acked) = feeder.stop().await;
    let fin = final_read(&cluster.bootstrap(), TOPIC, 4).await;
    let stored: std::collections::BTreeSet<&String> = fin.values().collect();
    let lost: Vec<&String> = acked.iter().filter(|v| !stored.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(acked.len() > 200, "too few acknowledged records: {}", acked.len());
    // The group rebalanced onto the new partitions: it consumes what they hold.
    let new: Vec<String> =
        fin.iter().filter(|((p, _), _)| *p >= 2).map(|(_, v)| v.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = {
            let c = consumed.lock().unwrap();
            new.iter().filter(|v| !c.contains(*v)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group never consumed {missing} records of partitions 2-3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    member.abort();
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
}
