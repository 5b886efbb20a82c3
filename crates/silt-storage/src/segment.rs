//! `Segment`: one `.log` file of batches with its `.index` and `.timeindex`.
//!
//! An active segment's `.log` is preallocated to `segment_max_bytes` and mapped once; batches are
//! written with `pwrite` at `size` and read as slices of the map below `size`. Sealing trims the
//! files to their contents, fsyncs them and maps them read-only. Invariants: `[0, size)` holds
//! whole batches with contiguous offsets `[base, next_offset)`; index entries point inside it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use silt_core::Offset;
use silt_core::batch::{BatchHeader, check_framing, validate};

use crate::error::IoContext;
use crate::file_util::{preallocate, sync_dir};
use crate::index_file::IndexFile;
use crate::mmap::map_read;
use crate::offset_index::{OFFSET_ENTRY_LEN, OffsetIndex};
use crate::recovery::{Check, Stop, scan};
use crate::retention::SegmentSummary;
use crate::time_index::{TIME_ENTRY_LEN, TimeIndex};
use crate::{LeaderEpochCache, LogConfig, StorageError};

/// Suffix of a cleaned copy of a segment's file, before it is swapped in.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a cleaned `.log` whose swap is committed (see `log/clean.rs`).
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// Digits in a segment file name: the base offset, zero padded.
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// The file name of a segment's file with extension `ext` (`log`, `index`, `timeindex`).
pub fn segment_file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.0)
}

/// One segment (see the module doc).
#[derive(Debug)]
pub(crate) struct Segment {
    base: Offset,
    log_path: PathBuf,
    file: File,
    data: Bytes,
    size: u64,
    next_offset: Offset,
    max_timestamp: i64,
    max_timestamp_rel: u32,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    created_ms: i64,
    active: bool,
}

fn open_log_file(path: &Path, create: bool) -> Result<File, StorageError> {
    OpenOptions::new().read(true).write(true).create_new(create).open(path).at(path)
}

impl Segment {
    /// Creates an empty active segment at `base`. On failure (a full disk) nothing is left behind.
    pub(crate) fn create(
        dir: &Path,
        base: Offset,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        let paths = ["log", "index", "timeindex"].map(|ext| dir.join(segment_file_name(base, ext)));
        let result = (|| {
            let file = open_log_file(&paths[0], true)?;
            preallocate(&file, config.segment_max_bytes, &paths[0])?;
            let data = map_read(&file, config.segment_max_bytes).at(&paths[0])?;
            let offset_index = OffsetIndex::create(&paths[1], config.index_max_bytes)?;
            let time_index = TimeIndex::create(&paths[2], config.index_max_bytes)?;
            sync_dir(dir)?;
            let mut seg =
                Segment::assemble(base, paths[0].clone(), file, data, (offset_index, time_index));
            seg.created_ms = now_ms;
            seg.active = true;
            Ok(seg)
        })();
        if result.is_err() {
            for p in &paths {
                let _ = std::fs::remove_file(p);
            }
        }
        result
    }

