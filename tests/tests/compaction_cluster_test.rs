//! Log compaction on every replica (issue 19), with three `siltd` processes: a compacted topic
//! (RF 3, min ISR 2) takes keyed records with acks=all while its leader is killed and restarted;
//! every replica's cleaner compacts its own log; a consumer reading from offset 0 through the
//! leader, and again after the leadership moved to a replica that compacted its own copy, sees
//! each key's last acknowledged value, records of a key in offset order, and no errors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_client::{Acks, ConsumerConfig, ProducerConfig, ProducerRecord, Seek, TopicPartition};
use silt_tests::cluster::{ClusterSettings, ProcessCluster};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");
const TOPIC: &str = "table";
const KEYS: u64 = 200;
const RECORDS: u64 = 16_000;

/// Reads the partition from offset 0 to the end; each key's last value. Checks that offsets rise.
async fn latest_values(cluster: &ProcessCluster, end: i64) -> BTreeMap<String, String> {
    let client = cluster.client().await;
    let mut c = client.consumer(ConsumerConfig { max_wait_ms: 100, ..Default::default() });
    let tp = TopicPartition { topic: TOPIC.into(), partition: 0 };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = BTreeMap::new();
    let mut last = -1;
    'read: while Instant::now() < deadline {
        out.clear();
        last = -1;
        if c.assign(vec![tp.clone()], Seek::Earliest).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        while last < end - 1 && Instant::now() < deadline {
            let Ok(records) = c.poll().await else {
                // A leader change: read the whole partition again.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'read;
            };
            for r in records {
                assert!(r.offset > last, "offsets rise: {} after {last}", r.offset);
                last = r.offset;
                let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                out.insert(k, v);
            }
        }
        break;
    }
    assert_eq!(last, end - 1, "read to the end");
    out
}

/// Bytes of the partition's segment files on broker `id`.
fn log_bytes(cluster: &ProcessCluster, id: u64) -> u64 {
    let dir = cluster.brokers[&id].dir.join(format!("{TOPIC}-0"));
    silt_tests::faults::segments(&dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_compacts_and_consumers_see_the_last_acked_values_across_a_leader_kill() {
    let mut settings = ClusterSettings::new(SILTD);
    settings.extra = "log_cleaner_backoff_ms = 200\n".into();
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), "65536".to_string()),
        ("max.message.bytes".to_string(), "32768".to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0.2".to_string()),
        ("min.insync.replicas".to_string(), "2".to_string()),
    ]);
    client.admin().create_topic(TOPIC, 1, 3, configs).await.expect("topic created");
    let (leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a full ISR", |_, _, isr| isr.len() == 3)
        .await;

    let producer = client
        .try_producer(ProducerConfig {
            acks: Acks::All,
            linger_ms: 5,
            batch_max_bytes: 16 * 1024,
            delivery_timeout_ms: 60_000,
            ..ProducerConfig::default()
        })
        .unwrap();
    // key -> (offset, value) of its last acknowledged record.
    let mut acked: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut killed = false;
    for i in 0..RECORDS {
        let key = format!("key-{}", i % KEYS);
        let value = format!("value-{i}-{}", "p".repeat(150));
        let r = ProducerRecord::new(TOPIC, Bytes::from(value.clone()))
            .with_key(Bytes::from(key.clone()));
        pending.push((key, value, producer.send(r).await.expect("queued")));
        if pending.len() >= 500 {
            for (k, v, f) in pending.drain(..) {
                let m = f.await.expect("acknowledged (idempotent retries over the failover)");
                let e = acked.entry(k).or_insert((-1, String::new()));
                if m.offset > e.0 {
                    *e = (m.offset, v);
                }
            }
        }
        if i == RECORDS / 2 && !killed {
            cluster.kill9(leader);
            killed = true;
        }
        if i == RECORDS * 3 / 4 {
            cluster.restart(leader);
        }
    }
    for (k, v, f) in pending.drain(..) {
        let m = f.await.expect("acknowledged");
        let e = acked.entry(k).or_insert((-1, String::new()));
        if m.offset > e.0 {
            *e = (m.offset, v);
        }
    }
    producer.close().await.unwrap();
    let end = acked.values().map(|(o, _)| *o).max().unwrap() + 1;
    let want: BTreeMap<String, String> =
        acked.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect();
    assert_eq!(want.len(), KEYS as usize);

    // Every replica compacts its own log (the restarted one once it has caught up).
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(60), "the ISR whole again", |_, _, isr| {
            isr.len() == 3
        })
        .await;
    let written = RECORDS * 170;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sizes: Vec<u64> = [1, 2, 3].iter().map(|id| log_bytes(&cluster, *id)).collect();
        if sizes.iter().all(|s| *s < written / 3) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas not compacted: {sizes:?} of {written} bytes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(latest_values(&cluster, end).await, want, "through the leader");

    // Move the leadership to a replica that compacted its own copy, and read again.
    let (now_leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    cluster.kill9(now_leader);
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a new leader", |l, _, _| {
            l != now_leader
        })
        .await;
    assert_eq!(latest_values(&cluster, end).await, want, "through another replica");
    assert!(cluster.panics().is_empty(), "{:?}", cluster.panics());
}
