//! A compacted topic through one broker: the cleaner keeps the latest record per key while a
//! consumer reads from offset 0 (records of each key in offset order, no errors, every key's
//! latest value), keyless records are refused, and the topic config round-trips.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use silt_client::{Client, Compression, ConsumerConfig, Seek, TopicPartition};
use silt_core::batch::{BatchBuilder, Record};
use silt_proto::v1::{self, ErrorCode};

const KEYS: usize = 100;

fn keyed_batch(round: usize, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new();
    b.set_compression(codec, None);
    for k in 0..KEYS {
        b.push(&Record {
            key: Some(Bytes::from(format!("key-{k}"))),
            value: Some(Bytes::from(format!("round-{round}-{}", "x".repeat(200)))),
            headers: vec![],
            timestamp_ms: 1_700_000_000_000,
        });
    }
    b.build().unwrap()
}

/// Reads the partition from offset 0 to `end` with the Rust consumer; every record's key and
/// value, checking offsets rise and each key's records come in offset order.
async fn read_through(client: &Client, end: i64) -> BTreeMap<String, (i64, String)> {
    let mut c = client.consumer(ConsumerConfig { max_wait_ms: 50, ..Default::default() });
    let tp = TopicPartition { topic: "table".into(), partition: 0 };
    c.assign(vec![tp], Seek::Earliest).await.unwrap();
    let mut last = -1;
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while last < end - 1 && Instant::now() < deadline {
        for r in c.poll().await.expect("no read error while the cleaner runs") {
            assert!(r.offset > last, "offsets rise: {} after {last}", r.offset);
            last = r.offset;
            let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            if let Some((o, _)) = latest.get(&k) {
                assert!(*o < r.offset);
            }
            latest.insert(k, (r.offset, v[..v.find("-x").unwrap_or(v.len())].to_string()));
        }
    }
    latest
}

/// The offsets of every record of the partition, through decoded fetches.
async fn offsets(
    c: &mut silt_proto::v1::data_client::DataClient<tonic::transport::Channel>,
    end: i64,
) -> Vec<i64> {
    let mut all = Vec::new();
    let mut at = 0i64;
    for _ in 0..1000 {
        let r = c.fetch(fetch_req("table", 0, at, 0, true)).await.unwrap().into_inner();
        let p = &r.topics[0].partitions[0];
        if p.next_fetch_offset <= at || at >= end {
            break;
        }
        all.extend(p.records.iter().map(|r| r.offset));
        at = p.next_fetch_offset;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_compacts_a_topic_while_a_consumer_reads_it() {
    let b = TestBroker::start_with(|dir| silt_broker::BrokerConfig {
        log_cleaner_backoff_ms: 100,
        ..silt_broker::BrokerConfig::for_test(dir)
    })
    .await;
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "65536"),
        ("max.message.bytes", "32768"),
        ("min.cleanable.dirty.ratio", "0.1"),
    ];
    assert_eq!(b.create_topic("table", 1, &configs).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    let rounds = 200;
    for round in 0..rounds {
        let codec = if round % 2 == 0 { Compression::Lz4 } else { Compression::None };
        let r = produce(&mut c, "table", 0, v1::Acks::All, keyed_batch(round, codec)).await;
        assert_eq!(r.error_code(), ErrorCode::None, "{}", r.error_message);
    }
    let end = (rounds * KEYS) as i64;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    // Read the whole partition again and again while the cleaner works, until it has cleaned
    // all but the active segment.
    let started = Instant::now();
    let mut passes = 0;
    let mut all = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        let latest = read_through(&client, end).await;
        passes += 1;
        assert_eq!(latest.len(), KEYS, "pass {passes}: every key");
        for (k, (_, v)) in &latest {
            assert_eq!(v, &format!("round-{}", rounds - 1), "pass {passes}: {k}'s latest value");
        }
        all = offsets(&mut c, end).await;
        if all.len() < end as usize / 4 {
            break;
        }
    }
    // Compacted: far fewer records than were written, offsets kept.
    assert!(all.len() < end as usize / 4, "{} of {end} records left after cleaning", all.len());
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*all.last().unwrap(), end - 1, "the newest record stays");

    // A keyless record is refused from a compacted topic.
    let mut keyless = BatchBuilder::new();
    keyless.push(&Record::value("no key", 1));
    let r = produce(&mut c, "table", 0, v1::Acks::All, keyless.build().unwrap()).await;
    assert_eq!(r.error_code(), ErrorCode::CorruptMessage);
    assert!(r.error_message.contains("key"), "{}", r.error_message);
    // The config is described as set.
    let d = b
        .admin()
        .await
        .describe_topics(v1::DescribeTopicsRequest { topics: vec!["table".into()] })
        .await
        .unwrap()
        .into_inner();
    let configs = &d.topics[0].configs;
    assert_eq!(configs["cleanup.policy"], "compact");
    assert_eq!(configs["min.cleanable.dirty.ratio"], "0.1");
}
