//! The client library against an in-process broker: delivery futures resolve to the offsets the
//! log assigned, keyed records keep their partition and order, the consumer seeks by offset,
//! timestamp, earliest and latest, and its stream yields records in log order.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use silt_broker::{Broker, BrokerConfig};
use silt_client::{
    Acks, Client, ConsumerConfig, ProducerConfig, ProducerRecord, Seek, TopicPartition,
};

struct Running {
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::bind(BrokerConfig::for_test(dir.path())).await.unwrap();
    let addr = broker.local_addr().to_string();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        broker
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let client = Client::connect(&[addr]).await.unwrap();
    Running { client, stop: Some(stop), task, _dir: dir }
}

impl Running {
    async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("broker stops")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_futures_resolve_to_log_offsets_and_keys_keep_order() {
    let r = start().await;
    r.client.admin().create_topic("orders", 3, 1, BTreeMap::new()).await.unwrap();
    let producer = r.client.producer(ProducerConfig {
        acks: Acks::All,
        linger_ms: 2,
        batch_max_bytes: 4096,
        ..Default::default()
    });
    let mut futures = Vec::new();
    for i in 0..300 {
        let rec = ProducerRecord::new("orders", format!("v{i}")).with_key(format!("key{}", i % 7));
        futures.push((i, producer.send(rec).await.unwrap()));
    }
    producer.flush().await.unwrap();
    let mut by_partition: BTreeMap<u32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, f) in futures {
        let md = f.await.unwrap();
        let expected =
            silt_core::partitioner::partition_for_key(format!("key{}", i % 7).as_bytes(), 3);
        assert_eq!(md.partition, expected, "keyed records go to the murmur2 partition");
        by_partition.entry(md.partition).or_default().push((md.offset, i));
    }
    let mut consumer = r.client.consumer(ConsumerConfig::default());
    for (p, sent) in &by_partition {
        let offsets: Vec<i64> = sent.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (0..sent.len() as i64).collect::<Vec<_>>(),
            "offsets are dense and in send order"
        );
        consumer
            .assign(vec![TopicPartition { topic: "orders".into(), partition: *p }], Seek::Earliest)
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..50 {
            got.extend(consumer.poll().await.unwrap());
            if got.len() >= sent.len() {
                break;
            }
        }
        let values: Vec<String> = got
            .iter()
            .map(|c| String::from_utf8_lossy(c.value.as_deref().unwrap()).into_owned())
            .collect();
        let expected: Vec<String> = sent.iter().map(|(_, i)| format!("v{i}")).collect();
        assert_eq!(values, expected);
    }
    producer.close().await.unwrap();
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_seeks_by_offset_time_earliest_and_latest_and_streams() {
    let r = start().await;
    r.client.admin().create_topic("events", 1, 1, BTreeMap::new()).await.unwrap();
    let producer = r.client.producer(ProducerConfig { linger_ms: 0, ..Default::default() });
    for i in 0..10i64 {
        let mut rec = ProducerRecord::new("events", format!("e{i}")).with_partition(0);
        rec.timestamp_ms = Some(1_000 * (i + 1));
        producer.send(rec).await.unwrap().await.unwrap();
    }
    let tp = TopicPartition { topic: "events".into(), partition: 0 };
    let mut c = r.client.consumer(ConsumerConfig { max_wait_ms: 100, ..Default::default() });
    c.assign(vec![tp.clone()], Seek::Latest).await.unwrap();
    assert_eq!(c.position(&tp), Some(10));
    assert!(c.poll().await.unwrap().is_empty(), "latest starts after the existing records");
    c.seek(&tp, Seek::Timestamp(4_500)).await.unwrap();
    assert_eq!(c.position(&tp), Some(4));
    c.seek(&tp, Seek::Timestamp(99_000)).await.unwrap();
    assert_eq!(c.position(&tp), Some(10), "no record that late: the end");
    c.seek(&tp, Seek::Offset(7)).await.unwrap();
    let got = c.poll().await.unwrap();
    assert_eq!(got.iter().map(|x| x.offset).collect::<Vec<_>>(), [7, 8, 9]);
    assert_eq!(got[0].timestamp_ms, 8_000);
    c.seek(&tp, Seek::Earliest).await.unwrap();
    let all: Vec<_> = c.into_stream().take(10).collect().await;
    let offsets: Vec<i64> = all.into_iter().map(|x| x.unwrap().offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    // Seeking before the log start or past the end is refused by the broker.
    let mut c = r.client.consumer(ConsumerConfig::default());
    c.assign(vec![tp.clone()], Seek::Offset(50)).await.unwrap();
    assert!(c.poll().await.is_err(), "offset past the end is OFFSET_OUT_OF_RANGE");
    r.shutdown().await;
}
