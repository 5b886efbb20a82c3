//! A librdkafka producer through the fault harness (issue 16): three `siltd` processes with
//! Kafka listeners, a topic with 3 partitions, RF 3, `min.insync.replicas=2`, `durability=fsync`;
//! confluent-kafka's idempotent `acks=all` producer (`tests/kafka/fault_producer.py`) sends for
//! 20 s while the leader of partition 0 is killed with SIGKILL twice and restarted. Then every
//! record librdkafka saw acknowledged must be in the log (no acknowledged loss), and no value
//! may be there twice (its retries after the failovers were deduplicated).
//!
//! Needs python3 with confluent-kafka, so it is `#[ignore]`d and run by `.ci/run` after it
//! installs the package: `cargo test -p silt-tests --test kafka_fault_test -- --ignored`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silt_tests::cluster::{ClusterSettings, ProcessCluster};
use silt_tests::faults::SERIAL;
use silt_tests::workload::{fault_topic_configs, final_read};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");
const TOPIC: &str = "kafka-faults";
const PARTITIONS: u32 = 3;

async fn full_isr(cluster: &ProcessCluster) {
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(60), "the full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with confluent-kafka; run by .ci/run"]
async fn a_librdkafka_idempotent_producer_loses_and_duplicates_nothing_across_leader_kills() {
    let _serial = SERIAL.lock().await;
    let settings = ClusterSettings { kafka: true, ..ClusterSettings::new(SILTD) };
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    client
        .admin()
        .create_topic(TOPIC, PARTITIONS, 3, fault_topic_configs())
        .await
        .expect("topic created");
    full_isr(&cluster).await;

    let out = cluster.root().join("acked.txt");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/fault_producer.py");
    let mut producer = std::process::Command::new("python3")
        .args([script, &cluster.kafka_bootstrap(), TOPIC, "20", "1000"])
        .arg(&out)
        .spawn()
        .expect("python3 runs");

    for round in 0..2 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (leader, _, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, _| true)
            .await;
        println!("round {round}: SIGKILL to broker {leader}, the leader of {TOPIC}/0");
        cluster.kill9(leader);
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.restart(leader);
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = producer.try_wait().expect("producer status") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = producer.kill();
            panic!("the librdkafka producer did not finish in time; logs:\n{}", cluster.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "every send got an outcome; logs:\n{}", cluster.logs());
    let acked: Vec<String> =
        std::fs::read_to_string(&out).expect("acked list").lines().map(String::from).collect();
    assert!(acked.len() > 5_000, "too few acknowledged: {}", acked.len());

    cluster.wait_alive(3, Duration::from_secs(60)).await;
    full_isr(&cluster).await;
    let log = final_read(&cluster.bootstrap(), TOPIC, PARTITIONS).await;
    let mut copies: BTreeMap<&str, u32> = BTreeMap::new();
    for v in log.values() {
        *copies.entry(v.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked.iter().filter(|v| !copies.contains_key(v.as_str())).collect();
    let twice: Vec<(&&str, &u32)> = copies.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "librdkafka acknowledged {}, the log holds {} records ({} distinct); lost {}, twice {}",
        acked.len(),
        log.len(),
        copies.len(),
        lost.len(),
        twice.len()
    );
    assert!(lost.is_empty(), "acknowledged records lost: {:?}", &lost[..lost.len().min(10)]);
    assert!(twice.is_empty(), "records stored twice: {:?}", &twice[..twice.len().min(10)]);
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
    for id in 1..=3 {
        assert_eq!(cluster.sigterm(id), Some(0), "broker {id} exits cleanly");
    }
}
