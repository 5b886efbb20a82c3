//! `Consumer`: assigned partitions with a position each; `poll` long-polls the leaders, checks
//! every batch (CRC included) and returns the records at or after the positions.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use silt_core::batch::{BatchIter, Header, RecordIter, verify_crc};
use silt_proto::v1::{self, ErrorCode};
use tokio::task::JoinHandle;

use crate::{Client, ClientError};

/// Fetch settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Longest a poll waits for data at the broker.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    pub max_bytes: u32,
    pub partition_max_bytes: u32,
    /// Which records of transactions a poll returns.
    pub isolation: Isolation,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 8 * 1024 * 1024,
            partition_max_bytes: 2 * 1024 * 1024,
            isolation: Isolation::ReadUncommitted,
        }
    }
}

/// Which records of transactions a consumer sees (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark, including records of open and aborted
    /// transactions.
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional ones), below the last
    /// stable offset.
    ReadCommitted,
}

impl Isolation {
    fn level(self) -> v1::IsolationLevel {
        match self {
            Isolation::ReadUncommitted => v1::IsolationLevel::ReadUncommitted,
            Isolation::ReadCommitted => v1::IsolationLevel::ReadCommitted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    Offset(i64),
    /// The first record with a timestamp >= this (ms); the end if there is none.
    Timestamp(i64),
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// N records before the high watermark (kcat's `-o -N`), not before the log start.
    FromEnd(u64),
}

/// A record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// What one fetch brought back per partition: the position asked for and the answer.
type RawRound = Vec<(TopicPartition, i64, v1::PartitionFetchResponse)>;

/// One leader's fetch in flight, with the positions it was requested from.
#[derive(Debug)]
struct InFlight {
    parts: Vec<(TopicPartition, i64)>,
    handle: JoinHandle<Result<RawRound, ClientError>>,
}

/// A consumer of explicitly assigned partitions. Each leader broker is fetched independently
/// (one long poll per leader in flight at a time): a leader with nothing new never holds back
/// records that another leader already returned.
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    positions: BTreeMap<TopicPartition, i64>,
    /// Fetches requested and not yet taken, at most one per leader and partition.
    inflight: Vec<InFlight>,
    /// Where to go when a position is out of range (group consumers); None: an error.
    pub(crate) reset_out_of_range: Option<Seek>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.drop_inflight();
    }
}

async fn fetch_from(
    client: &Client,
    config: &ConsumerConfig,
    addr: String,
    parts: Vec<(TopicPartition, i64)>,
) -> Result<RawRound, ClientError> {
    let mut topics: Vec<v1::TopicFetchData> = Vec::new();
    for (tp, pos) in &parts {
        let p = v1::PartitionFetchData {
            partition: tp.partition,
            fetch_offset: *pos,
            partition_max_bytes: config.partition_max_bytes,
            current_leader_epoch: client.leader_epoch(&tp.topic, tp.partition),
        };
        match topics.iter_mut().find(|t| t.topic == tp.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                topics.push(v1::TopicFetchData { topic: tp.topic.clone(), partitions: vec![p] })
            }
        }
    }
    let req = v1::FetchRequest {
        max_wait_ms: config.max_wait_ms,
        min_bytes: config.min_bytes,
        max_bytes: config.max_bytes,
        decode_records: false,
        topics,
        isolation_level: config.isolation.level() as i32,
        report_aborted: false,
    };
    let deadline = Duration::from_millis(u64::from(config.max_wait_ms) + 30_000);
    let resp = tokio::time::timeout(deadline, client.data(&addr)?.fetch(req))
        .await
        .map_err(|_| ClientError::Timeout)??;
    let mut out = Vec::new();
    for t in resp.into_inner().topics {
        for p in t.partitions {
            let tp = TopicPartition { topic: t.topic.clone(), partition: p.partition };
            if let Some(&(_, pos)) = parts.iter().find(|(x, _)| *x == tp) {
                out.push((tp, pos, p));
            }
        }
    }
    Ok(out)
}

