//! `IndexFile`: a file of fixed-width entries, preallocated and written through a writable map
//! while its segment is active, trimmed to its entries and mapped read-only once sealed.
//!
//! Invariant: the map (writable or not) covers at least `entries * entry_len` bytes, and entries
//! past `entries` are zero in a writable map.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::StorageError;
use crate::error::IoContext;
use crate::file_util::preallocate;
use crate::mmap::{map_index_read, map_write};

#[derive(Debug)]
enum Map {
    Writable(MmapMut),
    Sealed(Option<Mmap>),
}

/// A fixed-width entry file (see the module doc).
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    map: Map,
    entry_len: usize,
    entries: usize,
}

impl IndexFile {
    /// Creates a new empty, writable index file preallocated to `max_bytes`.
    pub(crate) fn create(
        path: &Path,
        entry_len: usize,
        max_bytes: u64,
    ) -> Result<IndexFile, StorageError> {
        Self::empty_writable(path, entry_len, max_bytes, true)
    }

    /// Opens an existing sealed (trimmed) index file. Its length must be a whole number of
    /// entries; otherwise the caller rebuilds it.
    pub(crate) fn open_sealed(path: &Path, entry_len: usize) -> Result<IndexFile, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path)?;
        let len = file.metadata().at(path)?.len();
        let entries = usize::try_from(len).unwrap_or(usize::MAX) / entry_len;
        let map = Map::Sealed(map_index_read(&file).at(path)?);
        let idx = IndexFile { path: path.to_owned(), file, map, entry_len, entries };
        if len % entry_len as u64 != 0 {
            return Err(StorageError::Corrupt {
                segment: path.to_owned(),
                position: len,
                reason: format!("index length {len} is not a multiple of {entry_len}"),
            });
        }
        Ok(idx)
    }

    /// Opens an index file for rebuilding: writable and emptied.
    pub(crate) fn open_empty_writable(
        path: &Path,
        entry_len: usize,
        max_bytes: u64,
    ) -> Result<IndexFile, StorageError> {
        Self::empty_writable(path, entry_len, max_bytes, false)
    }

    fn empty_writable(
        path: &Path,
        entry_len: usize,
        max_bytes: u64,
        create_new: bool,
    ) -> Result<IndexFile, StorageError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if create_new {
            opts.create_new(true);
        } else {
            opts.create(true).truncate(true);
        }
        let file = opts.open(path).at(path)?;
        let mut idx = IndexFile {
            path: path.to_owned(),
            file,
            map: Map::Sealed(None),
            entry_len,
            entries: 0,
        };
        idx.make_writable(max_bytes)?;
        Ok(idx)
    }

    /// Grows the file to `max_bytes` (keeping its entries) and maps it writable.
    pub(crate) fn make_writable(&mut self, max_bytes: u64) -> Result<(), StorageError> {
        if matches!(self.map, Map::Writable(_)) {
            return Ok(());
        }
        self.map = Map::Sealed(None);
        let max_bytes = max_bytes - max_bytes % self.entry_len as u64;
        let used = (self.entries * self.entry_len) as u64;
        preallocate(&self.file, max_bytes.max(used), &self.path)?;
        let mut map = map_write(&self.file).at(&self.path)?;
        map[self.entries * self.entry_len..].fill(0);
        self.map = Map::Writable(map);
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Writable(m) => &m[..],
            Map::Sealed(Some(m)) => &m[..],
            Map::Sealed(None) => &[],
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Entry `i` (`i < len()`).
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        &self.bytes()[i * self.entry_len..(i + 1) * self.entry_len]
    }

    /// True when no further entry fits (always true once sealed).
    pub(crate) fn is_full(&self) -> bool {
        match &self.map {
            Map::Writable(m) => (self.entries + 1) * self.entry_len > m.len(),
            Map::Sealed(_) => true,
        }
    }

    /// Appends an entry; the caller checked `!is_full()`.
    pub(crate) fn push(&mut self, entry: &[u8]) {
        debug_assert_eq!(entry.len(), self.entry_len);
        let at = self.entries * self.entry_len;
        if let Map::Writable(m) = &mut self.map {
            m[at..at + self.entry_len].copy_from_slice(entry);
            self.entries += 1;
        }
    }

    /// Keeps the first `entries` entries, zeroing the rest of a writable map.
    pub(crate) fn truncate(&mut self, entries: usize) {
        if entries >= self.entries {
            return;
        }
        if let Map::Writable(m) = &mut self.map {
            m[entries * self.entry_len..self.entries * self.entry_len].fill(0);
        }
        self.entries = entries;
    }

    /// The first index in `0..len()` whose entry fails `pred` (entries are sorted).
    pub(crate) fn partition_point(&self, pred: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.entry(mid)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// Writes dirty pages back (not needed for safety: unsynced indexes are rebuilt on recovery).
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        match &self.map {
            Map::Writable(m) => m.flush().at(&self.path),
            Map::Sealed(_) => Ok(()),
        }
    }

    /// Flushes, trims the file to its entries, fsyncs it and maps it read-only.
    pub(crate) fn seal(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.map = Map::Sealed(None);
        self.file.set_len((self.entries * self.entry_len) as u64).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        self.map = Map::Sealed(map_index_read(&self.file).at(&self.path)?);
        Ok(())
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
