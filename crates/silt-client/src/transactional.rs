//! `TransactionalProducer`: Kafka's transactional producer on Silt's protocol v2 (KIP-890,
//! `docs/transactions.md`). Records sent inside a transaction are buffered per partition and
//! written as transactional batches (acks=all, one sequence range per partition and epoch);
//! `commit` writes what is buffered and asks the coordinator to commit, `abort` drops the
//! buffer and asks it to abort. Every end bumps the epoch (the coordinator answers the next
//! one), so nothing of a finished transaction can join the next. A newer producer with the same
//! transactional id fences this one: every later call fails with `PRODUCER_FENCED`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use silt_core::batch::{BatchBuilder, Compression, Record};
use silt_proto::v1::transactions_client::TransactionsClient;
use silt_proto::v1::{self, ErrorCode};

use crate::client::Transport;
use crate::group::link::GroupLink;
use crate::{Client, ClientError, GroupMetadata, ProducerRecord, TopicPartition};

/// Transactional producer settings.
#[derive(Debug, Clone)]
pub struct TransactionalConfig {
    /// Identifies the producer across restarts: a new producer with the same id fences the old
    /// one and aborts what it left open.
    pub transactional_id: String,
    /// How long a transaction may stay open before the coordinator aborts it.
    pub transaction_timeout_ms: u32,
    /// A partition's buffered records are written once they reach this many bytes.
    pub batch_max_bytes: usize,
    /// How long a call is retried while leaders or the coordinator move.
    pub request_timeout: Duration,
    /// The codec batches are compressed with, and its level (as in `ProducerConfig`).
    pub compression: Compression,
    pub compression_level: Option<i32>,
}

impl TransactionalConfig {
    pub fn new(transactional_id: impl Into<String>) -> TransactionalConfig {
        TransactionalConfig {
            transactional_id: transactional_id.into(),
            transaction_timeout_ms: 60_000,
            batch_max_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            compression: Compression::None,
            compression_level: None,
        }
    }
}

/// Pause before a retriable call is tried again.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One partition's part of the open transaction.
#[derive(Debug, Default)]
struct Part {
    /// Records not yet written.
    builder: Option<BatchBuilder>,
    /// The next sequence number in this epoch.
    next_seq: i32,
}

/// A producer whose writes to many partitions commit or abort together.
#[derive(Debug)]
pub struct TransactionalProducer {
    client: Client,
    config: TransactionalConfig,
    producer_id: i64,
    epoch: i16,
    coordinator: Option<String>,
    parts: BTreeMap<TopicPartition, Part>,
    /// A keyless record's partition per topic for this transaction (sticky).
    sticky: HashMap<String, u32>,
    open: bool,
    fenced: bool,
    /// A write or an offset commit of the open transaction failed: some of it may be missing,
    /// so it can only be aborted (Kafka's abortable error).
    must_abort: Option<String>,
}

fn txn_client(client: &Client, addr: &str) -> Result<TransactionsClient<Transport>, ClientError> {
    Ok(TransactionsClient::new(client.channel(addr)?)
        .max_decoding_message_size(crate::client::MAX_DECODE_BYTES)
        .max_encoding_message_size(crate::client::MAX_ENCODE_BYTES))
}

fn retriable(e: &ClientError) -> bool {
    e.is_retriable() || matches!(e, ClientError::Server { code: ErrorCode::NotLeader, .. })
}

fn fencing(e: &ClientError) -> bool {
    matches!(e.code(), Some(ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch))
}

impl TransactionalProducer {
    /// Registers the transactional id with its coordinator (fencing older producers of it, and
    /// waiting while the coordinator aborts what they left open).
    pub async fn new(
        client: &Client,
        config: TransactionalConfig,
    ) -> Result<TransactionalProducer, ClientError> {
        config
            .compression
            .check_level(config.compression_level)
            .map_err(ClientError::InvalidArgument)?;
        let mut p = TransactionalProducer {
            client: client.clone(),
            config,
            producer_id: -1,
            epoch: -1,
            coordinator: None,
            parts: BTreeMap::new(),
            sticky: HashMap::new(),
            open: false,
            fenced: false,
            must_abort: None,
        };
        let req = v1::InitProducerIdRequest {
            transactional_id: Some(p.config.transactional_id.clone()),
            transaction_timeout_ms: p.config.transaction_timeout_ms,
        };
        let r = p
            .with_coordinator(|addr, client| {
                let req = req.clone();
                async move {
                    let r = client.data(&addr)?.init_producer_id(req).await?.into_inner();
                    if r.error_code != 0 {
                        return Err(ClientError::server(r.error_code, &r.error_message));
                    }
                    Ok((r.producer_id, r.producer_epoch))
                }
            })
            .await?;
        p.producer_id = r.0;
        p.epoch = epoch16(r.1)?;
        Ok(p)
    }