/// The offset `to` names in `tp` (a timestamp after the last record resolves to the end).
pub(crate) async fn resolve(
    client: &Client,
    tp: &TopicPartition,
    to: Seek,
) -> Result<i64, ClientError> {
    use v1::partition_list_offsets::Spec;
    let spec = match to {
        Seek::Offset(o) if o < 0 => {
            return Err(ClientError::InvalidArgument(format!("offset {o} is negative")));
        }
        Seek::Offset(o) => return Ok(o),
        Seek::FromEnd(n) => {
            let end = Box::pin(resolve(client, tp, Seek::Latest)).await?;
            let start = Box::pin(resolve(client, tp, Seek::Earliest)).await?;
            let back = i64::try_from(n).unwrap_or(i64::MAX);
            return Ok(end.saturating_sub(back).max(start));
        }
        Seek::Earliest => Spec::Position(v1::OffsetSpec::Earliest as i32),
        Seek::Latest => Spec::Position(v1::OffsetSpec::Latest as i32),
        Seek::Timestamp(ts) => Spec::TimestampMs(ts),
    };
    let offset = list_offset_retrying(client, tp, spec).await?;
    if offset < 0 {
        let latest = Spec::Position(v1::OffsetSpec::Latest as i32);
        return list_offset_retrying(client, tp, latest).await;
    }
    Ok(offset)
}

/// How long a list-offsets lookup is retried while its leader moves or cannot be reached.
const LIST_OFFSET_WITHIN: Duration = Duration::from_secs(30);

/// Pause before a fetch or lookup is tried again after a retriable failure.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// `list_offset`, retried (with fresh metadata) while the leader moves, a broker restarts or
/// catches up.
async fn list_offset_retrying(
    client: &Client,
    tp: &TopicPartition,
    spec: v1::partition_list_offsets::Spec,
) -> Result<i64, ClientError> {
    let deadline = tokio::time::Instant::now() + LIST_OFFSET_WITHIN;
    loop {
        match list_offset(client, tp, spec).await {
            Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, topic = %tp.topic, partition = tp.partition, "list offsets: retrying");
                let _ = client.metadata(std::slice::from_ref(&tp.topic)).await;
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            other => return other,
        }
    }
}

/// The last stable offset of `tp` (retried like the other lookups).
pub(crate) async fn last_stable(client: &Client, tp: &TopicPartition) -> Result<i64, ClientError> {
    let spec = v1::partition_list_offsets::Spec::Position(v1::OffsetSpec::LastStable as i32);
    list_offset_retrying(client, tp, spec).await
}

async fn list_offset(
    client: &Client,
    tp: &TopicPartition,
    spec: v1::partition_list_offsets::Spec,
) -> Result<i64, ClientError> {
    let addr = client.leader(&tp.topic, tp.partition).await?;
    let req = v1::ListOffsetsRequest {
        topics: vec![v1::TopicListOffsets {
            topic: tp.topic.clone(),
            partitions: vec![v1::PartitionListOffsets {
                partition: tp.partition,
                spec: Some(spec),
            }],
        }],
    };
    let resp = client.data(&addr)?.list_offsets(req).await?.into_inner();
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ClientError::Corrupt("empty list-offsets answer".into()))?;
    if p.error_code != ErrorCode::None as i32 {
        if ErrorCode::try_from(p.error_code).is_ok_and(|c| c == ErrorCode::NotLeader) {
            let _ = client.metadata(std::slice::from_ref(&tp.topic)).await;
        }
        return Err(ClientError::server(p.error_code, &p.error_message));
    }
    Ok(p.offset)
}

