//! The load a fault test runs: producers sending unique values (`p<id>-<seq>`) round-robin over
//! the partitions at a bounded rate with `acks=all`, and consumers in assign mode reading every
//! partition from the start; both record into a [`History`]. Then the final read (a fresh
//! consumer from offset 0 up to each partition's HW) and the replica comparison (C6).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silt_client::{
    Acks, Client, ConsumerConfig, ProducerConfig, ProducerRecord, Seek, TopicPartition,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::history::{History, Outcome, ReadOp, SendOp};

/// The running load.
#[derive(Debug)]
pub struct Workload {
    pub history: Arc<History>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Load shape.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub topic: String,
    pub partitions: u32,
    pub producers: usize,
    /// Sends per second per producer.
    pub rate: u32,
    pub consumers: usize,
    pub delivery_timeout_ms: u64,
}

impl LoadSpec {
    /// The fault tests' load: two producers at 100 sends/s each and one consumer.
    pub fn standard(topic: &str, partitions: u32, delivery_timeout_ms: u64) -> LoadSpec {
        LoadSpec {
            topic: topic.to_string(),
            partitions,
            producers: 2,
            rate: 100,
            consumers: 1,
            delivery_timeout_ms,
        }
    }
}

/// The fault tests' topic configs: `min.insync.replicas=2`, `durability=fsync`, small segments.
pub fn fault_topic_configs() -> BTreeMap<String, String> {
    [
        ("min.insync.replicas", "2".to_string()),
        ("segment.bytes", SEGMENT_BYTES.to_string()),
        ("durability", "fsync".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Workload {
    pub async fn start(bootstrap: Vec<String>, spec: LoadSpec) -> Workload {
        let history = Arc::new(History::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for id in 0..spec.producers {
            let client = crate::tls::connect(&bootstrap).await.expect("producer connects");
            tasks.push(tokio::spawn(produce(
                client,
                spec.clone(),
                id,
                history.clone(),
                stop_rx.clone(),
            )));
        }
        for id in 0..spec.consumers {
            let client = crate::tls::connect(&bootstrap).await.expect("consumer connects");
            tasks.push(tokio::spawn(consume(
                client,
                spec.clone(),
                id,
                history.clone(),
                stop_rx.clone(),
            )));
        }
        Workload { history, stop, tasks }
    }

    /// Stops sending and reading; waits for every outstanding send to resolve.
    pub async fn stop(self) -> Arc<History> {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
        }
        self.history
    }
}

async fn produce(
    client: Client,
    spec: LoadSpec,
    id: usize,
    history: Arc<History>,
    stop: watch::Receiver<bool>,
) {
    let producer = client.producer(ProducerConfig {
        acks: Acks::All,
        linger_ms: 2,
        retries: 1_000,
        retry_backoff_ms: 100,
        delivery_timeout_ms: spec.delivery_timeout_ms,
        request_timeout_ms: 4_000,
        ..ProducerConfig::default()
    });
    let outstanding = Arc::new(Semaphore::new(500));
    let period = Duration::from_secs(1) / spec.rate.max(1);
    let mut tick = tokio::time::interval(period);
    let mut waits = Vec::new();
    let mut seq: u64 = 0;
    while !*stop.borrow() {
        tick.tick().await;
        let Ok(permit) = outstanding.clone().acquire_owned().await else { break };
        let value = format!("p{id}-{seq}");
        let partition = (seq % u64::from(spec.partitions)) as u32;
        seq += 1;
        let invoked = Instant::now();
        let rec = ProducerRecord::new(spec.topic.clone(), value.clone()).with_partition(partition);
        let fut = match producer.send(rec).await {
            Ok(f) => f,
            Err(_) => {
                history.record_send(SendOp {
                    value,
                    partition,
                    invoked,
                    completed: Instant::now(),
                    outcome: Outcome::Failed,
                });
                continue;
            }
        };
        let history = history.clone();
        waits.push(tokio::spawn(async move {
            let _permit = permit;
            let outcome = match fut.await {
                Ok(meta) => Outcome::Acked { offset: meta.offset },
                Err(e) if e.definitely_not_stored => Outcome::Failed,
                Err(_) => Outcome::Unknown,
            };
            history.record_send(SendOp {
                value,
                partition,
                invoked,
                completed: Instant::now(),
                outcome,
            });
        }));
    }
    let _ = producer.flush().await;
    for w in waits {
        let _ = w.await;
    }
}

async fn consume(
    client: Client,
    spec: LoadSpec,
    id: usize,
    history: Arc<History>,
    stop: watch::Receiver<bool>,
) {
    let mut consumer = client.consumer(ConsumerConfig { max_wait_ms: 200, ..Default::default() });
    let tps: Vec<TopicPartition> = (0..spec.partitions)
        .map(|partition| TopicPartition { topic: spec.topic.clone(), partition })
        .collect();
    while consumer.assign(tps.clone(), Seek::Earliest).await.is_err() {
        if *stop.borrow() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while !*stop.borrow() {
        match tokio::time::timeout(Duration::from_secs(10), consumer.poll()).await {
            Ok(Ok(records)) => {
                for r in records {
                    history.record_read(ReadOp {
                        consumer: id,
                        partition: r.partition,
                        offset: r.offset,
                        value: String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                            .into_owned(),
                    });
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads every partition from its start up to its HW with a fresh consumer (bounded in time).
pub async fn final_read(
    bootstrap: &[String],
    topic: &str,
    partitions: u32,
) -> BTreeMap<(u32, i64), String> {
    let client = crate::tls::connect(bootstrap).await.expect("final reader connects");
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|partition| TopicPartition { topic: topic.to_string(), partition })
        .collect();
    let mut ends = BTreeMap::new();
    let mut latest = client.consumer(ConsumerConfig::default());
    latest.assign(tps.clone(), Seek::Latest).await.expect("latest offsets");
    for tp in &tps {
        ends.insert(tp.partition, latest.position(tp).expect("assigned"));
    }
    let mut consumer = client.consumer(ConsumerConfig { max_wait_ms: 200, ..Default::default() });
    consumer.assign(tps.clone(), Seek::Earliest).await.expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tps.iter().any(|tp| consumer.position(tp).unwrap_or(0) < ends[&tp.partition]) {
        assert!(Instant::now() < deadline, "the final read did not reach the HW in 60 s");
        if let Ok(records) = consumer.poll().await {
            for r in records {
                out.insert(
                    (r.partition, r.offset),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                );
            }
        }
    }
    out
}

/// `segment.bytes` of the fault tests' topics (small: every replica preallocates its active
/// segment).
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Reads one replica's log from its directory (broker stopped): every batch below `upto`.
pub fn replica_bytes(dir: &Path, upto: u64) -> Result<Vec<u8>, String> {
    let config = silt_storage::LogConfig { segment_max_bytes: SEGMENT_BYTES, ..Default::default() };
    let log =
        silt_storage::Log::open(dir, config, 0).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at.0 < upto {
        let r = log
            .read_upto(at, 1 << 20, silt_core::Offset(upto))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if r.data.is_empty() {
            break;
        }
        out.extend_from_slice(&r.data);
        at = r.next_offset;
    }
    if at.0 < upto {
        return Err(format!("{} ends at {} below {upto}", dir.display(), at.0));
    }
    log.close().map_err(|e| e.to_string())?;
    Ok(out)
}

/// A keyed feeder for the group and transaction chaos tests: values `v-<n>` (key = value) sent
/// with `config`, one every `pause`, each remembered as sent before the send and as
/// acknowledged once its future resolves (awaited 20 at a time).
#[derive(Debug)]
pub struct Feeder {
    pub sent: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    pub acked: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl Feeder {
    pub fn start(client: Client, topic: &str, config: ProducerConfig, pause: Duration) -> Feeder {
        type Values = Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;
        let (sent, acked): (Values, Values) = (Arc::default(), Arc::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (sent, acked, stop, topic) =
                (sent.clone(), acked.clone(), stop.clone(), topic.to_string());
            tokio::spawn(async move {
                let producer = client.producer(config);
                let mut pending = Vec::new();
                let mut i = 0u64;
                let settle = |pending: &mut Vec<(String, _)>| {
                    let acked = acked.clone();
                    let batch = std::mem::take(pending);
                    async move {
                        for (v, f) in batch {
                            let f: silt_client::DeliveryFuture = f;
                            if f.await.is_ok() {
                                acked.lock().unwrap().insert(v);
                            }
                        }
                    }
                };
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let v = format!("v-{i}");
                    i += 1;
                    sent.lock().unwrap().insert(v.clone());
                    let r = ProducerRecord::new(topic.clone(), v.clone()).with_key(v.clone());
                    if let Ok(f) = producer.send(r).await {
                        pending.push((v, f));
                    }
                    if pending.len() >= 20 {
                        settle(&mut pending).await;
                    }
                    tokio::time::sleep(pause).await;
                }
                settle(&mut pending).await;
                let _ = producer.close().await;
            })
        };
        Feeder { sent, acked, stop, task }
    }

    /// Stops sending, waits for the outstanding answers; (sent, acknowledged).
    pub async fn stop(
        self,
    ) -> (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.expect("the feeder task ends");
        let sent = self.sent.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().clone();
        (sent, acked)
    }
}
