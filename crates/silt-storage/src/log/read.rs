//! Reads: whole batches from an offset as zero-copy slices of the map, and lookup by timestamp.

use bytes::Bytes;
use silt_core::Offset;
use silt_core::batch::RecordIter;

use super::Log;
use crate::StorageError;

/// Batches read from the log: one contiguous slice of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, back to back, exactly as stored. Empty when there is nothing to read.
    pub data: Bytes,
    /// Base offset of the first batch (may be below the requested offset: the batch holding it).
    pub first_offset: Offset,
    /// The offset after the last batch returned: where the next read continues.
    pub next_offset: Offset,
}

impl Log {
    /// Reads whole batches from the one holding `from`, up to `max_bytes` (but always at least
    /// one batch, so a consumer can pass a batch larger than its limit), up to the log end.
    pub fn read(&self, from: Offset, max_bytes: usize) -> Result<ReadResult, StorageError> {
        self.read_upto(from, max_bytes, self.log_end_offset())
    }

    /// Like [`read`](Self::read), returning only batches that end below `upper` (the high
    /// watermark, for consumers).
    pub fn read_upto(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
    ) -> Result<ReadResult, StorageError> {
        let end = self.log_end_offset();
        if from < self.log_start || from > end {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                log_start: self.log_start,
                log_end: end,
            });
        }
        let upper = upper.min(end);
        let empty = ReadResult { data: Bytes::new(), first_offset: from, next_offset: from };
        if from >= upper {
            return Ok(empty);
        }
        let max_batch = self.config.max_batch_bytes;
        let verify = self.config.verify_crc_on_read;
        let first_seg = self.segments.partition_point(|s| s.base() <= from).saturating_sub(1);
        for seg in &self.segments[first_seg..] {
            let start = seg.position_of(from, max_batch)?;
            let mut pos = start;
            let mut first_offset = None;
            let mut next_offset = from;
            while pos < seg.size() {
                let h = seg.header_at(pos, false, max_batch)?;
                let len = h.total_len() as u64;
                if h.last_offset() >= upper || (pos > start && pos + len - start > max_bytes as u64)
                {
                    break;
                }
                if verify && let Err(e) = seg.header_at(pos, true, max_batch) {
                    if pos == start {
                        return Err(e);
                    }
                    break; // serve the good batches before it; the next read reports it
                }
                first_offset.get_or_insert(h.base_offset);
                next_offset = h.next_offset();
                pos += len;
            }
            if let Some(first_offset) = first_offset {
                return Ok(ReadResult { data: seg.slice(start, pos), first_offset, next_offset });
            }
            if pos < seg.size() {
                break; // the next batch reaches `upper`
            }
        }
        Ok(empty)
    }

    /// Bytes of the log from the batch holding `from` to the end (the whole log for an offset
    /// before its start; 0 at or past its end).
    pub fn bytes_from(&self, from: Offset) -> u64 {
        if from >= self.log_end_offset() {
            return 0;
        }
        let from = from.max(self.log_start);
        let i = self.segments.partition_point(|s| s.base() <= from).saturating_sub(1);
        let Some(first) = self.segments.get(i) else { return 0 };
        let position = first.position_of(from, self.config.max_batch_bytes).unwrap_or(0);
        first.size().saturating_sub(position)
            + self.segments[i + 1..].iter().map(|s| s.size()).sum::<u64>()
    }

    /// Where the damage a read from `from` ran into begins: the offset of the first batch of
    /// the segment holding `from` that fails a full check (the end of the last good batch
    /// before it). `None` if that segment checks whole.
    pub fn damage_point(&self, from: Offset) -> Option<Offset> {
        let i = self.segments.partition_point(|s| s.base() <= from).saturating_sub(1);
        let seg = self.segments.get(i)?;
        let (position, offset) = seg.first_damaged(self.config.max_batch_bytes)?;
        tracing::error!(segment = %seg.path().display(), position, offset = offset.0, "the log is damaged from this batch on");
        Some(offset)
    }

    /// The first record whose timestamp is >= `timestamp_ms`: its offset and timestamp, or
    /// `None` if every record is older (Kafka's `ListOffsets` by time).
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let max_batch = self.config.max_batch_bytes;
        // Usually the first candidate segment answers; a compacted one whose newest records were
        // cleaned away (an empty batch keeps the time) passes the search on to the next.
        for seg in
            self.segments.iter().filter(|s| s.size() > 0 && s.max_timestamp() >= timestamp_ms)
        {
            let mut pos = seg.time_search_start(timestamp_ms, max_batch)?;
            while pos < seg.size() {
                let h = seg.header_at(pos, true, max_batch)?;
                let len = h.total_len() as u64;
                if h.max_timestamp >= timestamp_ms {
                    let batch = seg.slice(pos, pos + len);
                    let records =
                        RecordIter::new(batch).map_err(|e| corrupt(seg.path(), pos, e))?;
                    for r in records {
                        let r = r.map_err(|e| corrupt(seg.path(), pos, e))?;
                        if r.timestamp_ms >= timestamp_ms && r.offset >= self.log_start {
                            return Ok(Some((r.offset, r.timestamp_ms)));
                        }
                    }
                }
                pos += len;
            }
        }
        Ok(None)
    }
}

fn corrupt(path: &std::path::Path, position: u64, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt { segment: path.to_owned(), position, reason: e.to_string() }
}
