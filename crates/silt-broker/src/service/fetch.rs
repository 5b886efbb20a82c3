//! `Fetch` (long poll over the partitions' high-watermark watches) and `ListOffsets`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use silt_core::Offset;
use silt_core::batch::{BatchHeader, BatchIter, CONTROL_FLAG, RecordIter, TRANSACTIONAL_FLAG};
use silt_core::stable::AbortedTxn;
use silt_proto::decoded_to_fetched;
use silt_proto::v1::{self, ErrorCode};

use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use crate::partition::PartitionHandle;
use crate::partition::long_poll::long_poll;
use silt_raft::AclOperation;

/// Room kept in a fetch response for everything but record bytes.
const RESPONSE_OVERHEAD_BYTES: usize = 64 * 1024;

/// One requested partition, resolved.
struct Wanted {
    topic_index: usize,
    partition: u32,
    fetch_offset: i64,
    max_bytes: usize,
    handle: Result<PartitionHandle, WireError>,
}

/// How a fetch treats transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// Everything below the high watermark.
    Uncommitted,
    /// Below the last stable offset; aborted batches and markers left out.
    Committed,
    /// Below the last stable offset, everything returned with the aborted list (Kafka).
    CommittedReported,
}

pub(crate) async fn fetch(
    shared: &Shared,
    access: &Access,
    req: v1::FetchRequest,
) -> v1::FetchResponse {
    let limit = shared.config.max_response_bytes.saturating_sub(RESPONSE_OVERHEAD_BYTES);
    let max_bytes = if req.max_bytes == 0 { limit } else { (req.max_bytes as usize).min(limit) };
    let wait =
        Duration::from_millis(u64::from(req.max_wait_ms).min(shared.config.max_fetch_wait_ms));
    let deadline = Instant::now() + wait;
    let isolation = match (v1::IsolationLevel::try_from(req.isolation_level), req.report_aborted) {
        // Decoded records carry no producer id to skip by: the broker leaves them out.
        (Ok(v1::IsolationLevel::ReadCommitted), true) if !req.decode_records => {
            Isolation::CommittedReported
        }
        (Ok(v1::IsolationLevel::ReadCommitted), _) => Isolation::Committed,
        _ => Isolation::Uncommitted,
    };
    let mode = (isolation, req.decode_records);
    let mut topics: Vec<v1::TopicFetchResponse> = Vec::new();
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let allowed = access.topic(shared, AclOperation::Read, &t.topic);
        for p in t.partitions {
            let handle = allowed
                .clone()
                .and_then(|()| shared.leader_handle(&t.topic, p.partition))
                .and_then(|h| {
                    check_leader_epoch(shared, &t.topic, p.partition, p.current_leader_epoch)?;
                    Ok(h)
                });
            let pmax = if p.partition_max_bytes == 0 {
                max_bytes
            } else {
                (p.partition_max_bytes as usize).min(max_bytes)
            };
            wanted.push(Wanted {
                topic_index: ti,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: pmax,
                handle,
            });
        }
        topics.push(v1::TopicFetchResponse { topic: t.topic, partitions: Vec::new() });
    }
    let handles = wanted.iter().filter_map(|w| w.handle.as_ref().ok());
    let wanted = &wanted;
    let results = long_poll(handles, deadline, &shared.stopping, || async move {
        let results = if wanted.iter().map(|w| w.max_bytes).sum::<usize>() <= max_bytes {
            // The response limit cannot bind: read every partition at once (each worker thread
            // checks its own CRCs in parallel).
            join_all(wanted.iter().map(|w| read_partition(w, max_bytes, true, mode))).await
        } else {
            let mut results = Vec::with_capacity(wanted.len());
            let mut total = 0usize;
            for w in wanted {
                let budget = max_bytes.saturating_sub(total);
                let r = read_partition(w, budget, total == 0, mode).await;
                total += r.as_ref().map_or(0, |(_, bytes)| *bytes);
                results.push(r);
            }
            results
        };
        let total: usize = results.iter().map(|r| r.as_ref().map_or(0, |(_, bytes)| *bytes)).sum();
        let ready = total >= req.min_bytes as usize || results.iter().any(Result::is_err);
        (results, ready)
    })
    .await;
    for (w, r) in wanted.iter().zip(results) {
        topics[w.topic_index].partitions.push(match r {
            Ok((resp, _)) => resp,
            Err(e) => error_response(w.partition, e),
        });
    }
    v1::FetchResponse { topics }
}