    /// Opens a sealed segment that was synced and trimmed (before the recovery point, or after a
    /// clean shutdown) without a full scan. Damaged index files are rebuilt. `Err(Corrupt)` if the
    /// log's own framing is off, so the caller can fall back to [`recover`](Self::recover).
    pub(crate) fn open_trusted(
        dir: &Path,
        base: Offset,
        config: &LogConfig,
    ) -> Result<Segment, StorageError> {
        let log_path = dir.join(segment_file_name(base, "log"));
        let file = open_log_file(&log_path, false)?;
        let size = file.metadata().at(&log_path)?.len();
        let data = map_read(&file, size).at(&log_path)?;
        let idx_path = dir.join(segment_file_name(base, "index"));
        let tidx_path = dir.join(segment_file_name(base, "timeindex"));
        let offset_index =
            IndexFile::open_sealed(&idx_path, OFFSET_ENTRY_LEN).map(OffsetIndex::new);
        let time_index = IndexFile::open_sealed(&tidx_path, TIME_ENTRY_LEN).map(TimeIndex::new);
        let (offset_index, time_index) = match (offset_index, time_index) {
            (Ok(o), Ok(t)) => (o, t),
            _ => Self::empty_indexes(dir, base, config)?,
        };
        let mut seg = Segment::assemble(base, log_path, file, data, (offset_index, time_index));
        seg.size = size;
        let index_ok = seg.offset_index.check(size).is_ok();
        // Walk from the last indexed batch to the end to learn the end offset, checking those
        // batches whole (CRC included): the last batch's header names the next segment's base,
        // and a flipped bit there must not pass for a gap before the next segment.
        let (start_rel, start_pos) =
            if index_ok { seg.offset_index.lookup(u32::MAX) } else { (0, 0) };
        let mut walk = scan(
            &seg.data[start_pos as usize..],
            base.plus(u64::from(start_rel)),
            config.max_batch_bytes,
            None,
            Check::Full,
        );
        for item in walk.by_ref() {
            if let Err(stop) = item {
                return Err(seg.corrupt(
                    u64::from(start_pos) + stop.pos(),
                    "a damaged batch in a trusted segment",
                ));
            }
        }
        seg.next_offset = walk.next_offset();
        let time_ok = seg.time_index.check(seg.next_offset.0 - base.0).is_ok();
        if !index_ok || !time_ok {
            tracing::warn!(segment = %seg.log_path.display(), "index damaged, rebuilding");
            let (o, t) = Self::empty_indexes(dir, base, config)?;
            seg.offset_index = o;
            seg.time_index = t;
            seg.rebuild_indexes(config)?;
            seg.seal_indexes()?;
        } else if let Some((ts, rel)) = seg.time_index.last() {
            seg.max_timestamp = ts;
            seg.max_timestamp_rel = rel;
        } else if seg.size > 0 {
            seg.rebuild_max_timestamp()?;
        }
        Ok(seg)
    }

    /// Opens a segment that may hold unsynced or damaged bytes: checks every batch, cuts the
    /// file at the first bad one and rebuilds both indexes. Returns the segment (sealed state,
    /// trimmed) and where and why it was cut, if it was.
    pub(crate) fn recover(
        dir: &Path,
        base: Offset,
        config: &LogConfig,
        epochs: Option<&LeaderEpochCache>,
    ) -> Result<(Segment, Option<Stop>), StorageError> {
        let log_path = dir.join(segment_file_name(base, "log"));
        let file = open_log_file(&log_path, false)?;
        let file_len = file.metadata().at(&log_path)?.len();
        let data = map_read(&file, file_len).at(&log_path)?;
        let mut valid = 0u64;
        let mut stop = None;
        let mut walk = scan(&data, base, config.max_batch_bytes, epochs, Check::Full);
        for item in walk.by_ref() {
            match item {
                Ok(s) => valid = s.pos + s.header.total_len() as u64,
                Err(s) => stop = Some(s),
            }
        }
        let next_offset = walk.next_offset();
        let indexes = Self::empty_indexes(dir, base, config)?;
        let mut seg = Segment::assemble(base, log_path, file, data, indexes);
        seg.size = valid;
        seg.next_offset = next_offset;
        seg.active = true;
        seg.rebuild_indexes(config)?;
        seg.seal()?;
        Ok((seg, stop))
    }

    /// Writes `data` (whole batches, contiguous offsets from `base`) as the cleaned copy of the
    /// segment at `base`: `<base>.log.cleaned` with its `.index.cleaned` and `.timeindex.cleaned`,
    /// each fsynced, then the directory. Leftovers of an earlier attempt are replaced.
    pub(crate) fn write_cleaned(
        dir: &Path,
        base: Offset,
        data: &[u8],
        config: &LogConfig,
    ) -> Result<(), StorageError> {
        let path =
            |ext: &str| dir.join(format!("{}.{CLEANED_SUFFIX}", segment_file_name(base, ext)));
        let log_path = path("log");
        for p in [&log_path, &path("index"), &path("timeindex")] {
            let _ = std::fs::remove_file(p);
        }
        let file = open_log_file(&log_path, true)?;
        file.write_all_at(data, 0).at(&log_path)?;
        file.sync_all().at(&log_path)?;
        let mapped = map_read(&file, data.len() as u64).at(&log_path)?;
        let o = IndexFile::open_empty_writable(
            &path("index"),
            OFFSET_ENTRY_LEN,
            config.index_max_bytes,
        )?;
        let t = IndexFile::open_empty_writable(
            &path("timeindex"),
            TIME_ENTRY_LEN,
            config.index_max_bytes,
        )?;
        let mut seg = Segment::assemble(
            base,
            log_path,
            file,
            mapped,
            (OffsetIndex::new(o), TimeIndex::new(t)),
        );
        seg.size = data.len() as u64;
        seg.rebuild_indexes(config)?;
        seg.seal_indexes()?;
        sync_dir(dir)
    }

