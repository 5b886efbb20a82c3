//! `TimeIndex`: the sparse `.timeindex` file. Each entry (i64 BE max timestamp so far, u32 BE
//! relative offset) says: the batch at this offset raised the segment's largest timestamp to this
//! value, so every earlier batch has a smaller one. 12 bytes per entry, timestamps strictly
//! increasing. The last entry of a sealed segment holds the segment's largest timestamp.

use std::path::Path;

use crate::StorageError;
use crate::index_file::IndexFile;

/// Bytes per time index entry.
pub const TIME_ENTRY_LEN: usize = 12;

/// The sparse time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
}

fn decode(e: &[u8]) -> (i64, u32) {
    (
        i64::from_be_bytes(e[..8].try_into().expect("invariant: 12-byte entry")),
        u32::from_be_bytes(e[8..12].try_into().expect("invariant: 12-byte entry")),
    )
}

impl TimeIndex {
    pub(crate) fn new(file: IndexFile) -> TimeIndex {
        TimeIndex { file }
    }

    pub(crate) fn create(path: &Path, max_bytes: u64) -> Result<TimeIndex, StorageError> {
        Ok(TimeIndex { file: IndexFile::create(path, TIME_ENTRY_LEN, max_bytes)? })
    }

    pub(crate) fn file(&self) -> &IndexFile {
        &self.file
    }

    pub(crate) fn file_mut(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    /// The relative offset of the last entry whose timestamp is < `ts`: every batch before it has
    /// a smaller timestamp too, so a search for the first batch reaching `ts` may start there.
    pub(crate) fn lookup(&self, ts: i64) -> Option<u32> {
        let i = self.file.partition_point(|e| decode(e).0 < ts);
        i.checked_sub(1).map(|i| decode(self.file.entry(i)).1)
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.file.len().checked_sub(1).map(|i| decode(self.file.entry(i)))
    }

    /// Adds an entry if `ts` is above the last one and there is room.
    pub(crate) fn push(&mut self, ts: i64, rel: u32) {
        if !self.file.is_full() && self.last().is_none_or(|(t, r)| ts > t && rel >= r) {
            let mut e = [0u8; TIME_ENTRY_LEN];
            e[..8].copy_from_slice(&ts.to_be_bytes());
            e[8..].copy_from_slice(&rel.to_be_bytes());
            self.file.push(&e);
        }
    }

    /// Drops entries for batches at relative offset >= `rel`.
    pub(crate) fn truncate_from(&mut self, rel: u32) {
        // Relative offsets rise with the entries, so the kept entries are a prefix.
        let keep = self.file.partition_point(|e| decode(e).1 < rel);
        self.file.truncate(keep);
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Checks timestamps rise and offsets stay below `next_rel`.
    pub(crate) fn check(&self, next_rel: u64) -> Result<(), String> {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.file.len() {
            let (t, r) = decode(self.file.entry(i));
            if u64::from(r) >= next_rel {
                return Err(format!("entry {i} names offset {r}, past the segment end {next_rel}"));
            }
            if let Some((pt, pr)) = prev
                && (t <= pt || r < pr)
            {
                return Err(format!("entry {i} ({t}, {r}) does not rise above ({pt}, {pr})"));
            }
            prev = Some((t, r));
        }
        Ok(())
    }
}