/// A consumer's `current_leader_epoch` against this leader's: older means the consumer's
/// metadata is stale (FENCED_LEADER_EPOCH: refresh), newer that this broker lags
/// (UNKNOWN_LEADER_EPOCH: retry). Not sent: not checked.
fn check_leader_epoch(
    shared: &Shared,
    topic: &str,
    partition: u32,
    current_leader_epoch: Option<u32>,
) -> Result<(), WireError> {
    let Some(asked) = current_leader_epoch else { return Ok(()) };
    let image = shared.cluster.image();
    let Ok(p) = crate::cluster::partition_image(&image, topic, partition) else { return Ok(()) };
    match asked.cmp(&p.leader_epoch) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(WireError::new(
            ErrorCode::FencedLeaderEpoch,
            format!("{topic}/{partition}: leader epoch {asked} is older than {}", p.leader_epoch),
        )),
        std::cmp::Ordering::Greater => Err(WireError::new(
            ErrorCode::UnknownLeaderEpoch,
            format!("{topic}/{partition}: leader epoch {asked} is newer than {}", p.leader_epoch),
        )),
    }
}

/// Reads one partition; returns the response item and the record bytes it carries. `budget` is
/// what is left of the response; the first partition with data always gets at least one batch.
async fn read_partition(
    w: &Wanted,
    budget: usize,
    first: bool,
    (isolation, decode): (Isolation, bool),
) -> Result<(v1::PartitionFetchResponse, usize), WireError> {
    let handle = w.handle.as_ref().map_err(Clone::clone)?;
    let state = handle.state();
    if w.fetch_offset < 0 {
        return Err(WireError::new(
            ErrorCode::OffsetOutOfRange,
            format!("fetch offset {} is negative", w.fetch_offset),
        ));
    }
    let from = Offset(w.fetch_offset as u64);
    let max = w.max_bytes.min(budget);
    let mut last_stable = state.last_stable.unwrap_or(state.high_watermark);
    let mut aborted = Vec::new();
    let (data, next) = if max == 0 && !first {
        (Bytes::new(), 0)
    } else if isolation == Isolation::Uncommitted {
        let r = handle.read(from, max.max(1)).await?;
        if !first && r.data.len() > max { (Bytes::new(), 0) } else { (r.data, r.next_offset.0) }
    } else {
        let c = handle.read_committed(from, max.max(1)).await?;
        last_stable = c.last_stable;
        if !first && c.read.data.len() > max {
            (Bytes::new(), 0)
        } else if isolation == Isolation::CommittedReported {
            aborted = c.aborted;
            (c.read.data, c.read.next_offset.0)
        } else {
            (committed_only(c.read.data, &c.aborted)?, c.read.next_offset.0)
        }
    };
    let bytes = data.len();
    let mut resp = v1::PartitionFetchResponse {
        partition: w.partition,
        error_code: ErrorCode::None as i32,
        error_message: String::new(),
        high_watermark: state.high_watermark.0 as i64,
        log_start_offset: state.log_start.0 as i64,
        last_stable_offset: last_stable.0 as i64,
        record_batches: Bytes::new(),
        records: Vec::new(),
        leader: None,
        aborted_transactions: aborted
            .iter()
            .map(|a| v1::AbortedTransaction {
                producer_id: a.producer_id,
                first_offset: a.first_offset as i64,
            })
            .collect(),
        next_fetch_offset: next as i64,
    };
    if decode {
        resp.records = decode_from(data, from)?;
    } else {
        resp.record_batches = data;
    }
    Ok((resp, bytes))
}

fn unreadable(e: silt_core::batch::BatchError) -> WireError {
    WireError::new(ErrorCode::StorageError, format!("stored batch unreadable: {e}"))
}

/// The batches of `data` a `read_committed` consumer sees: without transaction markers and
/// without the batches of the `aborted` transactions (a transactional batch lies inside its
/// producer's span, from the span's first offset to its abort marker). Untouched (no copy)
/// when there is nothing to leave out.
fn committed_only(data: Bytes, aborted: &[AbortedTxn]) -> Result<Bytes, WireError> {
    let hidden = |h: &BatchHeader| {
        h.attributes & CONTROL_FLAG != 0
            || (h.attributes & TRANSACTIONAL_FLAG != 0
                && aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && a.first_offset <= h.base_offset.0
                        && h.base_offset.0 < a.last_offset
                }))
    };
    let mut batches = Vec::new();
    let mut any_hidden = false;
    for b in BatchIter::new(data.clone()) {
        let b = b.map_err(unreadable)?;
        let h = BatchHeader::parse(&b).ok_or_else(|| {
            WireError::new(ErrorCode::StorageError, "stored batch header unreadable")
        })?;
        if hidden(&h) {
            any_hidden = true;
        } else {
            batches.push(b);
        }
    }
    if !any_hidden {
        return Ok(data);
    }
    let mut out = Vec::with_capacity(batches.iter().map(Bytes::len).sum());
    for b in batches {
        out.extend_from_slice(&b);
    }
    Ok(Bytes::from(out))
}

