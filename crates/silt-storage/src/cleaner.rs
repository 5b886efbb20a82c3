//! Log compaction: the part of the cleaner that reads sealed segments and writes their cleaned
//! copies, off the partition's thread. [`Log::clean_plan`](crate::Log::clean_plan) takes a
//! snapshot of what may be cleaned (zero-copy views of sealed segments below the bound the caller
//! gives: the high watermark and the last stable offset); [`CleanPlan::run`] builds the map of
//! each key's latest offset over the dirty part and writes every segment's cleaned copy as
//! `.cleaned` files; [`Log::install_cleaned`](crate::Log::install_cleaned), back on the
//! partition's thread, swaps them in crash-safely (see `log/clean.rs`).
//!
//! A record is kept if it is its key's latest (or its key was not seen in the dirty part, so an
//! earlier cleaning kept it as the latest), unless it is a tombstone older than
//! `delete_retention_ms` or belongs to an aborted transaction. A transaction marker is kept
//! while a record of its transaction is, and for `delete_retention_ms` after it was written.
//! Offsets never move: a batch that loses records is rebuilt around the ones
//! left (`silt_core::batch::filter_records`), a run of batches that lose every record becomes
//! one empty "filler" batch spanning their offsets (split where the leader epoch changes), and a
//! producer's last batch stays as an empty batch, so segments keep their offset ranges,
//! contiguity holds, and idempotent producers' sequences survive.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_core::batch::{
    BASE_SEQUENCE_POS, BASE_TIMESTAMP_POS, BatchHeader, BatchIter, CONTROL_FLAG, CRC_POS,
    DEFAULT_MAX_DECOMPRESSED_BYTES, Filtered, HEADER_LEN, LAST_OFFSET_DELTA_POS, LENGTH_POS,
    LOG_OVERHEAD, MAGIC, MAGIC_POS, MAX_TIMESTAMP_POS, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    NO_SEQUENCE, PRODUCER_EPOCH_POS, PRODUCER_ID_POS, TRANSACTIONAL_FLAG, crc_of, filter_records,
    for_each_record, patch_base_offset_and_epoch,
};
use silt_core::{LeaderEpoch, Offset};

use crate::segment::Segment;
use crate::{LogConfig, StorageError};

/// A sealed segment as the cleaner reads it (its bytes are a view of the segment's map).
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub base: Offset,
    pub next_offset: Offset,
    pub data: Bytes,
}

/// What may be cleaned now, taken by [`Log::clean_plan`](crate::Log::clean_plan).
#[derive(Debug, Clone)]
pub struct CleanPlan {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Sealed segments from the log start up to the first uncleanable one, oldest first.
    pub(crate) segments: Vec<SegmentView>,
    /// Records before this were cleaned already (the cleaner checkpoint).
    pub first_dirty: Offset,
    /// Dirty bytes over all bytes of `segments`.
    pub dirty_ratio: f64,
    /// The log's truncation count when planned: a truncation since voids the plan.
    pub(crate) layout: u64,
}

/// The cleaned copy of a run of consecutive segments, merged into one (named by the first's
/// base) and written next to them as `.cleaned` files.
#[derive(Debug, Clone)]
pub(crate) struct CleanedSegment {
    pub base: Offset,
    /// `(base, next_offset)` of every segment it replaces, in order (the first at `base`).
    pub replaces: Vec<(Offset, Offset)>,
}

/// A merged output being filled.
struct Group {
    replaces: Vec<(Offset, Offset)>,
    bytes: Vec<u8>,
}

impl Group {
    /// Whether `out`, the cleaned bytes of the segment `(base, next)`, fits in this group:
    /// within `segment_max_bytes`, relative offsets within u32, and indexes within their files.
    fn fits(&self, out: &[u8], next: Offset, config: &LogConfig) -> bool {
        let base = self.replaces[0].0;
        let total = (self.bytes.len() + out.len()) as u64;
        let index_entries = total / config.index_interval_bytes.max(1) + 2;
        total <= config.segment_max_bytes
            && next.0 - base.0 <= u64::from(u32::MAX)
            && index_entries * 12 <= config.index_max_bytes
    }
}

