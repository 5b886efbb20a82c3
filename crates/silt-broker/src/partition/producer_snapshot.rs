//! Producer-state snapshots (Kafka's `.snapshot` files): the idempotent producers' state of a
//! partition as of a log offset, written when the active segment rolls, so a rebuild reads the
//! newest snapshot and replays only the log after it instead of the whole log. A snapshot is a
//! cache of what the log says: a missing, damaged or stale one only makes the rebuild longer.
//!
//! `<dir>/<offset, 20 digits>.snapshot` holds the state of every batch below `offset`. The
//! layout (big-endian, drawn in `docs/format.md`):
//!
//! ```text
//! magic "SILTPSNP" | version u16 = 2 | crc32 u32 (IEEE, over every byte after it)
//! | offset u64 | producers u32 | producers × (
//!     producer_id i64 | epoch i16 | last_timestamp_ms i64 | batches u8 (<= 5)
//!     | batches × (first_seq i32 | last_seq i32 | base_offset u64 | last_offset u64) )
//! | open u32 | open × (producer_id i64 | first_offset u64)
//! | aborted u32 | aborted × (producer_id i64 | first_offset u64 | last_offset u64)
//! ```
//!
//! Version 2 adds the transactions (open ones and the aborted spans still in the log: the
//! partition's aborted-transaction index, one copy per rolled segment) and allows a producer
//! with no batches (a transaction marker moved it to a new epoch). Version 1 files are read as
//! having no transactions.
//!
//! Snapshots above the log's end are deleted when the log opens and before any truncation (a
//! log that grew again past a stale snapshot's offset would otherwise trust it); only the
//! newest [`KEEP`] are kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use silt_core::Offset;
use silt_core::stable::{AbortedTxn, Transactions};

use super::producers::{Appended, Entry, Producers, WINDOW};

const MAGIC: &[u8; 8] = b"SILTPSNP";
const VERSION: u16 = 2;
const SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition.
pub const KEEP: usize = 3;
/// A snapshot larger than this is not read (about 1.4 M producers at full windows).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
const HEADER_BYTES: usize = 8 + 2 + 4 + 8 + 4;
const ENTRY_BYTES: usize = 8 + 2 + 8 + 1;
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;
const OPEN_BYTES: usize = 8 + 8;
const ABORTED_BYTES: usize = 8 + 8 + 8;

fn file_name(offset: Offset) -> String {
    format!("{:020}{SUFFIX}", offset.0)
}