/// Decodes raw batches of `tp`, keeping records at or after `position`; every batch is fully
/// validated first. Returns the records and the next position.
pub(crate) fn decode_batches(
    tp: &TopicPartition,
    data: Bytes,
    position: i64,
) -> Result<(Vec<ConsumerRecord>, i64), ClientError> {
    let mut out = Vec::new();
    let mut next = position;
    let corrupt = |e: silt_core::batch::BatchError| {
        ClientError::Corrupt(format!("{}/{}: {e}", tp.topic, tp.partition))
    };
    for batch in BatchIter::new(data) {
        let batch = batch.map_err(corrupt)?;
        let h = verify_crc(&batch, silt_core::batch::MAX_BATCH_LEN_LIMIT).map_err(corrupt)?;
        if h.attributes & silt_core::batch::CONTROL_FLAG != 0 {
            // A transaction marker: not a record for the application, but read past.
            next = next.max(h.next_offset().0 as i64);
            continue;
        }
        // A compacted batch may have lost its last records (or all of them): the position
        // still moves past the batch's whole offset range.
        if h.next_offset().0 as i64 > position {
            next = next.max(h.next_offset().0 as i64);
        }
        for r in RecordIter::new(batch).map_err(corrupt)? {
            let r = r.map_err(corrupt)?;
            let offset = r.offset.0 as i64;
            if offset >= position {
                out.push(ConsumerRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
                next = next.max(offset + 1);
            }
        }
    }
    Ok((out, next))
}

impl Consumer {
    pub(crate) fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            positions: BTreeMap::new(),
            inflight: Vec::new(),
            reset_out_of_range: None,
        }
    }

    /// Replaces the assignment and positions every partition at `start`.
    pub async fn assign(
        &mut self,
        partitions: Vec<TopicPartition>,
        start: Seek,
    ) -> Result<(), ClientError> {
        self.positions.clear();
        for tp in partitions {
            let n = self.client.partition_count(&tp.topic).await?;
            if tp.partition >= n {
                return Err(ClientError::Server {
                    code: ErrorCode::UnknownPartition,
                    message: format!("topic {} has no partition {}", tp.topic, tp.partition),
                });
            }
            self.seek(&tp, start).await?;
        }
        Ok(())
    }

    /// Moves one partition's position.
    pub async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<(), ClientError> {
        self.drop_inflight();
        let offset = resolve(&self.client, tp, to).await?;
        self.positions.insert(tp.clone(), offset);
        Ok(())
    }

    /// Sets a position without asking the broker (group consumers: a committed offset).
    pub(crate) fn set_position(&mut self, tp: TopicPartition, offset: i64) {
        self.drop_inflight();
        self.positions.insert(tp, offset);
    }

    /// Stops reading a partition.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) -> Option<i64> {
        self.drop_inflight();
        self.positions.remove(tp)
    }

    /// The assigned partitions with their positions.
    pub fn positions(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.positions
    }

    /// The next offset to read of an assigned partition.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    fn drop_inflight(&mut self) {
        for f in self.inflight.drain(..) {
            f.handle.abort();
        }
    }

    /// Requests every assigned partition that has no fetch in flight, one request per leader.
    /// A partition whose leader is not known right now (moving, or no broker answered) is left
    /// for the next poll; returns whether any was.
    async fn request_missing(&mut self) -> Result<bool, ClientError> {
        let mut by_leader: HashMap<String, Vec<(TopicPartition, i64)>> = HashMap::new();
        let mut skipped = false;
        for (tp, pos) in &self.positions {
            if self.inflight.iter().any(|f| f.parts.iter().any(|(t, _)| t == tp)) {
                continue;
            }
            match self.client.leader(&tp.topic, tp.partition).await {
                Ok(addr) => by_leader.entry(addr).or_default().push((tp.clone(), *pos)),
                Err(e) if e.is_retriable() => skipped = true,
                Err(e) => return Err(e),
            }
        }
        for (addr, parts) in by_leader {
            let (client, config, asked) = (self.client.clone(), self.config.clone(), parts.clone());
            let handle =
                tokio::spawn(async move { fetch_from(&client, &config, addr, asked).await });
            self.inflight.push(InFlight { parts, handle });
        }
        Ok(skipped)
    }

    /// Waits for the first fetch in flight to answer (each is a long poll bounded by
    /// `max_wait_ms`) and returns its answer; there must be one in flight.
    async fn next_answer(&mut self) -> Result<RawRound, ClientError> {
        let (result, index, _) =
            futures_util::future::select_all(self.inflight.iter_mut().map(|f| &mut f.handle)).await;
        self.inflight.swap_remove(index);
        result.map_err(|e| ClientError::Connect(format!("fetch task: {e}")))?
    }

    /// Learns the current leaders of the assigned topics.
    async fn refresh_metadata(&self) {
        let topics: Vec<String> = self.positions.keys().map(|tp| tp.topic.clone()).collect();
        let _ = self.client.metadata(&topics).await;
    }

    /// Returns the records of the first leader to answer, in offset order per partition. Every
    /// partition without a fetch in flight is requested first, and the partitions just answered
    /// are requested again before this returns (a prefetch from their new positions), so brokers
    /// work while the caller processes; a seek discards what is in flight.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.positions.is_empty() {
            tokio::time::sleep(Duration::from_millis(u64::from(self.config.max_wait_ms))).await;
            return Ok(Vec::new());
        }
        if self.request_missing().await? {
            self.refresh_metadata().await;
        }
        if self.inflight.is_empty() {
            // No leader known for any assigned partition yet: wait a moment, as a long poll.
            tokio::time::sleep(RETRY_BACKOFF).await;
            return Ok(Vec::new());
        }
        let raw = match self.next_answer().await {
            Ok(raw) => raw,
            Err(e) => {
                // A broker that cannot be reached may have lost its leaderships: learn the
                // current leaders before the next poll. Transport failures and a broker that
                // is not ready are not the caller's problem: an empty poll, then a retry.
                self.refresh_metadata().await;
                if e.is_retriable() {
                    tracing::debug!(error = %e, "fetch failed; retrying after a metadata refresh");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    return Ok(Vec::new());
                }
                return Err(e);
            }
        };
        let mut out = Vec::new();
        let mut refresh = false;
        for (tp, pos, p) in raw {
            if self.positions.get(&tp) != Some(&pos) {
                continue; // moved or unassigned since it was requested
            }
            let code = ErrorCode::try_from(p.error_code).unwrap_or(ErrorCode::UnknownServerError);
            match code {
                ErrorCode::None => {
                    let (records, next) = decode_batches(&tp, p.record_batches, pos)?;
                    // Batches the broker read and left out (read_committed) are passed too.
                    let next = next.max(p.next_fetch_offset);
                    if let Some(at) = self.positions.get_mut(&tp) {
                        *at = next;
                    }
                    out.extend(records);
                }
                c if c.is_retriable() => refresh = true,
                // The replica found its log damaged (or offline): it hands leadership to another
                // in-sync copy, so look the leader up again and retry (Kafka's consumer does
                // the same with KAFKA_STORAGE_ERROR). Not retriable in general: a produce that
                // met it may or may not have been stored.
                ErrorCode::StorageError => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, offset = pos, error = %p.error_message, "the replica cannot serve this range; retrying after a metadata refresh");
                    refresh = true;
                }
                ErrorCode::OffsetOutOfRange if self.reset_out_of_range.is_some() => {
                    let to = self.reset_out_of_range.unwrap_or(Seek::Earliest);
                    let offset = resolve(&self.client, &tp, to).await?;
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, from = pos, to = offset, "position out of range; reset");
                    self.positions.insert(tp, offset);
                    refresh = true;
                }
                _ => return Err(ClientError::server(p.error_code, &p.error_message)),
            }
        }
        if refresh {
            self.refresh_metadata().await;
        } else {
            self.request_missing().await?;
        }
        Ok(out)
    }

    /// The records as a stream (each poll's records in order); ends at the first error.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<ConsumerRecord, ClientError>> {
        records_stream(self)
    }
}

