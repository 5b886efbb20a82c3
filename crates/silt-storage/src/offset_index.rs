//! `OffsetIndex`: the sparse `.index` file, mapping a batch's offset (relative to the segment
//! base, u32 BE) to its byte position in the `.log` (u32 BE). 8 bytes per entry, both columns
//! strictly increasing. Position 0 (the first batch) is implied and not stored.

use std::path::Path;

use crate::StorageError;
use crate::index_file::IndexFile;

/// Bytes per offset index entry.
pub const OFFSET_ENTRY_LEN: usize = 8;

/// The sparse offset index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
}

fn decode(e: &[u8]) -> (u32, u32) {
    (u32::from_be_bytes([e[0], e[1], e[2], e[3]]), u32::from_be_bytes([e[4], e[5], e[6], e[7]]))
}

impl OffsetIndex {
    pub(crate) fn new(file: IndexFile) -> OffsetIndex {
        OffsetIndex { file }
    }

    pub(crate) fn create(path: &Path, max_bytes: u64) -> Result<OffsetIndex, StorageError> {
        Ok(OffsetIndex { file: IndexFile::create(path, OFFSET_ENTRY_LEN, max_bytes)? })
    }

    pub(crate) fn file(&self) -> &IndexFile {
        &self.file
    }

    pub(crate) fn file_mut(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    /// The entry with the largest relative offset <= `rel`, or `(0, 0)`: where to start scanning
    /// for the batch holding `rel`.
    pub(crate) fn lookup(&self, rel: u32) -> (u32, u32) {
        let i = self.file.partition_point(|e| decode(e).0 <= rel);
        if i == 0 { (0, 0) } else { decode(self.file.entry(i - 1)) }
    }

    /// The last entry.
    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        self.file.len().checked_sub(1).map(|i| decode(self.file.entry(i)))
    }

    /// Adds an entry; ignored unless both columns rise (callers add in log order).
    pub(crate) fn push(&mut self, rel: u32, position: u32) {
        if self.last().is_none_or(|(r, p)| rel > r && position > p) {
            let mut e = [0u8; OFFSET_ENTRY_LEN];
            e[..4].copy_from_slice(&rel.to_be_bytes());
            e[4..].copy_from_slice(&position.to_be_bytes());
            self.file.push(&e);
        }
    }

    /// Drops entries for batches at relative offset >= `rel`.
    pub(crate) fn truncate_from(&mut self, rel: u32) {
        let keep = self.file.partition_point(|e| decode(e).0 < rel);
        self.file.truncate(keep);
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Checks the entries are sorted and point inside `log_size`; `Err` says what is wrong.
    pub(crate) fn check(&self, log_size: u64) -> Result<(), String> {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.file.len() {
            let (r, p) = decode(self.file.entry(i));
            if u64::from(p) >= log_size {
                return Err(format!("entry {i} points at {p}, past the log end {log_size}"));
            }
            if let Some((pr, pp)) = prev
                && (r <= pr || p <= pp)
            {
                return Err(format!("entry {i} ({r}, {p}) does not rise above ({pr}, {pp})"));
            }
            if r == 0 || p == 0 {
                return Err(format!("entry {i} ({r}, {p}) is the implied first entry"));
            }
            prev = Some((r, p));
        }
        Ok(())
    }
}
