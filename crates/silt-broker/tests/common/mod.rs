//! An in-process broker on 127.0.0.1:0 with a temporary data directory, and raw gRPC clients.

#![allow(dead_code)]

pub mod kafka;
pub mod pki;

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use silt_broker::{Broker, BrokerConfig};
use silt_core::batch::{BatchBuilder, Record};
use silt_proto::v1::admin_client::AdminClient;
use silt_proto::v1::data_client::DataClient;
use silt_proto::v1::{self, ErrorCode};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running broker; dropping it stops it (and the temp dir goes with it).
pub struct TestBroker {
    pub addr: String,
    /// The internal services' address (Raft, controller, replication).
    pub internal: String,
    /// The Kafka listener's address, when the config has one.
    pub kafka: Option<String>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(BrokerConfig::for_test).await
    }

    /// A broker in a temporary directory (removed when it is dropped) with the config `make`
    /// builds for that directory.
    pub async fn start_with(make: impl FnOnce(PathBuf) -> BrokerConfig) -> TestBroker {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut b = Self::start_in(dir, make).await;
        b._tmp = Some(tmp);
        b
    }

    pub async fn start_in(dir: PathBuf, make: impl FnOnce(PathBuf) -> BrokerConfig) -> TestBroker {
        let broker = Broker::bind(make(dir.clone())).await.expect("broker binds");
        let addr = broker.local_addr().to_string();
        let internal = broker.internal_addr().to_string();
        let kafka = broker.kafka_addr().map(|a| a.to_string());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            broker
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("broker runs");
        });
        let b =
            TestBroker { addr, internal, kafka, dir, stop: Some(tx), task: Some(task), _tmp: None };
        b.wait_ready().await;
        b
    }

    /// Waits (bounded) until the broker has registered with its quorum of one and caught up:
    /// until then every request answers BROKER_NOT_AVAILABLE (metadata: Unavailable).
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let mut m = silt_proto::v1::metadata_client::MetadataClient::connect(format!(
                "http://{}",
                self.addr
            ))
            .await
            .unwrap();
            if m.get_metadata(v1::MetadataRequest { topics: vec![] }).await.is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker {} never became ready",
                self.addr
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the broker cleanly and waits for it; keeps the data directory.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(30), t)
                .await
                .expect("broker stops in time")
                .unwrap();
        }
        self._tmp.take()
    }

    pub async fn data(&self) -> DataClient<Channel> {
        DataClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20)
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(format!("http://{}", self.addr)).await.unwrap()
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> v1::TopicResult {
        let configs: HashMap<String, String> =
            configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = self
            .admin()
            .await
            .create_topics(v1::CreateTopicsRequest {
                topics: vec![v1::NewTopic {
                    name: name.into(),
                    partitions,
                    replication_factor: 1,
                    configs,
                }],
                validate_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        r.topics.into_iter().next().unwrap()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An encoded batch of values `prefix-i` at timestamp `ts`.
pub fn batch(prefix: &str, n: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        b.push(&Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{prefix}-{i}"))),
            headers: vec![],
            timestamp_ms: ts,
        });
    }
    b.build().unwrap()
}

pub fn produce_req(
    topic: &str,
    partition: u32,
    acks: v1::Acks,
    data: v1::partition_produce_data::Data,
) -> v1::ProduceRequest {
    v1::ProduceRequest {
        acks: acks as i32,
        timeout_ms: 10_000,
        topics: vec![v1::TopicProduceData {
            topic: topic.into(),
            partitions: vec![v1::PartitionProduceData { partition, data: Some(data) }],
        }],
        ..Default::default()
    }
}

/// Produces raw batches and returns the partition's answer.
pub async fn produce(
    c: &mut DataClient<Channel>,
    topic: &str,
    partition: u32,
    acks: v1::Acks,
    batches: Bytes,
) -> v1::PartitionProduceResponse {
    let req = produce_req(
        topic,
        partition,
        acks,
        v1::partition_produce_data::Data::RecordBatches(batches),
    );
    c.produce(req).await.unwrap().into_inner().topics.remove(0).partitions.remove(0)
}

pub fn fetch_req(
    topic: &str,
    partition: u32,
    offset: i64,
    max_wait_ms: u32,
    decode: bool,
) -> v1::FetchRequest {
    v1::FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 0,
        decode_records: decode,
        topics: vec![v1::TopicFetchData {
            topic: topic.into(),
            partitions: vec![v1::PartitionFetchData {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 0,
                current_leader_epoch: None,
            }],
        }],
        ..Default::default()
    }
}

/// Fetches decoded records from `offset` (no wait).
pub async fn fetch_values(
    c: &mut DataClient<Channel>,
    topic: &str,
    partition: u32,
    offset: i64,
) -> (ErrorCode, Vec<(i64, String)>) {
    let r = c.fetch(fetch_req(topic, partition, offset, 0, true)).await.unwrap().into_inner();
    let p = &r.topics[0].partitions[0];
    let vals = p
        .records
        .iter()
        .map(|r| {
            (r.offset, String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        })
        .collect();
    (p.error_code(), vals)
}

/// The body of an HTTP GET of `path` on the broker's health/metrics listener `addr`.
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("http port");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}
