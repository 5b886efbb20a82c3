//! `Log`: one partition replica's log — an ordered list of segments, the last one active.
//!
//! Invariants: segments are contiguous (`segments[i].next_offset == segments[i+1].base`), the
//! log start offset is the first segment's base, the leader-epoch checkpoint names no epoch that
//! starts at or past the log end, and everything below `synced_offset` survives a crash.
//! Opening (with crash recovery) and closing live in `open.rs`; reads and lookups in `read.rs`.

mod clean;
mod open;
mod read;

use std::path::{Path, PathBuf};

use silt_core::batch::{BatchHeader, patch_base_offset_and_epoch, validate};
use silt_core::{LeaderEpoch, Offset};

use crate::checkpoint::{LOG_START_FILE, RECOVERY_POINT_FILE, write_u64};
use crate::retention::segments_to_delete;
use crate::segment::Segment;
use crate::{LeaderEpochCache, LogConfig, StorageError};

pub use clean::SwapStep;
pub use open::QUARANTINE_PREFIX;
pub use read::ReadResult;

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// Largest record timestamp in the batch (ms).
    pub max_timestamp: i64,
    pub size_bytes: usize,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start: Offset,
}

/// A partition log (see the module doc). Dropping it without [`close`](Log::close) is what a
/// crash looks like: the next open recovers.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Never empty; the last segment is the active one.
    segments: Vec<Segment>,
    log_start: Offset,
    epochs: LeaderEpochCache,
    synced: Offset,
    /// Recovery on open cut bytes or dropped segments (a lost tail or corruption).
    damaged_on_open: bool,
    /// Why a sync failed, once one has: the log is offline (see [`StorageError::Offline`]).
    failed_sync: Option<String>,
    /// Truncations since the open: a cleaning planned before one is not installed.
    layout: u64,
}

impl Log {
    /// The directory holding this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (a topic config change); sizes apply from the next roll.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), StorageError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The first offset still stored.
    pub fn log_start_offset(&self) -> Offset {
        self.log_start
    }

    /// The offset the next appended record gets (LEO).
    pub fn log_end_offset(&self) -> Offset {
        self.active().next_offset()
    }

    /// Everything below this offset is on disk (fdatasync'd).
    pub fn synced_offset(&self) -> Offset {
        self.synced
    }

    /// Bytes of batches stored, over all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offset of the active (newest) segment: it changes when the log rolls.
    pub fn active_base_offset(&self) -> Offset {
        self.active().base()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.segments.iter().map(Segment::base).collect()
    }

    /// Whether recovery on open cut invalid bytes or dropped segments: a torn or lost tail, or
    /// corruption. Such a replica may miss records others count on, so it must catch up from the
    /// leader before it may lead (see the broker's replication docs).
    pub fn damaged_on_open(&self) -> bool {
        self.damaged_on_open
    }