/// Decodes stored batches into records at or after `from` (transaction markers are not
/// records for the application: left out).
fn decode_from(data: Bytes, from: Offset) -> Result<Vec<v1::FetchedRecord>, WireError> {
    let corrupt = unreadable;
    let mut out = Vec::new();
    for b in BatchIter::new(data) {
        let b = b.map_err(corrupt)?;
        if BatchHeader::parse(&b).is_some_and(|h| h.attributes & CONTROL_FLAG != 0) {
            continue;
        }
        for r in RecordIter::new(b).map_err(corrupt)? {
            let r = r.map_err(corrupt)?;
            if r.offset >= from {
                out.push(decoded_to_fetched(r));
            }
        }
    }
    Ok(out)
}

fn error_response(partition: u32, e: WireError) -> v1::PartitionFetchResponse {
    v1::PartitionFetchResponse {
        partition,
        error_code: e.code as i32,
        error_message: e.message,
        high_watermark: -1,
        log_start_offset: -1,
        last_stable_offset: -1,
        record_batches: Bytes::new(),
        records: Vec::new(),
        leader: e.leader,
        aborted_transactions: Vec::new(),
        next_fetch_offset: 0,
    }
}

pub(crate) async fn list_offsets(
    shared: &Shared,
    access: &Access,
    req: v1::ListOffsetsRequest,
) -> v1::ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    let serving = shared.serving();
    for t in req.topics {
        let allowed = access.topic(shared, AclOperation::Describe, &t.topic);
        let known = serving.is_ok() && shared.topic_config(&t.topic).is_some();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = if let Err(e) = &allowed {
                Err(e.clone())
            } else if known {
                list_partition(shared, &t.topic, &p).await
            } else {
                Err(shared.missing_topic(&t.topic, p.partition))
            };
            parts.push(match r {
                Ok((offset, timestamp_ms)) => v1::PartitionListOffsetsResponse {
                    partition: p.partition,
                    error_code: ErrorCode::None as i32,
                    error_message: String::new(),
                    offset,
                    timestamp_ms,
                    leader: None,
                },
                Err(e) => v1::PartitionListOffsetsResponse {
                    partition: p.partition,
                    error_code: e.code as i32,
                    error_message: e.message,
                    offset: -1,
                    timestamp_ms: -1,
                    leader: e.leader,
                },
            });
        }
        topics.push(v1::TopicListOffsetsResponse { topic: t.topic, partitions: parts });
    }
    v1::ListOffsetsResponse { topics }
}

async fn list_partition(
    shared: &Shared,
    topic: &str,
    p: &v1::PartitionListOffsets,
) -> Result<(i64, i64), WireError> {
    use v1::partition_list_offsets::Spec;
    let handle = shared.leader_handle(topic, p.partition)?;
    let state = handle.state();
    match p.spec {
        Some(Spec::Position(pos)) => match v1::OffsetSpec::try_from(pos) {
            Ok(v1::OffsetSpec::Earliest) => Ok((state.log_start.0 as i64, -1)),
            Ok(v1::OffsetSpec::Latest) => Ok((state.high_watermark.0 as i64, -1)),
            Ok(v1::OffsetSpec::LastStable) => {
                let lso = match state.last_stable {
                    Some(lso) => lso,
                    // Not known yet: a read_committed read of nothing builds it.
                    None => handle.read_committed(state.high_watermark, 1).await?.last_stable,
                };
                Ok((lso.0 as i64, -1))
            }
            _ => Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("unknown offset position {pos}"),
            )),
        },
        Some(Spec::TimestampMs(ts)) => Ok(match handle.offset_for_timestamp(ts).await? {
            Some((offset, ts)) => (offset.0 as i64, ts),
            None => (-1, -1),
        }),
        None => Err(WireError::new(ErrorCode::InvalidRequest, "no offset spec")),
    }
}