/// What [`CleanPlan::run`] wrote.
#[derive(Debug)]
pub struct Cleaned {
    pub(crate) dir: PathBuf,
    pub(crate) layout: u64,
    pub(crate) segments: Vec<CleanedSegment>,
    /// The new cleaner checkpoint: everything before it is clean once these are installed.
    pub clean_end: Offset,
    pub stats: CleanStats,
}

/// What a cleaning did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CleanStats {
    pub segments: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    pub duration: Duration,
}

/// Limits the cleaner's I/O to a rate (`log.cleaner.io.max.bytes.per.second`): after each chunk
/// the caller reports, it sleeps long enough to stay under the rate.
#[derive(Debug)]
pub struct IoThrottle {
    bytes_per_sec: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl IoThrottle {
    /// `None`: no limit.
    pub fn new(bytes_per_sec: Option<u64>) -> IoThrottle {
        IoThrottle { bytes_per_sec, started: Instant::now(), bytes: 0 }
    }

    /// Accounts `n` bytes read or written, sleeping if the rate is passed.
    pub fn consumed(&mut self, n: u64) {
        let Some(rate) = self.bytes_per_sec.filter(|r| *r > 0) else { return };
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        // Forget the past now and then, so an idle spell does not buy a burst.
        if elapsed > Duration::from_secs(10) {
            self.started = Instant::now();
            self.bytes = 0;
        }
    }
}

/// Whether a record of `producer_id` at `offset` belongs to an aborted transaction.
pub type AbortedCheck<'a> = &'a dyn Fn(i64, Offset) -> bool;

impl CleanPlan {
    /// Builds the key map over the dirty segments (as many as fit `map_budget_bytes` of keys;
    /// at least one) and writes the cleaned copy of every segment up to the last mapped one.
    pub fn run(
        &self,
        is_aborted: AbortedCheck<'_>,
        now_ms: i64,
        map_budget_bytes: usize,
        throttle: &mut IoThrottle,
    ) -> Result<Cleaned, StorageError> {
        let started = Instant::now();
        let mut stats = CleanStats::default();
        let limit = DEFAULT_MAX_DECOMPRESSED_BYTES;
        let corrupt = |seg: &SegmentView, e: silt_core::batch::BatchError| StorageError::Corrupt {
            segment: self.dir.join(crate::segment_file_name(seg.base, "log")),
            position: 0,
            reason: format!("while cleaning: {e}"),
        };
        // 1. The latest offset of every key in the dirty segments.
        let mut latest: HashMap<Bytes, Offset> = HashMap::new();
        let mut map_bytes = 0usize;
        let mut end = 0usize; // segments[..end] get cleaned
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.next_offset <= self.first_dirty {
                end = i + 1;
                continue;
            }
            if map_bytes > map_budget_bytes
                && end > 0
                && self.segments[end - 1].next_offset > self.first_dirty
            {
                break;
            }
            for batch in BatchIter::new(seg.data.clone()) {
                let batch = batch.map_err(|e| corrupt(seg, e))?;
                let h = BatchHeader::parse(&batch).expect("invariant: framed");
                if h.attributes & CONTROL_FLAG != 0 || h.next_offset() <= self.first_dirty {
                    continue;
                }
                let producer = h.producer_id;
                for_each_record(&batch, limit, |r| {
                    if r.offset < self.first_dirty || is_aborted(producer, r.offset) {
                        return;
                    }
                    if let Some(k) = r.key {
                        if let Some(o) = latest.get_mut(k) {
                            *o = r.offset;
                        } else {
                            map_bytes += k.len() + 48;
                            latest.insert(Bytes::copy_from_slice(k), r.offset);
                        }
                    }
                })
                .map_err(|e| corrupt(seg, e))?;
            }
            stats.bytes_read += seg.data.len() as u64;
            throttle.consumed(seg.data.len() as u64);
            end = i + 1;
        }
        if end == 0 {
            return Ok(Cleaned {
                dir: self.dir.clone(),
                layout: self.layout,
                segments: Vec::new(),
                clean_end: self.first_dirty,
                stats,
            });
        }
        // Each producer's last batch in the cleaned range keeps at least its header.
        let mut last_of_producer: HashMap<i64, Offset> = HashMap::new();
        for seg in &self.segments[..end] {
            for batch in BatchIter::new(seg.data.clone()) {
                let batch = batch.map_err(|e| corrupt(seg, e))?;
                let h = BatchHeader::parse(&batch).expect("invariant: framed");
                if h.producer_id >= 0 {
                    last_of_producer.insert(h.producer_id, h.base_offset);
                }
            }
        }
        let last_batches: HashSet<Offset> = last_of_producer.into_values().collect();
        // 2. The cleaned copies.
        let horizon = now_ms.saturating_sub(self.config.delete_retention_ms);
        let mut written = Vec::new();
        let mut group: Option<Group> = None;
        // Producers whose transaction (since their last marker) still has a batch kept: its
        // marker must stay, or a reader would take the records for an open transaction.
        let mut in_txn_kept: HashSet<i64> = HashSet::new();
        for seg in &self.segments[..end] {
            let mut out = Vec::with_capacity(seg.data.len() / 2);
            let mut filler = Filler::default();
            for batch in BatchIter::new(seg.data.clone()) {
                let batch = batch.map_err(|e| corrupt(seg, e))?;
                let h = BatchHeader::parse(&batch).expect("invariant: framed");
                let transactional = h.attributes & TRANSACTIONAL_FLAG != 0;
                if h.attributes & CONTROL_FLAG != 0 {
                    // A marker goes (as Kafka's cleaner removes them) once its transaction has no
                    // record left, it is past delete.retention.ms, and it is not its producer's
                    // last batch (which carries the producer's epoch).
                    let needed = in_txn_kept.remove(&h.producer_id)
                        || last_batches.contains(&h.base_offset)
                        || h.max_timestamp >= horizon;
                    if needed {
                        filler.flush(&mut out);
                        out.extend_from_slice(&batch);
                    } else {
                        stats.records_removed += 1;
                        filler.cover(&h, &mut out);
                    }
                    continue;
                }
                if h.record_count == 0 {
                    // Emptied by an earlier cleaning: kept while it is its producer's last
                    // batch, else folded into this cleaning's fillers (so fillers never pile up).
                    if last_batches.contains(&h.base_offset) {
                        if transactional {
                            in_txn_kept.insert(h.producer_id);
                        }
                        filler.flush(&mut out);
                        out.extend_from_slice(&batch);
                    } else {
                        filler.cover(&h, &mut out);
                    }
                    continue;
                }
                let producer = h.producer_id;
                let mut read = 0u64;
                let filtered = filter_records(&batch, limit, |r| {
                    read += 1;
                    if is_aborted(producer, r.offset) {
                        return false;
                    }
                    let latest_here =
                        r.key.is_none_or(|k| latest.get(k).is_none_or(|o| r.offset >= *o));
                    latest_here && !(r.tombstone && r.timestamp_ms < horizon)
                })
                .map_err(|e| corrupt(seg, e))?;
                stats.records_read += read;
                let kept_any = match &filtered {
                    Filtered::Emptied(_) => last_batches.contains(&h.base_offset),
                    Filtered::Unchanged | Filtered::Rewritten(_) => true,
                };
                if transactional && kept_any {
                    in_txn_kept.insert(h.producer_id);
                }
                match filtered {
                    Filtered::Unchanged => {
                        filler.flush(&mut out);
                        out.extend_from_slice(&batch);
                    }
                    Filtered::Rewritten(b) => {
                        stats.records_removed +=
                            read - u64::from(BatchHeader::parse(&b).map_or(0, |h| h.record_count));
                        filler.flush(&mut out);
                        out.extend_from_slice(&b);
                    }
                    Filtered::Emptied(b) => {
                        stats.records_removed += read;
                        if last_batches.contains(&h.base_offset) {
                            filler.flush(&mut out);
                            out.extend_from_slice(&b);
                        } else {
                            filler.cover(&h, &mut out);
                        }
                    }
                }
            }
            filler.flush(&mut out);
            stats.segments += 1;
            // Small cleaned segments are merged with their neighbours (as Kafka's cleaner
            // groups them), so a compacted log's file count stays bounded.
            match &mut group {
                Some(g) if g.fits(&out, seg.next_offset, &self.config) => {
                    g.bytes.extend_from_slice(&out);
                    g.replaces.push((seg.base, seg.next_offset));
                }
                _ => {
                    if let Some(g) = group.take() {
                        written.push(self.write_group(g, throttle, &mut stats)?);
                    }
                    group = Some(Group { replaces: vec![(seg.base, seg.next_offset)], bytes: out });
                }
            }
        }
        if let Some(g) = group.take() {
            written.push(self.write_group(g, throttle, &mut stats)?);
        }
        stats.duration = started.elapsed();
        let clean_end = self.segments[end - 1].next_offset;
        Ok(Cleaned {
            dir: self.dir.clone(),
            layout: self.layout,
            segments: written,
            clean_end,
            stats,
        })
    }
}