/// The snapshots in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(Offset, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(Offset, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let stem = name.to_str()?.strip_suffix(SUFFIX)?;
            (stem.len() == 20).then_some(())?;
            Some((Offset(stem.parse().ok()?), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Deletes the snapshots above `end` (all of them with `None`); failures are logged (a
/// snapshot that stays would be trusted later, so the caller's truncation must not depend on
/// it: see [`load_newest`], which also skips those above the log's end).
pub fn delete_above(dir: &Path, end: Option<Offset>) {
    for (offset, path) in list(dir) {
        if end.is_none_or(|e| offset > e)
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a producer snapshot");
        }
    }
}

/// Writes the state as of `offset` (every batch below it recorded), then keeps the newest
/// [`KEEP`]. Written to a temporary file, synced, renamed: a crash leaves no torn snapshot
/// under the real name (and the checksum catches one anyway).
pub fn write(dir: &Path, offset: Offset, producers: &Producers) -> std::io::Result<()> {
    let bytes = encode(offset, producers);
    let path = dir.join(file_name(offset));
    let tmp = dir.join(format!("{}.tmp", file_name(offset)));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    let all = list(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(KEEP)) {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// The newest readable snapshot at or below `end`, with its offset; damaged ones are logged
/// and skipped (an older one, or none, is used).
pub fn load_newest(dir: &Path, end: Offset) -> Option<(Offset, Producers)> {
    for (offset, path) in list(dir).into_iter().rev() {
        if offset > end {
            continue;
        }
        match read(&path) {
            Ok((at, p)) if at == offset => return Some((offset, p)),
            Ok((at, _)) => {
                tracing::warn!(path = %path.display(), inside = at.0, "producer snapshot names another offset than it holds; skipped");
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "damaged producer snapshot skipped");
            }
        }
    }
    None
}

fn read(path: &Path) -> Result<(Offset, Producers), String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes, more than the {MAX_FILE_BYTES} allowed"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode(&bytes)
}

pub(super) fn encode(offset: Offset, producers: &Producers) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(HEADER_BYTES + producers.len() * (ENTRY_BYTES + 2 * BATCH_BYTES));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // the checksum, filled in last
    out.extend_from_slice(&offset.0.to_be_bytes());
    let mut entries: Vec<(&i64, &Entry)> = producers.entries().collect();
    entries.sort_by_key(|(id, _)| **id);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (id, e) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
        out.push(e.batches.len() as u8);
        for b in &e.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.0.to_be_bytes());
            out.extend_from_slice(&b.last_offset.0.to_be_bytes());
        }
    }
    let open: Vec<(i64, u64)> = producers.txns.open().collect();
    out.extend_from_slice(&(open.len() as u32).to_be_bytes());
    for (id, first) in open {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&first.to_be_bytes());
    }
    let aborted = producers.txns.aborted();
    out.extend_from_slice(&(aborted.len() as u32).to_be_bytes());
    for a in aborted {
        out.extend_from_slice(&a.producer_id.to_be_bytes());
        out.extend_from_slice(&a.first_offset.to_be_bytes());
        out.extend_from_slice(&a.last_offset.to_be_bytes());
    }
    let crc = crc32fast::hash(&out[14..]);
    out[10..14].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A bounds-checked reader over the snapshot's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err("truncated".into());
        };
        self.bytes = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take()?))
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<(Offset, Producers), String> {
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err("not a producer snapshot".into());
    }
    let mut r = Reader { bytes: &bytes[8..] };
    let version = u16::from_be_bytes(r.take()?);
    if version != 1 && version != VERSION {
        return Err(format!("version {version}, this broker reads 1 and {VERSION}"));
    }
    let crc = r.u32()?;
    if crc32fast::hash(&bytes[14..]) != crc {
        return Err("checksum mismatch".into());
    }
    let offset = Offset(r.u64()?);
    let count = r.u32()? as usize;
    // Every entry takes at least ENTRY_BYTES: a count the file cannot hold is refused before
    // anything is allocated for it.
    if count > r.bytes.len() / ENTRY_BYTES {
        return Err(format!("{count} producers do not fit in {} bytes", r.bytes.len()));
    }
    let mut producers = Producers::default();
    for _ in 0..count {
        let id = r.i64()?;
        let epoch = r.i16()?;
        let last_timestamp_ms = r.i64()?;
        let n = usize::from(r.u8()?);
        if (n == 0 && version == 1) || n > WINDOW {
            return Err(format!("producer {id} has {n} batches (at most {WINDOW} allowed)"));
        }
        let mut entry = Entry::new(epoch, last_timestamp_ms);
        for _ in 0..n {
            entry.batches.push_back(Appended {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: Offset(r.u64()?),
                last_offset: Offset(r.u64()?),
            });
        }
        if id < 0 || producers.insert(id, entry).is_some() {
            return Err(format!("producer id {id} is negative or repeated"));
        }
    }
    if version >= 2 {
        producers.txns = read_transactions(&mut r)?;
    }
    if !r.bytes.is_empty() {
        return Err(format!("{} bytes after the last entry", r.bytes.len()));
    }
    Ok((offset, producers))
}

