//! Handing records out and taking acknowledgements back, under the slot lock: reads the
//! partitions through their leaders ([`peer`]), changes share-partition states, dead-letters
//! what is archived, and persists before answering.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use silt_core::batch::{
    BatchBuilder, BatchHeader, BatchIter, CONTROL_FLAG, Header, Record, RecordIter,
};
use silt_proto::v1::{self, ErrorCode};

use super::coordinator::{Coordinated, limits};
use super::group::{Reset, Tp};
use super::peer;
use super::state::{AckType, Archived, SharePartition};
use crate::broker::Shared;
use crate::error::WireError;
use crate::service::metadata::view;

/// Most reads one fetch makes per partition when looking for records to redeliver.
const MAX_READS: usize = 16;
/// Widest acknowledgement range (records) one batch may name.
pub(crate) const MAX_ACK_RANGE: u64 = 100_000;

/// One acknowledgement batch of a request, checked.
#[derive(Debug, Clone)]
pub(crate) struct AckBatch {
    pub tp: Tp,
    pub first: u64,
    pub last: u64,
    pub ack: AckType,
}

fn corrupt(tp: &Tp, e: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::CorruptMessage, format!("{}/{}: {e}", tp.0, tp.1))
}

/// Bytes one read asks for: enough for a fetch's records, small enough that a fetch does not
/// decode far more than it hands out (a larger first batch is still returned whole).
const READ_BYTES: usize = 1024 * 1024;

/// Decodes the records of `data` in `from..until` (control batches hold none), at most `limit`;
/// returns them with their stored sizes, and whether every batch of `data` was looked at.
fn decode(
    tp: &Tp,
    data: Bytes,
    from: u64,
    until: u64,
    limit: usize,
) -> Result<(Vec<(v1::FetchedRecord, usize)>, bool), WireError> {
    let mut out = Vec::new();
    for b in BatchIter::new(data) {
        let b = b.map_err(|e| corrupt(tp, e))?;
        let Some(h) = BatchHeader::parse(&b) else { continue };
        if h.attributes & CONTROL_FLAG != 0 || h.last_offset().0 < from {
            continue;
        }
        if out.len() >= limit || h.base_offset.0 >= until {
            return Ok((out, false));
        }
        for r in RecordIter::new(b).map_err(|e| corrupt(tp, e))? {
            let r = r.map_err(|e| corrupt(tp, e))?;
            if r.offset.0 < from {
                continue;
            }
            if out.len() >= limit || r.offset.0 >= until {
                return Ok((out, false));
            }
            let size = r.key.as_ref().map_or(0, Bytes::len)
                + r.value.as_ref().map_or(0, Bytes::len)
                + r.headers
                    .iter()
                    .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                    .sum::<usize>()
                + 16;
            out.push((silt_proto::decoded_to_fetched(r), size));
        }
    }
    Ok((out, true))
}

/// The stored records at `wanted` offsets of `tp` (those the log still holds), with the log
/// start and how far the reads went (an offset below that and not found is not in the log).
async fn read_offsets(
    shared: &Shared,
    tp: &Tp,
    wanted: &BTreeSet<u64>,
    max_bytes: u32,
) -> Result<(BTreeMap<u64, v1::FetchedRecord>, u64, u64), WireError> {
    let mut found = BTreeMap::new();
    let (Some(&first), Some(&last)) = (wanted.first(), wanted.last()) else {
        return Ok((found, 0, 0));
    };
    let mut pos = first;
    let mut log_start = 0;
    for _ in 0..MAX_READS {
        let r = peer::read(shared, &tp.0, tp.1, pos, max_bytes).await?;
        log_start = r.log_start;
        if pos < r.log_start {
            pos = r.log_start;
            continue;
        }
        if r.data.is_empty() || r.next_offset <= pos {
            break;
        }
        let (records, _) = decode(tp, r.data, pos, last + 1, usize::MAX)?;
        for (rec, _) in records {
            let o = rec.offset as u64;
            if wanted.contains(&o) {
                found.insert(o, rec);
            }
        }
        pos = r.next_offset;
        if pos > last {
            break;
        }
    }
    Ok((found, log_start, pos))
}

