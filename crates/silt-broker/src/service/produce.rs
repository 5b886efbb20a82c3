//! `Produce`: check and encode each partition's data, append it through the partition worker,
//! and answer per `acks`. Every batch of a partition is checked before any is appended, so a bad
//! request changes nothing.

use bytes::Bytes;
use futures_util::future::join_all;
use silt_core::batch::{
    BatchBuilder, BatchHeader, BatchIter, CONTROL_FLAG, Compression, HEADER_LEN,
    TRANSACTIONAL_FLAG, for_each_record_in, recompress, validate_produced,
};
use silt_proto::record_from_proto;
use silt_proto::v1::{self, ErrorCode, partition_produce_data::Data};
use silt_raft::AclOperation;

use super::now_ms;
use super::produce_budget::{Held, Reservation};
use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use crate::partition::WaitFor;
use crate::topic_config::{Durability, TopicConfig};

/// The longest a client may ask an `acks=all` produce to wait.
const MAX_PRODUCE_TIMEOUT_MS: u64 = 300_000;

/// `budget`: the request's reservation from the produce budget (see `produce_budget`); each
/// partition takes its share to the partition worker, the rest is given back on return.
pub(crate) async fn produce(
    shared: &Shared,
    access: &Access,
    req: v1::ProduceRequest,
    budget: Reservation,
) -> v1::ProduceResponse {
    // Never "unknown topic" (or an acknowledgement) from an image older than this broker's
    // registration.
    if let Err(e) = shared.serving() {
        return reject_all(req, e);
    }
    let acks = match v1::Acks::try_from(req.acks) {
        Ok(v1::Acks::None) => v1::Acks::None,
        Ok(v1::Acks::Leader) => v1::Acks::Leader,
        Ok(v1::Acks::All) | Ok(v1::Acks::Unspecified) => v1::Acks::All,
        Err(_) => {
            let e = WireError::new(
                ErrorCode::InvalidRequest,
                format!("unknown acks value {}", req.acks),
            );
            return reject_all(req, e);
        }
    };
    let timeout_ms = if req.timeout_ms == 0 {
        shared.config.request_timeout_ms
    } else {
        u64::from(req.timeout_ms)
    };
    let timeout = std::time::Duration::from_millis(timeout_ms.min(MAX_PRODUCE_TIMEOUT_MS));
    let txn_id = req.transactional_id.clone();
    if let Some(id) = &txn_id
        && let Err(e) = access.transactional_id(shared, AclOperation::Write, id)
    {
        return reject_all(req, e);
    }
    let txn_id = txn_id.as_deref();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        // Authorization before existence: a refused principal learns nothing about the topic.
        let allowed = access.topic_write(shared, &t.topic);
        let config = shared.topic_config(&t.topic);
        let parts = join_all(t.partitions.into_iter().map(|p| {
            let (config, allowed) = (config.clone(), allowed.clone());
            let topic = t.topic.as_str();
            let held = budget.split(data_bytes(&p));
            async move {
                let partition = p.partition;
                let outcome = match (allowed, config) {
                    (Err(e), _) => Err(e),
                    (Ok(()), None) => Err(shared.missing_topic(topic, partition)),
                    (Ok(()), Some(config)) => {
                        let how = How { acks, timeout, txn_id };
                        produce_partition(shared, topic, p, &config, how, held).await
                    }
                };
                partition_response(partition, outcome)
            }
        }))
        .await;
        topics.push(v1::TopicProduceResponse { topic: t.topic, partitions: parts });
    }
    v1::ProduceResponse { topics }
}

/// What a successful partition produce reports.
struct Produced {
    base_offset: i64,
    log_start: i64,
    durability: v1::DurabilityLevel,
}

/// How a request's partitions are produced.
#[derive(Debug, Clone, Copy)]
struct How<'a> {
    acks: v1::Acks,
    timeout: std::time::Duration,
    /// The producer's transactional id (with transactional batches).
    txn_id: Option<&'a str>,
}