/// Version 2's open and aborted transactions (counts checked against the bytes left first).
fn read_transactions(r: &mut Reader<'_>) -> Result<Transactions, String> {
    let open = r.u32()? as usize;
    if open > r.bytes.len() / OPEN_BYTES {
        return Err(format!("{open} open transactions do not fit in {} bytes", r.bytes.len()));
    }
    let mut opened = Vec::with_capacity(open);
    for _ in 0..open {
        opened.push((r.i64()?, r.u64()?));
    }
    let aborted = r.u32()? as usize;
    if aborted > r.bytes.len() / ABORTED_BYTES {
        return Err(format!("{aborted} aborted spans do not fit in {} bytes", r.bytes.len()));
    }
    let mut spans = Vec::with_capacity(aborted);
    for _ in 0..aborted {
        let (producer_id, first_offset, last_offset) = (r.i64()?, r.u64()?, r.u64()?);
        if last_offset < first_offset {
            return Err(format!("aborted span {first_offset}..{last_offset} is backwards"));
        }
        spans.push(AbortedTxn { producer_id, first_offset, last_offset });
    }
    Ok(Transactions::restore(opened, spans))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use silt_core::LeaderEpoch;
    use silt_core::batch::{BatchBuilder, Record};
    use silt_storage::{Log, LogConfig};

    use super::*;

    /// A log of small segments holding `batches` batches of 2 records from producer 7 and, on
    /// every third batch, one from producer 8.
    fn log_with(dir: &Path, batches: i32) -> Log {
        let config =
            LogConfig { segment_max_bytes: 1024, max_batch_bytes: 1024, ..LogConfig::default() };
        let mut log = Log::open(dir, config, 1_000).unwrap();
        let mut seq = [0i32; 2];
        for i in 0..batches {
            for (slot, id) in [(0usize, 7i64), (1, 8)] {
                if id == 8 && i % 3 != 0 {
                    continue;
                }
                let mut b = BatchBuilder::new();
                b.push(&Record::value(Bytes::from(vec![i as u8; 100]), 1_000));
                b.push(&Record::value(Bytes::from(vec![i as u8; 100]), 1_000));
                let mut data = b.build_vec().unwrap();
                assert!(silt_core::batch::stamp_producer(&mut data, id, 0, seq[slot]));
                seq[slot] += 2;
                log.append(&mut data, LeaderEpoch(0), 1_000).unwrap();
            }
        }
        log
    }

    #[test]
    fn a_snapshot_reads_back_as_written_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 12);
        let p = Producers::rebuild(&log).unwrap();
        assert_eq!(p.len(), 2);
        let bytes = encode(Offset(40), &p);
        assert_eq!(decode(&bytes), Ok((Offset(40), p.clone())));
        for at in [0, 9, 12, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "a flipped byte at {at} is refused");
        }
        assert!(decode(&bytes[..bytes.len() - 3]).is_err(), "a torn snapshot is refused");
        // A count the file cannot hold is refused before anything is allocated for it.
        let mut lying = bytes[..HEADER_BYTES].to_vec();
        lying[22..26].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32fast::hash(&lying[14..]);
        lying[10..14].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&lying).unwrap_err().contains("do not fit"));
    }

    #[test]
    fn transactions_survive_a_snapshot_and_version_1_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 3);
        let mut p = Producers::rebuild(&log).unwrap();
        p.txns = Transactions::restore(
            [(7, 40)],
            vec![AbortedTxn { producer_id: 8, first_offset: 3, last_offset: 9 }],
        );
        // A marker left producer 9 at a new epoch with no batches.
        p.insert(9, Entry::new(4, 1_000));
        let bytes = encode(Offset(50), &p);
        assert_eq!(decode(&bytes), Ok((Offset(50), p.clone())));
        // Version 1: no transactions, every producer with batches.
        let mut v1 = p.clone();
        v1.txns = Transactions::default();
        v1.by_id_mut().remove(&9);
        let mut old = encode(Offset(50), &v1);
        let end = old.len() - 8; // the two empty transaction counts
        old.truncate(end);
        old[8..10].copy_from_slice(&1u16.to_be_bytes());
        let crc = crc32fast::hash(&old[14..]);
        old[10..14].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&old), Ok((Offset(50), v1)));
    }

    #[test]
    fn a_rebuild_from_a_snapshot_equals_one_from_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with(dir.path(), 8);
        let at = log.log_end_offset();
        write(dir.path(), at, &Producers::rebuild(&log).unwrap()).unwrap();
        // More batches after the snapshot, then the snapshot's view plus the replayed tail.
        let mut seq = 16;
        for i in 0..6 {
            let mut b = BatchBuilder::new();
            b.push(&Record::value(Bytes::from(vec![i; 100]), 2_000));
            b.push(&Record::value(Bytes::from(vec![i; 100]), 2_000));
            let mut data = b.build_vec().unwrap();
            assert!(silt_core::batch::stamp_producer(&mut data, 7, 0, seq));
            seq += 2;
            log.append(&mut data, LeaderEpoch(0), 2_000).unwrap();
        }
        let from_snapshot = Producers::rebuild(&log).unwrap();
        for (_, path) in list(dir.path()) {
            std::fs::remove_file(path).unwrap();
        }
        let from_log = Producers::rebuild(&log).unwrap();
        assert_eq!(from_snapshot, from_log);
        // Producer 7's window is the last five batches, the newest at the log's end.
        let e = from_log.entries().find(|(id, _)| **id == 7).unwrap().1;
        assert_eq!(e.batches.len(), WINDOW);
        assert_eq!(e.batches.back().unwrap().last_offset, Offset(log.log_end_offset().0 - 1));
    }

    #[test]
    fn a_snapshot_keeps_the_state_of_segments_deleted_by_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with(dir.path(), 12);
        assert!(log.segment_count() > 3, "small segments: {}", log.segment_count());
        let whole = Producers::rebuild(&log).unwrap();
        let end = log.log_end_offset();
        write(dir.path(), end, &whole).unwrap();
        log.delete_segments_before(end).unwrap();
        assert!(log.log_start_offset() > Offset::ZERO);
        // Producer 8 last wrote in a deleted segment; the snapshot still knows it.
        assert_eq!(Producers::rebuild(&log).unwrap(), whole);
    }

    #[test]
    fn stale_and_damaged_snapshots_are_skipped_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 6);
        let p = Producers::rebuild(&log).unwrap();
        for at in 1..=5u64 {
            write(dir.path(), Offset(at), &p).unwrap();
        }
        let kept: Vec<Offset> = list(dir.path()).into_iter().map(|(o, _)| o).collect();
        assert_eq!(kept, vec![Offset(3), Offset(4), Offset(5)]);
        // Above the log's end: never used, and deleted when asked.
        assert_eq!(load_newest(dir.path(), Offset(4)).map(|(o, _)| o), Some(Offset(4)));
        delete_above(dir.path(), Some(Offset(4)));
        assert_eq!(list(dir.path()).len(), 2);
        // A damaged newest one falls back to the one before.
        std::fs::write(dir.path().join(file_name(Offset(4))), b"SILTPSNP garbage").unwrap();
        assert_eq!(load_newest(dir.path(), Offset(10)).map(|(o, _)| o), Some(Offset(3)));
        delete_above(dir.path(), None);
        assert!(list(dir.path()).is_empty());
    }
}
