//! The recovery scan: walks the batches of a segment's bytes, checking each one, and stops at
//! the first byte that is not a whole, valid, contiguous batch. Pure: it reads a slice.

use silt_core::Offset;
use silt_core::batch::{BatchHeader, LOG_OVERHEAD, check_framing, validate};

use crate::LeaderEpochCache;

/// One batch that passed the scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scanned {
    pub pos: u64,
    pub header: BatchHeader,
}

/// Why a scan stopped before the end of the slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Zeros where the next batch would start: the unwritten (preallocated) tail.
    Unwritten { pos: u64 },
    /// A damaged, torn or out-of-place batch.
    Invalid { pos: u64, reason: String },
}

impl Stop {
    pub(crate) fn pos(&self) -> u64 {
        match self {
            Stop::Unwritten { pos } | Stop::Invalid { pos, .. } => *pos,
        }
    }
}

/// How thorough a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Framing and offsets only (trusted, already-recovered data: rebuilding an index).
    Framing,
    /// Everything `validate` checks, plus offsets and epochs (unsynced data after a crash).
    Full,
}

/// Iterator over the batches of `data`, which starts at a segment whose first batch has offset
/// `base`. Yields `Err(Stop)` once, at the first bad position, unless the data ends cleanly.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    data: &'a [u8],
    pos: usize,
    next_offset: Offset,
    max_batch_bytes: usize,
    epochs: Option<&'a LeaderEpochCache>,
    check: Check,
    done: bool,
}

pub(crate) fn scan<'a>(
    data: &'a [u8],
    base: Offset,
    max_batch_bytes: usize,
    epochs: Option<&'a LeaderEpochCache>,
    check: Check,
) -> Scan<'a> {
    let epochs = epochs.filter(|e| !e.entries().is_empty());
    Scan { data, pos: 0, next_offset: base, max_batch_bytes, epochs, check, done: false }
}

impl Scan<'_> {
    /// The offset after the last batch yielded so far.
    pub(crate) fn next_offset(&self) -> Offset {
        self.next_offset
    }

    fn check_one(&self, rest: &[u8]) -> Result<BatchHeader, String> {
        let h = check_framing(rest, self.max_batch_bytes).map_err(|e| e.to_string())?;
        if self.check == Check::Full {
            validate(&rest[..h.total_len()], self.max_batch_bytes).map_err(|e| e.to_string())?;
        }
        if h.base_offset != self.next_offset {
            return Err(format!(
                "batch offset {} where {} was expected",
                h.base_offset, self.next_offset
            ));
        }
        if let Some(epochs) = self.epochs {
            let want = epochs.epoch_for(h.base_offset);
            if want.is_some_and(|w| w != h.partition_leader_epoch) {
                return Err(format!(
                    "batch at offset {} has leader epoch {}, the checkpoint says {:?}",
                    h.base_offset, h.partition_leader_epoch, want
                ));
            }
        }
        Ok(h)
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<Scanned, Stop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let pos = self.pos as u64;
        match self.check_one(rest) {
            Ok(header) => {
                self.pos += header.total_len();
                self.next_offset = header.next_offset();
                Some(Ok(Scanned { pos, header }))
            }
            Err(reason) => {
                self.done = true;
                let head = &rest[..rest.len().min(LOG_OVERHEAD)];
                Some(Err(if head.iter().all(|&b| b == 0) {
                    Stop::Unwritten { pos }
                } else {
                    Stop::Invalid { pos, reason }
                }))
            }
        }
    }
}