/// What a request changed: each partition named with its outcome, and the share-partitions to
/// persist before answering.
pub(crate) type Acked = (Vec<(Tp, Result<(), WireError>)>, Vec<Tp>);

/// Applies `acks` of `member`: per partition, all or nothing (INVALID_RECORD_STATE when one
/// offset is not held by the member), and dead-letters what is archived. The caller persists
/// the changed share-partitions before answering.
pub(crate) async fn acknowledge(
    shared: &Shared,
    c: &mut Coordinated,
    group: &str,
    member: &str,
    acks: Vec<AckBatch>,
) -> Result<Acked, WireError> {
    if acks.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let now = shared.share.now_ms();
    let limits = limits(shared);
    let mut by_tp: BTreeMap<Tp, Vec<AckBatch>> = BTreeMap::new();
    for a in acks {
        by_tp.entry(a.tp.clone()).or_default().push(a);
    }
    let g = c.slot.groups.entry(group.to_string()).or_default();
    let mut results = Vec::new();
    let mut changed = Vec::new();
    let mut archived = Vec::new();
    for (tp, batches) in by_tp {
        let Some(sp) = g.partitions.get(&tp) else {
            let e = WireError::new(
                ErrorCode::InvalidRecordState,
                format!("no record of {}/{} was delivered to this group", tp.0, tp.1),
            );
            results.push((tp, Err(e)));
            continue;
        };
        let mut next = sp.clone();
        let mut these = Vec::new();
        let outcome = batches.iter().try_for_each(|b| {
            for o in b.first..=b.last {
                these.extend(next.acknowledge(o, member, b.ack, now, &limits)?);
            }
            Ok::<(), super::state::AckError>(())
        });
        match outcome {
            Ok(()) => {
                g.partitions.insert(tp.clone(), next);
                archived.extend(these.into_iter().map(|a| (tp.clone(), a)));
                changed.push(tp.clone());
                results.push((tp, Ok(())));
            }
            Err(e) => results
                .push((tp, Err(WireError::new(ErrorCode::InvalidRecordState, e.to_string())))),
        }
    }
    archive(shared, c, group, &archived).await?;
    Ok((results, changed))
}

/// Counts `archived` and writes those of topics with a `share.dead.letter.topic` there
/// (acks=all) with where they came from in headers. Fails (and marks the slot for a reload,
/// undoing the archiving in memory) when a dead letter cannot be written: a record is never
/// archived without its dead letter.
pub(crate) async fn archive(
    shared: &Shared,
    c: &mut Coordinated,
    group: &str,
    archived: &[(Tp, Archived)],
) -> Result<(), WireError> {
    if archived.is_empty() {
        return Ok(());
    }
    let mut by_tp: BTreeMap<&Tp, Vec<&Archived>> = BTreeMap::new();
    for (tp, a) in archived {
        by_tp.entry(tp).or_default().push(a);
    }
    let mut written = 0u64;
    for (tp, list) in by_tp {
        let Some(dlq) = shared.topic_config(&tp.0).and_then(|c| c.share_dead_letter_topic) else {
            continue;
        };
        if let Err(e) = dead_letter(shared, group, tp, &dlq, &list).await {
            c.slot.loaded = None;
            return Err(e);
        }
        written += list.len() as u64;
    }
    if let Some(g) = c.slot.groups.get_mut(group) {
        g.counters.archived += archived.len() as u64;
        g.counters.dead_lettered += written;
    }
    Ok(())
}