async fn produce_partition(
    shared: &Shared,
    topic: &str,
    p: v1::PartitionProduceData,
    config: &TopicConfig,
    How { acks, timeout, txn_id }: How<'_>,
    held: Option<Held>,
) -> Result<Produced, WireError> {
    let handle = shared.leader_handle(topic, p.partition)?;
    let batches = match p.data {
        Some(Data::RecordBatches(bytes)) => {
            split_batches(bytes, config, shared.config.max_decompressed_batch_bytes)?
        }
        Some(Data::Records(list)) => vec![encode_records(list, config)?],
        None => return Err(WireError::new(ErrorCode::InvalidRequest, "partition data is empty")),
    };
    if let Some((producer_id, epoch)) = transactional(&batches)? {
        let id = txn_id.ok_or_else(|| {
            WireError::new(
                ErrorCode::InvalidRequest,
                "transactional batches need the producer's transactional_id",
            )
        })?;
        let tp = (topic.to_string(), p.partition);
        crate::txn::markers::verify(shared, id, producer_id, epoch, &tp).await?;
    }
    let isr = shared.isr_size(topic, p.partition) as u32;
    if acks == v1::Acks::All && isr < config.min_insync_replicas {
        return Err(WireError::new(
            ErrorCode::NotEnoughReplicas,
            format!(
                "ISR has {isr} member(s), min.insync.replicas is {}; nothing was appended",
                config.min_insync_replicas
            ),
        ));
    }
    if acks == v1::Acks::None {
        let state = handle.state();
        // Answered once queued: the budget (held until appended) and the queue's depth are the
        // backpressure, so a flood waits on the client rather than in the broker.
        match tokio::time::timeout(timeout, handle.append_unanswered(batches, held)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(WireError::new(
                    ErrorCode::RequestTimedOut,
                    "timed out waiting for room in the partition's queue; nothing was appended",
                ));
            }
        }
        return Ok(Produced {
            base_offset: -1,
            log_start: state.log_start.0 as i64,
            durability: v1::DurabilityLevel::None,
        });
    }
    let wait = if acks == v1::Acks::All { WaitFor::Commit } else { WaitFor::Append };
    let appended = tokio::time::timeout(timeout, handle.append_held(batches, wait, held))
        .await
        .map_err(|_| {
        WireError::new(
            ErrorCode::RequestTimedOut,
            "timed out waiting for the append; outcome unknown",
        )
    })??;
    #[cfg(feature = "fault-injection")]
    crash_before_answer(shared, topic, p.partition);
    let durability = match (appended.synced, config.durability, acks) {
        (true, _, _) => v1::DurabilityLevel::ReplicatedDisk,
        (false, Durability::Replicated, v1::Acks::All) => v1::DurabilityLevel::ReplicatedMemory,
        (false, _, _) => v1::DurabilityLevel::LeaderMemory,
    };
    Ok(Produced {
        base_offset: appended.base_offset.0 as i64,
        log_start: appended.log_start.0 as i64,
        durability,
    })
}

/// With the `fault-injection` feature (fault tests only): a file of this name in a partition
/// directory makes the broker abort once a produce to that partition is appended (and, with
/// acks=all, committed), before the producer gets the answer.
#[cfg(feature = "fault-injection")]
pub const CRASH_BEFORE_ANSWER_FILE: &str = "CRASH_BEFORE_ANSWER";

#[cfg(feature = "fault-injection")]
fn crash_before_answer(shared: &Shared, topic: &str, partition: u32) {
    let dir = crate::replica_manager::partition_dir(&shared.config.data_dir, topic, partition);
    if dir.join(CRASH_BEFORE_ANSWER_FILE).exists() {
        eprintln!(
            "fault injection: aborting after the append to {topic}-{partition}, before answering"
        );
        std::process::abort();
    }
}

/// The bytes of a partition's data as received (its share of the request's budget).
pub(crate) fn data_bytes(p: &v1::PartitionProduceData) -> usize {
    match &p.data {
        Some(Data::RecordBatches(b)) => b.len(),
        Some(Data::Records(list)) => list.records.iter().map(record_bytes).sum(),
        None => 0,
    }
}

fn record_bytes(r: &v1::Record) -> usize {
    let field = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len());
    let headers: usize = r.headers.iter().map(|h| h.key.len() + field(&h.value)).sum();
    field(&r.key) + field(&r.value) + headers
}

/// Splits pre-encoded data into batches, checking each fully (a compressed batch's records are
/// decompressed, within `max_decompressed`); any bad batch fails the partition. A topic whose
/// `compression.type` names a codec gets every batch in that codec (recompressed if it came in
/// another, as Kafka does).
fn split_batches(
    bytes: Bytes,
    config: &TopicConfig,
    max_decompressed: usize,
) -> Result<Vec<Vec<u8>>, WireError> {
    let max_message_bytes = config.max_message_bytes;
    if bytes.is_empty() {
        return Err(WireError::new(ErrorCode::InvalidRequest, "record_batches is empty"));
    }
    let mut out = Vec::new();
    for b in BatchIter::new(bytes) {
        let b = b.map_err(|e| WireError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        if b.len() > max_message_bytes {
            return Err(too_large(b.len(), max_message_bytes));
        }
        let (h, plain) = validate_produced(&b, max_message_bytes, max_decompressed)
            .map_err(|e| WireError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        if config.cleanup_compact && h.attributes & CONTROL_FLAG == 0 {
            let mut keyless = false;
            let (records, start) = plain.as_deref().map_or((&b[..], HEADER_LEN), |p| (p, 0));
            for_each_record_in(&h, records, start, |r| keyless |= r.key.is_none())
                .map_err(|e| WireError::new(ErrorCode::CorruptMessage, e.to_string()))?;
            if keyless {
                return Err(keyless_refused());
            }
        }
        let recompressed = match config.broker_compression() {
            Some((codec, level)) if h.attributes & CONTROL_FLAG == 0 && h.codec() != Ok(codec) => {
                let records = plain.as_deref().unwrap_or(&b[HEADER_LEN..]);
                let batch = recompress(&b, records, codec, level);
                if batch.len() > max_message_bytes {
                    return Err(too_large(batch.len(), max_message_bytes));
                }
                Some(batch)
            }
            _ => None,
        };
        if h.attributes & CONTROL_FLAG != 0 {
            // Only brokers write control batches (transaction markers).
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "control batches are written by brokers only",
            ));
        }
        if h.producer_id >= 0 && h.base_sequence < 0 {
            // Sequence-less batches of a producer are the group coordinator's own
            // (transactional offset commits); a client's must be numbered.
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "a batch with a producer id needs a base sequence of 0 or more",
            ));
        }
        out.push(recompressed.unwrap_or_else(|| b.to_vec()));
    }
    Ok(out)
}