    /// A segment over opened files with no batches accounted yet; callers set what they know.
    fn assemble(
        base: Offset,
        log_path: PathBuf,
        file: File,
        data: Bytes,
        (offset_index, time_index): (OffsetIndex, TimeIndex),
    ) -> Segment {
        let created_ms = file
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Segment {
            base,
            log_path,
            file,
            data,
            size: 0,
            next_offset: base,
            max_timestamp: i64::MIN,
            max_timestamp_rel: 0,
            offset_index,
            time_index,
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            created_ms,
            active: false,
        }
    }

    fn empty_indexes(
        dir: &Path,
        base: Offset,
        config: &LogConfig,
    ) -> Result<(OffsetIndex, TimeIndex), StorageError> {
        let o = IndexFile::open_empty_writable(
            &dir.join(segment_file_name(base, "index")),
            OFFSET_ENTRY_LEN,
            config.index_max_bytes,
        )?;
        let t = IndexFile::open_empty_writable(
            &dir.join(segment_file_name(base, "timeindex")),
            TIME_ENTRY_LEN,
            config.index_max_bytes,
        )?;
        Ok((OffsetIndex::new(o), TimeIndex::new(t)))
    }

    /// Re-adds index entries for every batch in `[0, size)` (writable, empty indexes).
    fn rebuild_indexes(&mut self, config: &LogConfig) -> Result<(), StorageError> {
        self.max_timestamp = i64::MIN;
        self.bytes_since_offset_entry = 0;
        self.bytes_since_time_entry = 0;
        let data = self.data.slice(..self.size as usize);
        for item in scan(&data, self.base, config.max_batch_bytes, None, Check::Framing) {
            let s = item.map_err(|stop| {
                self.corrupt(stop.pos(), "framing broken while rebuilding the index")
            })?;
            self.index_batch(s.pos, &s.header, config.index_interval_bytes);
        }
        Ok(())
    }

    fn rebuild_max_timestamp(&mut self) -> Result<(), StorageError> {
        let data = self.data.slice(..self.size as usize);
        for item in scan(&data, self.base, usize::MAX, None, Check::Framing) {
            let s = item.map_err(|stop| self.corrupt(stop.pos(), "framing broken"))?;
            if s.header.max_timestamp > self.max_timestamp {
                self.max_timestamp = s.header.max_timestamp;
                self.max_timestamp_rel = self.rel(s.header.base_offset);
            }
        }
        Ok(())
    }

    fn rel(&self, offset: Offset) -> u32 {
        u32::try_from(offset.0 - self.base.0)
            .expect("invariant: relative offsets fit u32 (rolled before)")
    }

    fn corrupt(&self, position: u64, reason: &str) -> StorageError {
        StorageError::Corrupt {
            segment: self.log_path.clone(),
            position,
            reason: reason.to_string(),
        }
    }