    /// The producer id and epoch of the current (or next) transaction.
    pub fn producer_id_and_epoch(&self) -> (i64, i16) {
        (self.producer_id, self.epoch)
    }

    /// Starts a transaction.
    pub fn begin(&mut self) -> Result<(), ClientError> {
        self.check_usable()?;
        if self.open {
            return Err(ClientError::InvalidArgument("a transaction is open already".into()));
        }
        self.open = true;
        self.sticky.clear();
        Ok(())
    }

    /// Adds a record to the open transaction (written by `flush` or `commit`, or once its
    /// partition's buffer is full); answers the partition it goes to.
    pub async fn send(&mut self, r: ProducerRecord) -> Result<TopicPartition, ClientError> {
        self.check_usable()?;
        if !self.open {
            return Err(ClientError::InvalidArgument("no transaction is open: begin first".into()));
        }
        let partition = match (r.partition, &r.key) {
            (Some(p), _) => p,
            (None, Some(k)) => {
                let n = self.client.partition_count(&r.topic).await?;
                silt_core::partitioner::partition_for_key(k, n)
            }
            (None, None) => match self.sticky.get(&r.topic) {
                Some(p) => *p,
                None => {
                    let n = self.client.partition_count(&r.topic).await?;
                    let p = (silt_core::random_u64() % u64::from(n.max(1))) as u32;
                    self.sticky.insert(r.topic.clone(), p);
                    p
                }
            },
        };
        let tp = TopicPartition { topic: r.topic, partition };
        let record = Record {
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp_ms: r.timestamp_ms.unwrap_or_else(now_ms),
        };
        let max = self.config.batch_max_bytes;
        let part = self.parts.entry(tp.clone()).or_default();
        let full =
            part.builder.as_ref().is_some_and(|b| !b.is_empty() && b.size_with(&record) > max);
        if full {
            self.write(std::slice::from_ref(&tp)).await?;
        }
        let part = self.parts.entry(tp.clone()).or_default();
        part.builder.get_or_insert_with(BatchBuilder::new).push(&record);
        Ok(tp)
    }