async fn dead_letter(
    shared: &Shared,
    group: &str,
    tp: &Tp,
    dlq: &str,
    list: &[&Archived],
) -> Result<(), WireError> {
    let partitions = view(shared).topics.get(dlq).map(|t| t.partitions.len() as u32);
    let partitions = partitions.filter(|&n| n > 0).ok_or_else(|| {
        WireError::new(
            ErrorCode::UnknownTopic,
            format!("dead-letter topic {dlq} of {} does not exist: nothing archived", tp.0),
        )
    })?;
    let wanted: BTreeSet<u64> = list.iter().map(|a| a.offset).collect();
    let (found, _, _) = read_offsets(shared, tp, &wanted, READ_BYTES as u32).await?;
    let mut b = BatchBuilder::new();
    let mut any = false;
    for a in list {
        // A record the log no longer holds (retention, compaction) has nothing to dead-letter.
        let Some(r) = found.get(&a.offset) else { continue };
        let mut headers: Vec<Header> = r
            .headers
            .iter()
            .map(|h| Header { key: h.key.clone(), value: h.value.clone() })
            .collect();
        let h = |k: &str, v: String| Header { key: k.to_string(), value: Some(Bytes::from(v)) };
        headers.push(h("silt.dlq.topic", tp.0.clone()));
        headers.push(h("silt.dlq.partition", tp.1.to_string()));
        headers.push(h("silt.dlq.offset", a.offset.to_string()));
        headers.push(h("silt.dlq.delivery.count", a.deliveries.to_string()));
        headers.push(h("silt.dlq.reason", a.reason.as_str().to_string()));
        headers.push(h("silt.dlq.group", group.to_string()));
        b.push(&Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
            timestamp_ms: r.timestamp_ms,
        });
        any = true;
    }
    if !any {
        return Ok(());
    }
    let batch = b.build_vec().expect("invariant: at least one record");
    peer::append(shared, dlq, tp.1 % partitions, batch).await?;
    Ok(())
}

/// Where a new share-partition of `tp` starts.
async fn start_of(shared: &Shared, tp: &Tp, reset: Reset) -> Result<SharePartition, WireError> {
    // A read from beyond the log end answers only where the log stands.
    let r = peer::read(shared, &tp.0, tp.1, u64::MAX, 1).await?;
    Ok(SharePartition::starting_at(match reset {
        Reset::Latest => r.high_watermark,
        Reset::Earliest => r.log_start,
    }))
}

/// Hands `member` up to `max_records` records (about `max_bytes`) of its assignment (of the
/// partitions in `only`, when it names any): records waiting for redelivery first, then new
/// ones, partition by partition from the group's cursor. Returns them with the partitions the
/// group had no state for: the caller persists their start before answering (so a coordinator
/// failover does not move a "latest" group forward).
pub(crate) async fn acquire(
    shared: &Shared,
    c: &mut Coordinated,
    group: &str,
    member: &str,
    only: &BTreeSet<Tp>,
    max_records: usize,
    max_bytes: usize,
) -> Result<(Vec<v1::AcquiredRecord>, Vec<Tp>), WireError> {
    let now = shared.share.now_ms();
    let limits = limits(shared);
    let none = || Ok((Vec::new(), Vec::new()));
    let Some(g) = c.slot.groups.get_mut(group) else { return none() };
    let Some(m) = g.members.get(member) else { return none() };
    let assignment: Vec<Tp> =
        m.assignment.iter().filter(|tp| only.is_empty() || only.contains(*tp)).cloned().collect();
    let reset = m.reset;
    if assignment.is_empty() {
        return none();
    }
    let start = g.cursor % assignment.len();
    g.cursor = g.cursor.wrapping_add(1);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut created = Vec::new();
    for i in 0..assignment.len() {
        if out.len() >= max_records || bytes >= max_bytes {
            break;
        }
        let tp = &assignment[(start + i) % assignment.len()];
        let known = c.slot.groups.get(group).is_some_and(|g| g.partitions.contains_key(tp));
        if !known {
            let sp = match start_of(shared, tp, reset).await {
                Ok(sp) => sp,
                Err(e) => {
                    tracing::debug!(topic = %tp.0, partition = tp.1, error = %e.message, "share partition not readable");
                    continue;
                }
            };
            if let Some(g) = c.slot.groups.get_mut(group) {
                g.partitions.insert(tp.clone(), sp);
            }
            created.push(tp.clone());
        }
        let room = max_records - out.len();
        let got =
            acquire_partition(shared, c, group, tp, member, room, max_bytes - bytes, now, &limits)
                .await;
        match got {
            Ok(records) => {
                bytes += records.iter().map(|(_, s)| *s).sum::<usize>();
                out.extend(records.into_iter().map(|(r, _)| r));
            }
            Err(e) => {
                tracing::debug!(topic = %tp.0, partition = tp.1, error = %e.message, "share partition not readable");
            }
        }
    }
    Ok((out, created))
}

