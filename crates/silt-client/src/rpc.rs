//! Request/reply over topics (RabbitMQ's RPC pattern with a callback queue): a [`Requester`]
//! sends each request to a request topic with a `reply-to` header (its own partition of a reply
//! topic) and a `correlation-id`, and waits for the reply carrying that id; a [`Responder`]
//! takes requests from a share group (any number of responders share them, a request held by a
//! responder that dies is delivered to another after the lock expires) and produces each reply
//! before accepting the request.
//!
//! Delivery is at least once: a responder that dies after replying but before accepting makes
//! the request run again; the requester keeps the first reply and drops the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use silt_core::batch::Header;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{
    AckKind, AckMode, Acks, Client, ClientError, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, Seek, ShareConfig, ShareConsumer, ShareRecord, TopicPartition,
};

/// Header naming where the reply goes: `TOPIC/PARTITION`.
pub const REPLY_TO: &str = "reply-to";
/// Header pairing a reply with its request.
pub const CORRELATION_ID: &str = "correlation-id";

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<ShareReply>>>>;

/// A reply as the requester receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareReply {
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Sends requests and waits for their replies.
pub struct Requester {
    producer: Producer,
    request_topic: String,
    reply_to: String,
    pending: Pending,
    listener: JoinHandle<()>,
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester").field("reply_to", &self.reply_to).finish()
    }
}

fn header<'a>(headers: &'a [Header], key: &str) -> Option<&'a Bytes> {
    headers.iter().rev().find(|h| h.key == key).and_then(|h| h.value.as_ref())
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Requester {
    /// A requester sending to `request_topic` and listening on one partition of `reply_topic`
    /// (picked at random: requesters sharing a partition skip each other's replies), from its
    /// end.
    pub async fn new(
        client: &Client,
        request_topic: &str,
        reply_topic: &str,
    ) -> Result<Requester, ClientError> {
        let partitions = client.partition_count(reply_topic).await?;
        let partition = (silt_core::random_u64() % u64::from(partitions.max(1))) as u32;
        let mut consumer =
            client.consumer(ConsumerConfig { max_wait_ms: 100, ..ConsumerConfig::default() });
        let tp = TopicPartition { topic: reply_topic.to_string(), partition };
        consumer.assign(vec![tp], Seek::Latest).await?;
        let pending: Pending = Arc::default();
        let listener = {
            let pending = pending.clone();
            tokio::spawn(async move {
                loop {
                    let records = match consumer.poll().await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(error = %e, "reply poll failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
                    for r in records {
                        let Some(id) = header(&r.headers, CORRELATION_ID) else { continue };
                        let id = String::from_utf8_lossy(id).into_owned();
                        if let Some(tx) = p.remove(&id) {
                            let _ = tx.send(ShareReply { value: r.value, headers: r.headers });
                        }
                    }
                }
            })
        };
        let producer = client.producer(ProducerConfig {
            acks: Acks::All,
            linger_ms: 1,
            ..ProducerConfig::default()
        });
        Ok(Requester {
            producer,
            request_topic: request_topic.to_string(),
            reply_to: format!("{reply_topic}/{partition}"),
            pending,
            listener,
            prefix: format!("{:016x}", silt_core::random_u64()),
            next: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Sends `value` (with `key`, if any) and waits up to `timeout` for the reply.
    pub async fn call(
        &self,
        key: Option<Bytes>,
        value: Bytes,
        timeout: Duration,
    ) -> Result<ShareReply, CallError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{n}", self.prefix);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), tx);
        let forget = || {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        };
        let record = ProducerRecord {
            topic: self.request_topic.clone(),
            key,
            value: Some(value),
            headers: vec![
                Header { key: REPLY_TO.into(), value: Some(Bytes::from(self.reply_to.clone())) },
                Header { key: CORRELATION_ID.into(), value: Some(Bytes::from(id.clone())) },
            ],
            ..ProducerRecord::default()
        };
        let sent = async {
            self.producer.send(record).await?.await?;
            Ok::<(), ClientError>(())
        };
        let outcome = tokio::time::timeout(timeout, async {
            sent.await?;
            rx.await.map_err(|_| ClientError::InvalidArgument("requester closed".into()))
        })
        .await;
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                forget();
                Err(e.into())
            }
            Err(_) => {
                forget();
                Err(CallError::Timeout(timeout))
            }
        }
    }

    /// Stops listening for replies.
    pub async fn close(self) -> Result<(), ClientError> {
        self.listener.abort();
        self.producer.close().await
    }
}

/// Answers requests taken from a share group.
pub struct Responder {
    consumer: ShareConsumer,
    producer: Producer,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish()
    }
}

/// Where a request's reply goes: its `reply-to` header, `TOPIC/PARTITION`.
fn reply_to(r: &ShareRecord) -> Option<(String, u32)> {
    let to = std::str::from_utf8(r.header(REPLY_TO)?).ok()?;
    let (topic, partition) = to.rsplit_once('/')?;
    Some((topic.to_string(), partition.parse().ok()?))
}

impl Responder {
    /// Joins share group `group` of `request_topic` (new groups start at the topic's end).
    pub async fn join(
        client: &Client,
        request_topic: &str,
        group: &str,
    ) -> Result<Responder, ClientError> {
        let config = ShareConfig {
            ack_mode: AckMode::Explicit,
            max_wait: Duration::from_millis(200),
            max_records: 100,
            client_id: "silt-rpc".into(),
            ..ShareConfig::new(group, &[request_topic])
        };
        let consumer = ShareConsumer::join(client, config).await?;
        let producer = client.producer(ProducerConfig {
            acks: Acks::All,
            linger_ms: 1,
            ..ProducerConfig::default()
        });
        Ok(Responder { consumer, producer })
    }

    /// The next requests (waits briefly when there are none).
    pub async fn poll(&mut self) -> Result<Vec<ShareRecord>, ClientError> {
        self.consumer.poll().await
    }

    /// Produces `value` as the reply to `request` (acks=all), then accepts the request. A request
    /// without a usable `reply-to` is rejected instead (dead-lettered if the topic has a
    /// dead-letter topic).
    pub async fn reply(&mut self, request: &ShareRecord, value: Bytes) -> Result<(), ClientError> {
        let Some((topic, partition)) = reply_to(request) else {
            self.consumer.acknowledge(request, AckKind::Reject);
            return Ok(());
        };
        let mut headers = Vec::new();
        if let Some(id) = request.header(CORRELATION_ID) {
            headers.push(Header { key: CORRELATION_ID.into(), value: Some(id.clone()) });
        }
        let record = ProducerRecord {
            topic,
            partition: Some(partition),
            value: Some(value),
            headers,
            ..ProducerRecord::default()
        };
        self.producer.send(record).await?.await?;
        self.consumer.acknowledge(request, AckKind::Accept);
        Ok(())
    }

    /// Rejects `request` (not answered, never delivered again).
    pub fn reject(&mut self, request: &ShareRecord) {
        self.consumer.acknowledge(request, AckKind::Reject);
    }

    /// Sends the acknowledgements now (they go with the next poll otherwise).
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.consumer.commit().await.map(|_| ())
    }

    /// Acknowledges what is answered and leaves the group.
    pub async fn close(self) -> Result<(), ClientError> {
        self.consumer.close().await?;
        self.producer.close().await
    }
}