impl CleanPlan {
    fn write_group(
        &self,
        g: Group,
        throttle: &mut IoThrottle,
        stats: &mut CleanStats,
    ) -> Result<CleanedSegment, StorageError> {
        let base = g.replaces[0].0;
        Segment::write_cleaned(&self.dir, base, &g.bytes, &self.config)?;
        throttle.consumed(g.bytes.len() as u64);
        stats.bytes_written += g.bytes.len() as u64;
        Ok(CleanedSegment { base, replaces: g.replaces })
    }
}

/// A run of dropped batches, written as one empty batch covering their offsets.
#[derive(Debug, Default)]
struct Filler {
    /// base, last offset, epoch, max timestamp
    open: Option<(Offset, Offset, LeaderEpoch, i64)>,
}

impl Filler {
    fn cover(&mut self, h: &BatchHeader, out: &mut Vec<u8>) {
        if let Some((_, _, epoch, _)) = self.open
            && epoch != h.partition_leader_epoch
        {
            self.flush(out);
        }
        let (base, _, epoch, ts) =
            self.open.unwrap_or((h.base_offset, h.base_offset, h.partition_leader_epoch, i64::MIN));
        self.open = Some((base, h.last_offset(), epoch, ts.max(h.max_timestamp)));
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        let Some((base, last, epoch, ts)) = self.open.take() else { return };
        out.extend_from_slice(&empty_batch(base, last, epoch, ts));
    }
}

/// A batch with no records covering `[base, last]`, of no producer.
fn empty_batch(base: Offset, last: Offset, epoch: LeaderEpoch, ts: i64) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[LENGTH_POS..LENGTH_POS + 4]
        .copy_from_slice(&((HEADER_LEN - LOG_OVERHEAD) as u32).to_be_bytes());
    b[MAGIC_POS] = MAGIC;
    let delta = u32::try_from(last.0 - base.0).unwrap_or(u32::MAX);
    b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&delta.to_be_bytes());
    b[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8].copy_from_slice(&ts.to_be_bytes());
    b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&ts.to_be_bytes());
    b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&NO_PRODUCER_ID.to_be_bytes());
    b[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2].copy_from_slice(&NO_PRODUCER_EPOCH.to_be_bytes());
    b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&NO_SEQUENCE.to_be_bytes());
    patch_base_offset_and_epoch(&mut b, base, epoch);
    let crc = crc_of(&b);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}