/// The producer id and epoch of a partition's transactional batches (`None`: none is); a
/// partition's data is all transactional, of one producer and epoch, or not at all.
fn transactional(batches: &[Vec<u8>]) -> Result<Option<(i64, i16)>, WireError> {
    let mut found: Option<(i64, i16)> = None;
    let mut plain = false;
    for b in batches {
        let Some(h) = BatchHeader::parse(b) else { continue };
        if h.attributes & TRANSACTIONAL_FLAG == 0 {
            plain = true;
            continue;
        }
        let this = (h.producer_id, h.producer_epoch);
        if h.producer_id < 0 || found.is_some_and(|f| f != this) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "a partition's transactional batches carry one producer id and epoch",
            ));
        }
        found = Some(this);
    }
    if found.is_some() && plain {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            "transactional and non-transactional batches mixed in one partition's data",
        ));
    }
    Ok(found)
}

fn too_large(size: usize, max: usize) -> WireError {
    WireError::new(
        ErrorCode::MessageTooLarge,
        format!("batch of {size} bytes exceeds max.message.bytes = {max}"),
    )
}

/// Encodes plain records into one batch, compressed as the topic's `compression.type` says or,
/// for `producer`, as the request asks.
fn encode_records(list: v1::RecordList, config: &TopicConfig) -> Result<Vec<u8>, WireError> {
    let max_message_bytes = config.max_message_bytes;
    let now = now_ms();
    let mut builder = BatchBuilder::new();
    let (codec, level) = match config.broker_compression() {
        Some(c) => c,
        None => (codec_from_proto(list.compression)?, None),
    };
    for r in list.records {
        let r = record_from_proto(r, now)
            .map_err(|e| WireError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        if config.cleanup_compact && r.key.is_none() {
            return Err(keyless_refused());
        }
        let size = builder.size_with(&r);
        if size > max_message_bytes && codec == Compression::None {
            return Err(too_large(size, max_message_bytes));
        }
        if size > max_message_bytes.saturating_mul(16) {
            // Compressed, the batch may still fit; uncompressed, it is kept within a bound.
            return Err(too_large(size, max_message_bytes));
        }
        builder.push(&r);
    }
    builder.set_compression(codec, level);
    let batch = builder
        .build_vec()
        .ok_or_else(|| WireError::new(ErrorCode::InvalidRequest, "no records"))?;
    if batch.len() > max_message_bytes {
        return Err(too_large(batch.len(), max_message_bytes));
    }
    Ok(batch)
}

/// A record without a key for a compacted topic (Kafka refuses it the same way).
fn keyless_refused() -> WireError {
    WireError::new(ErrorCode::CorruptMessage, "a compacted topic takes only records with a key")
}

/// The codec a plain-record request asks for.
fn codec_from_proto(value: i32) -> Result<Compression, WireError> {
    u16::try_from(value).ok().and_then(Compression::from_id).ok_or_else(|| {
        WireError::new(ErrorCode::InvalidRequest, format!("unknown compression {value}"))
    })
}

fn partition_response(
    partition: u32,
    outcome: Result<Produced, WireError>,
) -> v1::PartitionProduceResponse {
    match outcome {
        Ok(p) => v1::PartitionProduceResponse {
            partition,
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            base_offset: p.base_offset,
            log_append_time_ms: if p.base_offset >= 0 { now_ms() } else { -1 },
            log_start_offset: p.log_start,
            durability: p.durability as i32,
            leader: None,
        },
        Err(e) => v1::PartitionProduceResponse {
            partition,
            error_code: e.code as i32,
            error_message: e.message,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            durability: v1::DurabilityLevel::Unspecified as i32,
            leader: e.leader,
        },
    }
}

fn reject_all(req: v1::ProduceRequest, e: WireError) -> v1::ProduceResponse {
    v1::ProduceResponse {
        topics: req
            .topics
            .into_iter()
            .map(|t| v1::TopicProduceResponse {
                topic: t.topic,
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| partition_response(p.partition, Err(e.clone())))
                    .collect(),
            })
            .collect(),
    }
}