    /// Writes every buffered record of the open transaction (acks=all).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.check_usable()?;
        let tps: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|(_, p)| p.builder.as_ref().is_some_and(|b| !b.is_empty()))
            .map(|(tp, _)| tp.clone())
            .collect();
        self.write(&tps).await
    }

    /// Adds a group's offsets to the open transaction (Kafka's `sendOffsetsToTransaction`):
    /// they become the group's committed offsets only if the transaction commits. `group` is
    /// the consumer's [`GroupConsumer::group_metadata`](crate::GroupConsumer::group_metadata):
    /// a member that has lost the partitions (a newer epoch took them) is refused, so a zombie
    /// processor cannot commit. `offsets` are the next offsets to consume.
    pub async fn send_offsets(
        &mut self,
        group: &GroupMetadata,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), ClientError> {
        self.check_usable()?;
        if !self.open {
            return Err(ClientError::InvalidArgument("no transaction is open: begin first".into()));
        }
        let req = v1::TxnCommitOffsetsRequest {
            transactional_id: self.config.transactional_id.clone(),
            producer_id: self.producer_id,
            producer_epoch: i32::from(self.epoch),
            group: group.group.clone(),
            member_id: group.member_id.clone(),
            member_epoch: group.member_epoch,
            offsets: offsets
                .iter()
                .map(|(tp, offset)| v1::OffsetCommit {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        let link = GroupLink::new(self.client.clone(), &group.group);
        let make = |l: &GroupLink, addr: &str| txn_client(l.client(), addr);
        let r = link
            .call_as(self.config.request_timeout, make, |mut c| {
                let req = req.clone();
                async move { c.commit_offsets(req).await }
            })
            .await;
        r.map(drop).map_err(|e| self.failed(e))
    }

    /// Writes what is buffered, then commits: every record of the transaction becomes visible
    /// to `read_committed` consumers at once.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.check_usable()?;
        if !self.open {
            return Err(ClientError::InvalidArgument("no transaction is open".into()));
        }
        if let Some(why) = &self.must_abort {
            return Err(ClientError::Server {
                code: ErrorCode::InvalidTxnState,
                message: format!("the transaction can only be aborted: {why}"),
            });
        }
        // On a failed write the transaction cannot commit: the caller aborts it.
        self.flush().await?;
        self.end(true).await
    }

    /// Drops what is buffered and aborts: nothing of the transaction is ever visible to
    /// `read_committed` consumers.
    pub async fn abort(&mut self) -> Result<(), ClientError> {
        self.check_usable()?;
        if !self.open {
            return Err(ClientError::InvalidArgument("no transaction is open".into()));
        }
        for p in self.parts.values_mut() {
            p.builder = None;
        }
        self.end(false).await
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        if self.fenced {
            return Err(ClientError::Server {
                code: ErrorCode::ProducerFenced,
                message: format!(
                    "a newer producer took transactional id {} over",
                    self.config.transactional_id
                ),
            });
        }
        Ok(())
    }

    fn fenced_by(&mut self, e: ClientError) -> ClientError {
        if fencing(&e) {
            self.fenced = true;
        }
        e
    }

    /// A part of the open transaction failed: from now on it can only be aborted.
    fn failed(&mut self, e: ClientError) -> ClientError {
        if self.open {
            self.must_abort.get_or_insert_with(|| e.to_string());
        }
        self.fenced_by(e)
    }

    async fn end(&mut self, commit: bool) -> Result<(), ClientError> {
        let req = v1::EndTxnRequest {
            transactional_id: self.config.transactional_id.clone(),
            producer_id: self.producer_id,
            producer_epoch: i32::from(self.epoch),
            commit,
        };
        let r = self
            .with_coordinator(|addr, client| {
                let req = req.clone();
                async move {
                    let r = txn_client(&client, &addr)?.end_txn(req).await?.into_inner();
                    if r.error_code != 0 {
                        return Err(ClientError::server(r.error_code, &r.error_message));
                    }
                    Ok((r.producer_id, r.producer_epoch))
                }
            })
            .await;
        let (id, epoch) = r.map_err(|e| self.fenced_by(e))?;
        self.producer_id = id;
        self.epoch = epoch16(epoch)?;
        self.parts.clear();
        self.open = false;
        self.must_abort = None;
        Ok(())
    }

    /// Writes the buffered records of `tps`, one transactional batch each, concurrently.
    async fn write(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        let mut batches = Vec::new();
        for tp in tps {
            let Some(part) = self.parts.get_mut(tp) else { continue };
            let Some(mut b) = part.builder.take().filter(|b| !b.is_empty()) else { continue };
            let count = b.len() as i32;
            b.set_producer(self.producer_id, self.epoch, part.next_seq);
            b.set_transactional();
            b.set_compression(self.config.compression, self.config.compression_level);
            part.next_seq = part.next_seq.wrapping_add(count) & i32::MAX;
            let bytes = b.build().ok_or_else(|| ClientError::InvalidArgument("empty".into()))?;
            batches.push((tp.clone(), bytes));
        }
        let id = self.config.transactional_id.clone();
        let until = tokio::time::Instant::now() + self.config.request_timeout;
        let writes = batches.into_iter().map(|(tp, bytes)| {
            let (client, id) = (self.client.clone(), id.clone());
            async move { produce_until(&client, &id, &tp, bytes, until).await }
        });
        for r in join_all(writes).await {
            r.map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    /// Calls the transactional id's coordinator, finding it first and again when it moves;
    /// retriable failures (`CONCURRENT_TRANSACTIONS` included) are retried until the request
    /// timeout.
    async fn with_coordinator<T, F, Fut>(&mut self, f: F) -> Result<T, ClientError>
    where
        F: Fn(String, Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let until = tokio::time::Instant::now() + self.config.request_timeout;
        loop {
            let r = match &self.coordinator {
                Some(addr) => {
                    let call = f(addr.clone(), self.client.clone());
                    match tokio::time::timeout(CALL_TIMEOUT, call).await {
                        Ok(r) => r,
                        Err(_) => Err(ClientError::Timeout),
                    }
                }
                None => match find_coordinator(&self.client, &self.config.transactional_id).await {
                    Ok(addr) => {
                        self.coordinator = Some(addr);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if retriable(&e) && tokio::time::Instant::now() < until => {
                    if matches!(
                        e.code(),
                        Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
                    ) || matches!(e, ClientError::Transport(_) | ClientError::Timeout)
                    {
                        self.coordinator = None;
                    }
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn epoch16(epoch: i32) -> Result<i16, ClientError> {
    i16::try_from(epoch)
        .map_err(|_| ClientError::Corrupt(format!("producer epoch {epoch} out of range")))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Asks the brokers, in turn, where the transactional id's coordinator is.
async fn find_coordinator(client: &Client, id: &str) -> Result<String, ClientError> {
    let mut last = ClientError::Connect("no broker answered".into());
    for addr in client.any_addresses() {
        let req = v1::FindTxnCoordinatorRequest { transactional_id: id.to_string() };
        let call =
            async { txn_client(client, &addr)?.find_coordinator(req).await.map_err(Into::into) };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(r)) => {
                let r: v1::FindTxnCoordinatorResponse = r.into_inner();
                if r.error_code == 0 && !r.address.is_empty() {
                    return Ok(r.address);
                }
                last = ClientError::server(r.error_code, &r.error_message);
                if !last.code().is_some_and(ErrorCode::is_retriable) {
                    return Err(last);
                }
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = ClientError::Timeout,
        }
    }
    Err(last)
}

/// Produces one transactional batch to its partition's leader, resending the same bytes (the
/// leader deduplicates by sequence) while leadership moves, until `until`.
async fn produce_until(
    client: &Client,
    id: &str,
    tp: &TopicPartition,
    batch: Bytes,
    until: tokio::time::Instant,
) -> Result<(), ClientError> {
    loop {
        let r = produce_once(client, id, tp, batch.clone()).await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) if retriable(&e) && tokio::time::Instant::now() < until => {
                tracing::debug!(topic = %tp.topic, partition = tp.partition, error = %e, "transactional produce: retrying");
                let _ = client.metadata(std::slice::from_ref(&tp.topic)).await;
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn produce_once(
    client: &Client,
    id: &str,
    tp: &TopicPartition,
    batch: Bytes,
) -> Result<(), ClientError> {
    let addr = client.leader(&tp.topic, tp.partition).await?;
    let req = v1::ProduceRequest {
        acks: v1::Acks::All as i32,
        timeout_ms: 0,
        topics: vec![v1::TopicProduceData {
            topic: tp.topic.clone(),
            partitions: vec![v1::PartitionProduceData {
                partition: tp.partition,
                data: Some(v1::partition_produce_data::Data::RecordBatches(batch)),
            }],
        }],
        transactional_id: Some(id.to_string()),
    };
    let mut data = client.data(&addr)?;
    let call = data.produce(req);
    let resp = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r?.into_inner(),
        Err(_) => return Err(ClientError::Timeout),
    };
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ClientError::Corrupt("empty produce answer".into()))?;
    if p.error_code != 0 {
        return Err(ClientError::server(p.error_code, &p.error_message));
    }
    Ok(())
}

impl crate::Admin {
    /// Every transactional id the cluster's coordinators hold (each broker lists its own).
    pub async fn list_transactions(&self) -> Result<Vec<v1::TransactionState>, ClientError> {
        let meta = self.client.metadata(&[]).await?;
        let mut out: BTreeMap<String, v1::TransactionState> = BTreeMap::new();
        for b in meta.brokers.iter().filter(|b| b.alive) {
            let call = async {
                let r = txn_client(&self.client, &b.address)?
                    .list_transactions(v1::ListTransactionsRequest {})
                    .await?;
                Ok::<_, ClientError>(r.into_inner())
            };
            let r = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| ClientError::Timeout)??;
            for t in r.transactions {
                out.insert(t.transactional_id.clone(), t);
            }
        }
        Ok(out.into_values().collect())
    }

    /// One transactional id's state, from its coordinator.
    pub async fn describe_transaction(
        &self,
        id: &str,
    ) -> Result<v1::TransactionState, ClientError> {
        let until = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let r = async {
                let addr = find_coordinator(&self.client, id).await?;
                let req = v1::DescribeTransactionRequest { transactional_id: id.to_string() };
                let r = txn_client(&self.client, &addr)?.describe_transaction(req).await?;
                let r = r.into_inner();
                if r.error_code != 0 {
                    return Err(ClientError::server(r.error_code, &r.error_message));
                }
                r.transaction.ok_or_else(|| ClientError::Corrupt("no transaction state".into()))
            };
            match tokio::time::timeout(CALL_TIMEOUT, r).await {
                Ok(Ok(t)) => return Ok(t),
                Ok(Err(e)) if retriable(&e) && tokio::time::Instant::now() < until => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ClientError::Timeout),
            }
        }
    }
}
