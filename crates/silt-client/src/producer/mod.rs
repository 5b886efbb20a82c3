//! `Producer`: records go to a background task that batches them per partition (`linger_ms`,
//! `batch_max_bytes`), groups ready batches per leader broker into one request, keeps at most
//! `max_in_flight` requests in flight (up to `max_in_flight` batches per partition with
//! idempotence, one without; retries keep each partition's order), and retries retriable failures (`NOT_LEADER`, `NOT_ENOUGH_REPLICAS`, an
//! unavailable broker, ...) with backoff and a metadata refresh, within the delivery timeout. Each `send` returns a future that resolves to the record's offset.

mod accumulator;
mod idempotence;
mod lanes;
mod sender;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use silt_core::batch::{Compression, Header, Record};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Client, ClientError, ProduceError};
use accumulator::{Accumulator, Partitioner};

/// How many broker acknowledgements a produce waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget.
    None,
    /// The leader's append.
    Leader,
    /// Every in-sync replica (and min.insync.replicas), on disk with durability=fsync.
    All,
}

/// Producer settings (units in the names).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub linger_ms: u64,
    pub batch_max_bytes: usize,
    /// Kafka's `max.request.size`: record bytes in one produce request to a broker; batches for
    /// more go in several requests, one after another (one batch larger than this still goes
    /// alone). Keep it under the brokers' `max_request_bytes` (default 8 MiB).
    pub request_max_bytes: usize,
    /// Kafka's `batch.size`: bytes of keyless records sent to one partition before the
    /// partitioner moves on to another, chosen at random (KIP-794).
    pub partition_switch_bytes: usize,
    /// Produce requests in flight at once.
    pub max_in_flight: usize,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    /// A record not acknowledged within this time fails.
    pub delivery_timeout_ms: u64,
    pub request_timeout_ms: u32,
    /// Kafka's `enable.idempotence`: retries never append a batch twice (the brokers answer a
    /// retried batch with its original offsets). `None` (the default): on with `Acks::All`, off
    /// otherwise. `Some(true)` needs `Acks::All` ([`Client::try_producer`] refuses the rest).
    pub enable_idempotence: Option<bool>,
    /// Kafka's `compression.type`: the codec whole batches are compressed with.
    pub compression: Compression,
    /// Kafka's `compression.level` (gzip 1-9, zstd -7..-1 or 1-22; none for the others):
    /// `None` is the codec's default.
    pub compression_level: Option<i32>,
}