#[allow(clippy::too_many_arguments)]
async fn acquire_partition(
    shared: &Shared,
    c: &mut Coordinated,
    group: &str,
    tp: &Tp,
    member: &str,
    room: usize,
    max_bytes: usize,
    now: u64,
    limits: &super::state::Limits,
) -> Result<Vec<(v1::AcquiredRecord, usize)>, WireError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let read_bytes = u32::try_from(max_bytes.clamp(1, READ_BYTES)).unwrap_or(peer::MAX_READ_BYTES);
    fn sp<'a>(c: &'a mut Coordinated, group: &str, tp: &Tp) -> Option<&'a mut SharePartition> {
        c.slot.groups.get_mut(group).and_then(|g| g.partitions.get_mut(tp))
    }
    let to_acquired = |rec: v1::FetchedRecord, deliveries: u16| v1::AcquiredRecord {
        topic: tp.0.clone(),
        partition: tp.1,
        record: Some(rec),
        delivery_count: u32::from(deliveries),
    };
    // Redeliveries first.
    let again: BTreeSet<u64> =
        sp(c, group, tp).map(|p| p.redeliverable(room)).unwrap_or_default().into_iter().collect();
    if !again.is_empty() {
        let (mut found, log_start, reached) = read_offsets(shared, tp, &again, read_bytes).await?;
        let Some(p) = sp(c, group, tp) else { return Ok(out) };
        p.lost_below(log_start);
        let mut redelivered = 0u64;
        for o in &again {
            match found.remove(o) {
                Some(rec) if bytes < max_bytes || out.is_empty() => {
                    let size = rec.key.as_ref().map_or(0, Bytes::len)
                        + rec.value.as_ref().map_or(0, Bytes::len)
                        + 16;
                    if let Some(d) = p.acquire_again(*o, member, now, limits) {
                        bytes += size;
                        redelivered += 1;
                        out.push((to_acquired(rec, d.deliveries), size));
                    }
                }
                Some(_) => {}
                // Read past and not there: compacted away while waiting.
                None if *o < reached && *o >= log_start => p.forget(*o),
                None => {}
            }
        }
        if let Some(g) = c.slot.groups.get_mut(group) {
            g.counters.redeliveries += redelivered;
        }
    }
    // Then new records from the end offset.
    let Some(p) = sp(c, group, tp) else { return Ok(out) };
    let room = p.room(limits).min(room.saturating_sub(out.len()));
    if room == 0 || (bytes >= max_bytes && !out.is_empty()) {
        return Ok(out);
    }
    let from = p.end;
    let r = peer::read(shared, &tp.0, tp.1, from, read_bytes).await?;
    let Some(p) = sp(c, group, tp) else { return Ok(out) };
    if from < r.log_start {
        p.lost_below(r.log_start);
        return Ok(out); // read again from the new end next time
    }
    if r.data.is_empty() {
        return Ok(out);
    }
    let (records, complete) = decode(tp, r.data, from, u64::MAX, room)?;
    let total = records.len();
    let mut taken = 0;
    for (rec, size) in records {
        if taken >= room || (bytes >= max_bytes && !out.is_empty()) {
            break;
        }
        let o = rec.offset as u64;
        if let Some(d) = p.acquire_new(o, member, now, limits) {
            bytes += size;
            taken += 1;
            out.push((to_acquired(rec, d.deliveries), size));
        }
    }
    if complete && taken == total {
        // Everything read was taken: what follows up to the read's end holds no records.
        p.skip_to(r.next_offset.min(r.high_watermark));
    }
    Ok(out)
}