    /// Adds index entries for a batch written at `pos` and updates the running maximum.
    fn index_batch(&mut self, pos: u64, h: &BatchHeader, interval: u64) {
        let rel = self.rel(h.base_offset);
        if pos > 0 && self.bytes_since_offset_entry >= interval {
            self.offset_index.push(rel, pos as u32);
            self.bytes_since_offset_entry = 0;
        }
        self.bytes_since_offset_entry += h.total_len() as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_rel = rel;
            if self.bytes_since_time_entry >= interval {
                self.time_index.push(h.max_timestamp, rel);
                self.bytes_since_time_entry = 0;
            }
        }
        self.bytes_since_time_entry += h.total_len() as u64;
    }

    /// Makes a sealed segment the active one again: preallocates the log and indexes and maps
    /// them for writing.
    pub(crate) fn make_active(&mut self, config: &LogConfig) -> Result<(), StorageError> {
        if self.active && self.data.len() as u64 >= config.segment_max_bytes {
            return Ok(());
        }
        let len = config.segment_max_bytes.max(self.size);
        preallocate(&self.file, len, &self.log_path)?;
        self.data = map_read(&self.file, len).at(&self.log_path)?;
        self.offset_index.file_mut().make_writable(config.index_max_bytes)?;
        self.time_index.file_mut().make_writable(config.index_max_bytes)?;
        self.active = true;
        Ok(())
    }

    fn seal_indexes(&mut self) -> Result<(), StorageError> {
        if self.size > 0 {
            let (ts, rel) = (self.max_timestamp, self.max_timestamp_rel);
            self.time_index.push(ts, rel);
        }
        self.offset_index.file_mut().seal()?;
        self.time_index.file_mut().seal()
    }

    /// Trims the files to their contents, makes them durable and maps them read-only.
    pub(crate) fn seal(&mut self) -> Result<(), StorageError> {
        self.seal_indexes()?;
        self.file.set_len(self.size).at(&self.log_path)?;
        self.file.sync_all().at(&self.log_path)?;
        self.data = map_read(&self.file, self.size).at(&self.log_path)?;
        self.active = false;
        Ok(())
    }

    /// Whether `batch_len` more bytes ending at `last_offset` belong in a new segment.
    pub(crate) fn needs_roll(
        &self,
        batch_len: usize,
        last_offset: Offset,
        config: &LogConfig,
        now_ms: i64,
    ) -> bool {
        self.size > 0
            && (self.size + batch_len as u64 > config.segment_max_bytes
                || now_ms.saturating_sub(self.created_ms) >= config.segment_ms
                || self.offset_index.is_full()
                || self.time_index.is_full()
                || last_offset.0 - self.base.0 > u64::from(u32::MAX))
    }

    /// Writes a batch (already checked, offsets stamped) at the end.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        h: &BatchHeader,
        interval: u64,
    ) -> Result<(), StorageError> {
        debug_assert!(self.active && h.base_offset == self.next_offset);
        self.file.write_all_at(batch, self.size).at(&self.log_path)?;
        let pos = self.size;
        self.size += batch.len() as u64;
        self.next_offset = h.next_offset();
        self.index_batch(pos, h, interval);
        Ok(())
    }

    /// fdatasync of the log file.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        crate::file_util::sync_data(&self.file, &self.log_path)
    }

    /// Checks the framing (and CRC when `verify_crc`) of the batch at `pos` and returns its header.
    pub(crate) fn header_at(
        &self,
        pos: u64,
        verify_crc: bool,
        max_batch_bytes: usize,
    ) -> Result<BatchHeader, StorageError> {
        let rest = &self.data[pos as usize..self.size as usize];
        let h =
            check_framing(rest, max_batch_bytes).map_err(|e| self.corrupt(pos, &e.to_string()))?;
        if verify_crc {
            validate(&rest[..h.total_len()], max_batch_bytes)
                .map_err(|e| self.corrupt(pos, &e.to_string()))?;
        }
        Ok(h)
    }

    /// The first batch of this segment that fails a full check (framing, CRC, offsets), as
    /// `(position, offset)`: where a replica that found damage while serving cuts its log.
    /// `None` if every batch checks.
    pub(crate) fn first_damaged(&self, max_batch_bytes: usize) -> Option<(u64, Offset)> {
        let data = &self.data[..self.size as usize];
        let mut walk = scan(data, self.base, max_batch_bytes, None, Check::Full);
        for item in walk.by_ref() {
            if let Err(stop) = item {
                return Some((stop.pos(), walk.next_offset()));
            }
        }
        None
    }

    /// The position of the batch holding `offset`, or of the first batch after it; `size` if none.
    pub(crate) fn position_of(
        &self,
        offset: Offset,
        max_batch_bytes: usize,
    ) -> Result<u64, StorageError> {
        if offset <= self.base {
            return Ok(0);
        }
        let target = u32::try_from(offset.0 - self.base.0).unwrap_or(u32::MAX);
        let (rel, pos) = self.offset_index.lookup(target);
        let mut pos = u64::from(pos);
        // An index entry is a hint, checked: it must land on the header of the batch it names
        // (a damaged entry pointing inside a batch, or at another one, would otherwise fail or
        // misplace every read through it). If not, walk from the segment's start.
        let lands = pos == 0
            || self
                .header_at(pos, false, max_batch_bytes)
                .is_ok_and(|h| h.base_offset == self.base.plus(u64::from(rel)));
        if !lands {
            tracing::warn!(segment = %self.log_path.display(), entry_rel = rel, entry_pos = pos, "offset index entry does not point at its batch; walking the segment instead");
            pos = 0;
        }
        while pos < self.size {
            let h = self.header_at(pos, false, max_batch_bytes)?;
            if h.last_offset() >= offset {
                break;
            }
            pos += h.total_len() as u64;
        }
        Ok(pos)
    }

    /// The bytes `[from, to)` of the log, zero-copy.
    pub(crate) fn slice(&self, from: u64, to: u64) -> Bytes {
        self.data.slice(from as usize..to as usize)
    }

    /// Where a search for the first batch with a timestamp >= `ts` may start.
    pub(crate) fn time_search_start(
        &self,
        ts: i64,
        max_batch_bytes: usize,
    ) -> Result<u64, StorageError> {
        match self.time_index.lookup(ts) {
            Some(rel) => self.position_of(self.base.plus(u64::from(rel)), max_batch_bytes),
            None => Ok(0),
        }
    }

    /// Cuts the segment before the batch holding `offset` (which must be in it); the segment
    /// must be active. Zeroes every byte from the cut to the old end (and syncs), so neither a
    /// crash nor a later append that ends on an old batch boundary can bring old batches back:
    /// the bytes past the end of an active segment are always zeros (a recovered or sealed
    /// file is trimmed, then extended with zeros when it is made active).
    pub(crate) fn truncate_to(
        &mut self,
        offset: Offset,
        config: &LogConfig,
    ) -> Result<(), StorageError> {
        let pos = self.position_of(offset, config.max_batch_bytes)?;
        if pos >= self.size {
            return Ok(());
        }
        let cut_offset = Offset(u64::from_be_bytes(
            self.data[pos as usize..pos as usize + 8].try_into().expect("invariant: 8 bytes"),
        ));
        static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
        let mut at = pos;
        while at < self.size {
            let n = (self.size - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at).at(&self.log_path)?;
            at += n as u64;
        }
        self.file.sync_data().at(&self.log_path)?;
        self.size = pos;
        self.next_offset = cut_offset;
        let rel = self.rel(cut_offset);
        self.offset_index.truncate_from(rel);
        self.time_index.truncate_from(rel);
        self.max_timestamp = i64::MIN;
        self.max_timestamp_rel = 0;
        self.rebuild_max_timestamp()?;
        self.bytes_since_offset_entry = config.index_interval_bytes;
        self.bytes_since_time_entry = config.index_interval_bytes;
        Ok(())
    }

    /// Removes the segment's files (open maps stay readable until dropped).
    pub(crate) fn delete(self) -> Result<(), StorageError> {
        for path in [
            self.log_path.clone(),
            self.offset_index.file().path().to_owned(),
            self.time_index.file().path().to_owned(),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(path, e)),
            }
        }
        Ok(())
    }

    pub(crate) fn base(&self) -> Offset {
        self.base
    }
    pub(crate) fn next_offset(&self) -> Offset {
        self.next_offset
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub(crate) fn path(&self) -> &Path {
        &self.log_path
    }
    pub(crate) fn summary(&self) -> SegmentSummary {
        SegmentSummary { size_bytes: self.size, max_timestamp: self.max_timestamp }
    }
}