impl ProducerConfig {
    /// Whether batches carry a producer id and sequences; an error for idempotence asked for
    /// with acks other than `All` (as in Kafka, whose idempotence needs `acks=all`).
    pub fn idempotent(&self) -> Result<bool, ClientError> {
        match (self.enable_idempotence, self.acks) {
            (Some(true), Acks::All) | (None, Acks::All) => Ok(true),
            (Some(true), acks) => Err(ClientError::InvalidArgument(format!(
                "idempotence needs acks=all (got {acks:?}); turn it off or use acks=all"
            ))),
            (Some(false), _) | (None, _) => Ok(false),
        }
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger_ms: 5,
            batch_max_bytes: 1024 * 1024,
            request_max_bytes: 4 * 1024 * 1024,
            partition_switch_bytes: 16 * 1024,
            max_in_flight: 5,
            retries: 10,
            retry_backoff_ms: 100,
            delivery_timeout_ms: 120_000,
            request_timeout_ms: 30_000,
            enable_idempotence: None,
            compression: Compression::None,
            compression_level: None,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: String,
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` = now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: u32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: u32,
    /// -1 with `Acks::None` (not known).
    pub offset: i64,
    pub timestamp_ms: i64,
}

type Waiter = oneshot::Sender<Result<RecordMetadata, ProduceError>>;

/// Resolves when the record is acknowledged (or has definitely failed).
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata, ProduceError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(ProduceError {
                    code: None,
                    message: "the producer stopped before delivery".into(),
                    definitely_not_stored: false,
                })
            })
        })
    }
}

enum Msg {
    Record { topic: String, partition: u32, record: Record, waiter: Waiter },
    Flush(oneshot::Sender<()>),
}

/// Records queued in the producer before `send` waits.
const QUEUE_RECORDS: usize = 8192;

/// A batching producer (cheap to clone; clones share the batches).
#[derive(Debug, Clone)]
pub struct Producer {
    client: Client,
    tx: mpsc::Sender<Msg>,
    /// Records accepted but not yet resolved.
    outstanding: watch::Receiver<u64>,
    counter: Arc<watch::Sender<u64>>,
    partitioner: Arc<std::sync::Mutex<Partitioner>>,
    partition_switch_bytes: usize,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record { .. } => "Record",
            Msg::Flush(_) => "Flush",
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Producer {
    /// `config` must have passed [`ProducerConfig::idempotent`] (else idempotence is off).
    pub(crate) fn new(client: Client, config: ProducerConfig) -> Producer {
        let (tx, rx) = mpsc::channel(QUEUE_RECORDS);
        let (counter, outstanding) = watch::channel(0u64);
        let counter = Arc::new(counter);
        let partition_switch_bytes = config.partition_switch_bytes;
        tokio::spawn(run(client.clone(), config, rx, counter.clone()));
        let partitioner = Arc::new(std::sync::Mutex::new(Partitioner::random()));
        Producer { client, tx, outstanding, counter, partitioner, partition_switch_bytes }
    }

    /// Queues a record (waiting only if the producer's queue is full) and returns the future of
    /// its delivery.
    pub async fn send(&self, r: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let partitions = self.client.partition_count(&r.topic).await?;
        if let Some(p) = r.partition
            && p >= partitions
        {
            return Err(ClientError::InvalidArgument(format!(
                "topic {} has {partitions} partitions, not {}",
                r.topic,
                p + 1
            )));
        }
        let size = r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
        let partition = self.partitioner.lock().unwrap_or_else(|p| p.into_inner()).choose(
            &r.topic,
            r.partition,
            r.key.as_deref(),
            partitions,
            size,
            self.partition_switch_bytes,
        );
        let record = Record {
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp_ms: r.timestamp_ms.unwrap_or_else(now_ms),
        };
        let (waiter, rx) = oneshot::channel();
        self.counter.send_modify(|n| *n += 1);
        if self.tx.send(Msg::Record { topic: r.topic, partition, record, waiter }).await.is_err() {
            self.counter.send_modify(|n| *n -= 1);
            return Err(ClientError::Closed);
        }
        Ok(DeliveryFuture { rx })
    }

    /// Sends every lingering batch and waits until every record sent so far is resolved.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(done)).await.map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?;
        let mut out = self.outstanding.clone();
        out.wait_for(|n| *n == 0).await.map_err(|_| ClientError::Closed)?;
        Ok(())
    }

    /// Flushes and stops this handle.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await
    }
}

/// The background task: accumulate, seal on size/linger/flush, dispatch.
async fn run(
    client: Client,
    config: ProducerConfig,
    mut rx: mpsc::Receiver<Msg>,
    counter: Arc<watch::Sender<u64>>,
) {
    let mut acc: Accumulator<Waiter> =
        Accumulator::new(config.batch_max_bytes, Duration::from_millis(config.linger_ms))
            .with_compression(config.compression, config.compression_level);
    let pipeline =
        sender::Pipeline::new(config.max_in_flight, config.idempotent().unwrap_or(false));
    let config = Arc::new(config);
    loop {
        let deadline = acc.next_deadline();
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d.into()).await, None => std::future::pending().await } } => {
                let ready = acc.ready(Instant::now(), false);
                sender::dispatch(&client, &config, &pipeline, &counter, ready).await;
                continue;
            }
        };
        match msg {
            Some(Msg::Record { topic, partition, record, waiter }) => {
                if let Some(sealed) = acc.add(&topic, partition, &record, waiter, Instant::now()) {
                    sender::dispatch(&client, &config, &pipeline, &counter, vec![sealed]).await;
                }
                if config.linger_ms == 0 {
                    let ready = acc.ready(Instant::now(), true);
                    sender::dispatch(&client, &config, &pipeline, &counter, ready).await;
                }
            }
            Some(Msg::Flush(done)) => {
                let ready = acc.ready(Instant::now(), true);
                sender::dispatch(&client, &config, &pipeline, &counter, ready).await;
                let _ = done.send(());
            }
            None => {
                let ready = acc.ready(Instant::now(), true);
                sender::dispatch(&client, &config, &pipeline, &counter, ready).await;
                return;
            }
        }
    }
}
