//! Resource bounds (issue 14) with three `siltd` processes: a follower far behind on many
//! partitions at once gets fetch answers within the replication message limit, and catches up.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use silt_client::{Acks, ProducerConfig, ProducerRecord};
use silt_proto::v1;
use silt_tests::cluster::{ClusterSettings, ProcessCluster};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");
const TOPIC: &str = "wide";
/// Over two leaders, one leads at least 40: 40 batches of 850 KiB are more than the 32 MiB a
/// replication answer may carry, which every partition getting "at least one batch" exceeded.
const PARTITIONS: u32 = 80;
const VALUE_BYTES: usize = 850 * 1024;

/// A follower killed while every partition it follows gets an 850 KiB batch, then restarted:
/// each leader answers its fetches within the message limit (the partitions in turn, a
/// rotating start, a running byte budget), so it catches up and rejoins every ISR. Before, the
/// leader's answer for ~40 lagging partitions could not be encoded, the follower sent the same
/// request forever, and the partitions stayed under-replicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_on_many_partitions_catches_up_within_the_message_limit() {
    let mut cluster = ProcessCluster::start(ClusterSettings::new(SILTD)).await;
    let client = cluster.client().await;
    let configs = BTreeMap::from([
        ("segment.bytes".to_string(), (4 << 20).to_string()),
        ("min.insync.replicas".to_string(), "1".to_string()),
    ]);
    // Committed at once; opening 240 replicas may outlast the answer's wait on a loaded machine.
    if let Err(e) = client.admin().create_topic(TOPIC, PARTITIONS, 3, configs).await {
        assert_eq!(e.code(), Some(v1::ErrorCode::RequestTimedOut), "{e}");
    }
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(60), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    let follower = 3;
    cluster.kill9(follower);
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(60), "the ISR without it", |l, _, isr| {
                l != follower && !isr.contains(&follower)
            })
            .await;
    }
    let producer = client.producer(ProducerConfig { acks: Acks::Leader, ..Default::default() });
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    let mut sent = Vec::new();
    for p in 0..PARTITIONS {
        let rec = ProducerRecord::new(TOPIC, value.clone()).with_partition(p);
        sent.push(producer.send(rec).await.expect("queued"));
    }
    for f in sent {
        f.await.expect("acknowledged by the leader");
    }
    tracing::info!("--- restart the follower: {PARTITIONS} partitions of 850 KiB to copy");
    cluster.restart(follower);
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(90), "the follower back", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
    for id in 1..=3 {
        assert_eq!(cluster.sigterm(id), Some(0), "broker {id} exits cleanly");
    }
}

/// The broker's anonymous memory (heap) in bytes, from `/proc/PID/status` (`RssAnon`): what an
/// out-of-memory kill counts, without the page cache of the mapped segments.
fn rss_anon(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An acks=0 flood (8 senders on one connection, 4 MiB requests answered as soon as they are
/// queued) against one broker appending with fsync: the produce budget makes requests wait
/// before their bodies are read, so the broker's heap stays well under a 256 MiB container.
/// Before, each partition queued up to 1024 requests and the heap grew by gigabytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acks0_flood_keeps_the_broker_heap_bounded() {
    const LIMIT: u64 = 256 * 1024 * 1024;
    let settings = ClusterSettings { brokers: 1, ..ClusterSettings::new(SILTD) };
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    let configs = BTreeMap::from([
        ("durability".to_string(), "fsync".to_string()),
        ("max.message.bytes".to_string(), (2 << 20).to_string()),
    ]);
    client.admin().create_topic("flood", 1, 1, configs).await.expect("topic created");
    cluster
        .wait_partition("flood", 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 1)
        .await;
    let pid = cluster.brokers[&1].pid().expect("running");
    let idle = rss_anon(pid).expect("RssAnon");
    // Four 1 MiB batches per request.
    let mut data = Vec::new();
    for _ in 0..4 {
        let mut b = silt_core::batch::BatchBuilder::new();
        for _ in 0..4 {
            b.push(&silt_core::batch::Record::value(vec![b'f'; 256 * 1024], 0));
        }
        data.extend_from_slice(&b.build().expect("a batch"));
    }
    let data = Bytes::from(data);
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.brokers[&1].addr))
            .expect("url")
            .connect()
            .await
            .expect("connected");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..8 {
        let mut raw =
            v1::data_client::DataClient::new(channel.clone()).max_encoding_message_size(8 << 20);
        let (data, stop, sent) = (data.clone(), stop.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            // Bounded: at most 500 requests per sender, and the test stops them after 8 s.
            for _ in 0..500 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let req = v1::ProduceRequest {
                    acks: v1::Acks::None as i32,
                    timeout_ms: 10_000,
                    topics: vec![v1::TopicProduceData {
                        topic: "flood".into(),
                        partitions: vec![v1::PartitionProduceData {
                            partition: 0,
                            data: Some(v1::partition_produce_data::Data::RecordBatches(
                                data.clone(),
                            )),
                        }],
                    }],
                    ..Default::default()
                };
                if raw.produce(req).await.is_ok() {
                    sent.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let mut peak = idle;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(rss_anon(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
    }
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "[acks0-flood] {} MiB answered in 8 s; broker heap idle {} MiB, peak {} MiB",
        sent >> 20,
        idle >> 20,
        peak >> 20
    );
    assert!(sent > 64 << 20, "the flood got through: {sent} bytes");
    assert!(peak < LIMIT, "the broker's heap peaked at {} MiB", peak >> 20);
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
    assert_eq!(cluster.sigterm(1), Some(0), "the broker exits cleanly");
}