    /// The leader-epoch checkpoint.
    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// `OffsetForLeaderEpoch` on this log (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("invariant: a log has at least one segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("invariant: a log has at least one segment")
    }

    /// Why the log is offline (a sync failed), if it is.
    pub fn offline(&self) -> Option<&str> {
        self.failed_sync.as_deref()
    }

    fn check_online(&self) -> Result<(), StorageError> {
        match &self.failed_sync {
            None => Ok(()),
            Some(reason) => {
                Err(StorageError::Offline { dir: self.dir.clone(), reason: reason.clone() })
            }
        }
    }

    /// Leader append: checks the batch fully, stamps the next offset and `epoch` into it in
    /// place, and writes it. Not durable until [`sync`](Self::sync).
    pub fn append(
        &mut self,
        batch: &mut [u8],
        epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        self.check_size(batch.len())?;
        validate(batch, self.config.max_batch_bytes)?;
        let base = self.log_end_offset();
        patch_base_offset_and_epoch(batch, base, epoch);
        let h = BatchHeader::parse(batch).expect("invariant: validated batch has a header");
        self.note_epoch(epoch, base)?;
        self.write(batch, &h, now_ms)
    }

    /// Follower append: the batch keeps the offsets and epoch the leader gave it, and must
    /// start at the log end.
    pub fn append_replicated(
        &mut self,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        self.check_size(batch.len())?;
        let h = validate(batch, self.config.max_batch_bytes)?;
        let expected = self.log_end_offset();
        if h.base_offset != expected {
            return Err(StorageError::NonContiguous { expected, found: h.base_offset });
        }
        self.note_epoch(h.partition_leader_epoch, h.base_offset)?;
        self.write(batch, &h, now_ms)
    }

    fn check_size(&self, len: usize) -> Result<(), StorageError> {
        let max = self.config.max_batch_bytes.min(self.config.segment_max_bytes as usize);
        if len > max { Err(StorageError::BatchTooLarge { size: len, max }) } else { Ok(()) }
    }

    /// Records a new epoch durably before any batch of it is written, so recovery can check
    /// every batch's epoch against the checkpoint.
    fn note_epoch(&mut self, epoch: LeaderEpoch, start: Offset) -> Result<(), StorageError> {
        if self.epochs.assign(epoch, start)? {
            if let Err(e) = self.epochs.save() {
                self.epochs.truncate_from_end(start);
                return Err(e);
            }
            tracing::debug!(dir = %self.dir.display(), epoch = epoch.0, start = start.0, "new leader epoch");
        }
        Ok(())
    }

    fn write(
        &mut self,
        batch: &[u8],
        h: &BatchHeader,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.active().needs_roll(batch.len(), h.last_offset(), &self.config, now_ms) {
            self.roll(now_ms)?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(batch, h, interval)?;
        Ok(AppendInfo {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
            size_bytes: batch.len(),
        })
    }

    /// Starts a new active segment at the log end. The new files are made first, so a full disk
    /// leaves the old segment active and the log unchanged.
    fn roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let base = self.log_end_offset();
        let new = Segment::create(&self.dir, base, &self.config, now_ms)?;
        if let Err(e) = self.active_mut().seal() {
            let _ = new.delete();
            return Err(e);
        }
        self.segments.push(new);
        self.synced = self.synced.max(base);
        write_u64(&self.dir, RECOVERY_POINT_FILE, base.0)?;
        tracing::info!(dir = %self.dir.display(), base = base.0, "rolled to a new segment");
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync) and returns the log end offset it
    /// covers. One call covers any number of appends: the group commit. A failure is final: the
    /// log goes offline and never reports those appends durable (see [`StorageError::Offline`]).
    pub fn sync(&mut self) -> Result<Offset, StorageError> {
        self.check_online()?;
        let end = self.log_end_offset();
        if self.synced < end {
            if let Err(e) = self.active().sync() {
                tracing::error!(dir = %self.dir.display(), error = %e, "fsync failed: the log goes offline until it is reopened");
                self.failed_sync = Some(e.to_string());
                return Err(e);
            }
            self.synced = end;
        }
        Ok(end)
    }

    /// Removes every batch at or after the batch holding `offset` (a follower dropping a
    /// divergent suffix). Returns the new log end. Truncating below the log start empties the
    /// log and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<Offset, StorageError> {
        self.check_online()?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        self.layout += 1;
        if offset <= self.log_start {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(offset);
        }
        while self.active().base() >= offset {
            let seg = self.segments.pop().expect("invariant: offset > log start keeps a segment");
            seg.delete()?;
        }
        crate::file_util::sync_dir(&self.dir)?;
        let config = self.config.clone();
        let active = self.active_mut();
        active.make_active(&config)?;
        active.truncate_to(offset, &config)?;
        let (base, end) = (active.base(), active.next_offset());
        write_u64(&self.dir, RECOVERY_POINT_FILE, base.0)?;
        if self.epochs.truncate_from_end(end) {
            self.epochs.save()?;
        }
        self.synced = self.synced.min(end);
        tracing::info!(dir = %self.dir.display(), offset = offset.0, end = end.0, "truncated log");
        Ok(end)
    }

    /// Deletes every segment and starts an empty log at `offset` (a follower whose leader has
    /// deleted everything it had).
    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) -> Result<(), StorageError> {
        self.check_online()?;
        self.layout += 1;
        for seg in self.segments.drain(..) {
            seg.delete()?;
        }
        self.segments.push(Segment::create(&self.dir, offset, &self.config, 0)?);
        self.log_start = offset;
        write_u64(&self.dir, LOG_START_FILE, offset.0)?;
        write_u64(&self.dir, RECOVERY_POINT_FILE, offset.0)?;
        self.epochs.truncate_from_end(Offset::ZERO);
        self.epochs.save()?;
        self.synced = offset;
        Ok(())
    }

    /// Deletes whole segments past `retention_ms` / `retention_bytes` and moves the log start.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        if !self.config.cleanup_delete {
            return Ok(RetentionOutcome {
                deleted_segments: 0,
                deleted_bytes: 0,
                log_start: self.log_start,
            });
        }
        let summaries: Vec<_> = self.segments.iter().map(Segment::summary).collect();
        let n = segments_to_delete(
            &summaries,
            now_ms,
            self.config.retention_ms,
            self.config.retention_bytes,
        );
        self.delete_leading_segments(n, "retention")
    }

    /// Deletes every segment that lies wholly below `offset` (never the active one) and moves
    /// the log start to the first remaining segment, which is at most `offset`. For a record
    /// store that rewrote everything still live at or after `offset` (`__consumer_offsets`), and
    /// for followers keeping up with their leader's log start.
    pub fn delete_segments_before(
        &mut self,
        offset: Offset,
    ) -> Result<RetentionOutcome, StorageError> {
        let n = self.segments.windows(2).take_while(|pair| pair[1].base() <= offset).count();
        self.delete_leading_segments(n, "deleted records before an offset")
    }

    fn delete_leading_segments(
        &mut self,
        n: usize,
        why: &str,
    ) -> Result<RetentionOutcome, StorageError> {
        let mut deleted_bytes = 0;
        let n = n.min(self.segments.len().saturating_sub(1));
        if n > 0 {
            let start = self.segments[n].base();
            // Persist the new start first: a crash in between leaves extra files, never a start
            // offset pointing at deleted data.
            write_u64(&self.dir, LOG_START_FILE, start.0)?;
            self.log_start = start;
            for seg in self.segments.drain(..n) {
                deleted_bytes += seg.size();
                seg.delete()?;
            }
            // The unlinks are durable too: a crash must not bring deleted segments back.
            crate::file_util::sync_dir(&self.dir)?;
            if self.epochs.truncate_from_start(start) {
                self.epochs.save()?;
            }
            tracing::info!(dir = %self.dir.display(), segments = n, log_start = start.0, "{why}: deleted segments");
        }
        Ok(RetentionOutcome { deleted_segments: n, deleted_bytes, log_start: self.log_start })
    }

    /// Deletes the whole log directory (topic deletion).
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(dir.clone(), e))?;
        match dir.parent() {
            Some(parent) => crate::file_util::sync_dir(parent),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod disk_full_test;