/// A consumer whose polls can become a stream of records.
pub(crate) trait Polls: Sized + Send {
    fn poll_records(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Vec<ConsumerRecord>, ClientError>> + Send;
}

impl Polls for Consumer {
    fn poll_records(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Vec<ConsumerRecord>, ClientError>> + Send {
        self.poll()
    }
}

/// The records of successive polls, one by one; ends after the first error.
pub(crate) fn records_stream<C: Polls>(
    consumer: C,
) -> impl futures_util::Stream<Item = Result<ConsumerRecord, ClientError>> {
    futures_util::stream::unfold(
        (consumer, std::collections::VecDeque::new(), false),
        |(mut c, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(r) = buf.pop_front() {
                    return Some((Ok(r), (c, buf, false)));
                }
                match c.poll_records().await {
                    Ok(records) => buf.extend(records),
                    Err(e) => return Some((Err(e), (c, buf, true))),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use silt_core::batch::{BatchBuilder, CRC_POS, Record, patch_base_offset_and_epoch};
    use silt_core::{LeaderEpoch, Offset};

    use super::*;

    fn stored(base: u64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(&Record::value(format!("v{}", base + i as u64), 1));
        }
        let mut v = b.build_vec().unwrap();
        patch_base_offset_and_epoch(&mut v, Offset(base), LeaderEpoch(0));
        v
    }

    #[test]
    fn decoding_skips_records_before_the_position_and_advances_it() {
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        let mut data = stored(10, 5);
        data.extend(stored(15, 2));
        let (records, next) = decode_batches(&tp, Bytes::from(data), 12).unwrap();
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [12, 13, 14, 15, 16]);
        assert_eq!(records[0].value.as_deref(), Some(&b"v12"[..]));
        assert_eq!(next, 17);
        let (none, same) = decode_batches(&tp, Bytes::new(), 17).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, 17);
    }

    #[test]
    fn a_corrupted_batch_is_an_error_not_data() {
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        let mut data = stored(0, 3);
        data[CRC_POS + 1] ^= 1;
        assert!(matches!(decode_batches(&tp, Bytes::from(data), 0), Err(ClientError::Corrupt(_))));
    }
}
