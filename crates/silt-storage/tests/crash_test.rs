//! Crash recovery proofs: cut the active segment at every byte position across the last batches,
//! and flip single bits in them; after reopening, exactly the whole valid batches before the
//! damage remain, nothing after it is served, and appends continue at the next offset.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use silt_core::Offset;
use silt_core::batch::BatchHeader;
use silt_storage::{Log, segment_file_name};

/// A crashed log directory and what its active segment holds.
struct Crashed {
    dir: tempfile::TempDir,
    active_log: String,
    /// (position in the active segment, total length, base offset, next offset) of each batch.
    batches: Vec<(usize, usize, Offset, Offset)>,
    /// Everything readable before the crash, from the log start.
    all_bytes: Vec<u8>,
    /// Bytes of `all_bytes` that precede the active segment.
    before_active: usize,
}

/// Builds a log that spans sealed segments, syncs a prefix, appends a few unsynced batches to
/// the active segment, and "crashes" (drops it without closing).
fn crashed_log() -> Crashed {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    for i in 0..60 {
        log.append(&mut batch(&format!("s{i}"), 3, 120, i), EPOCH, 0).unwrap();
    }
    log.sync().unwrap();
    for i in 0..3 {
        log.append(&mut batch(&format!("t{i}"), 2 + i, 40, 100 + i as i64), EPOCH, 0).unwrap();
    }
    let active = *log.segment_bases().last().unwrap();
    assert!(log.segment_count() > 1, "the test needs sealed segments too");
    let all_bytes = read_all(&log);
    drop(log);
    let active_log = segment_file_name(active, "log");
    let data = std::fs::read(dir.path().join(&active_log)).unwrap();
    let mut batches = Vec::new();
    let mut pos = 0;
    while let Some(h) = BatchHeader::parse(&data[pos..]).filter(|h| h.batch_length > 0) {
        batches.push((pos, h.total_len(), h.base_offset, h.next_offset()));
        pos += h.total_len();
    }
    let active_len: usize = batches.iter().map(|b| b.1).sum();
    let before_active = all_bytes.len() - active_len;
    Crashed { dir, active_log, batches, all_bytes, before_active }
}

fn fresh_copy(c: &Crashed, scratch: &Path, n: usize) -> PathBuf {
    let to = scratch.join(format!("case{n}"));
    copy_dir(c.dir.path(), &to);
    to
}

/// Reopens `dir`, checks the log holds exactly `keep` batches of the active segment, and that
/// appends continue (and survive another crash).
fn check_recovered(c: &Crashed, dir: &Path, keep: usize, what: &str) {
    let mut log =
        Log::open(dir, small_config(), 0).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let kept_bytes: usize = c.batches[..keep].iter().map(|b| b.1).sum();
    let expected_end = if keep == 0 { c.batches[0].2 } else { c.batches[keep - 1].3 };
    assert_eq!(log.log_end_offset(), expected_end, "{what}: log end");
    assert_eq!(read_all(&log), c.all_bytes[..c.before_active + kept_bytes], "{what}: contents");
    let info = log.append(&mut batch("after", 1, 5, 0), EPOCH, 0).unwrap();
    assert_eq!(info.base_offset, expected_end, "{what}: next append offset");
    drop(log);
    let log = Log::open(dir, small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), expected_end.next(), "{what}: after a second crash");
}

/// The number of leading batches of the active segment whose bytes are all still present and
/// unchanged in `damaged` (a zeroed tail that was already zero leaves a batch whole).
fn intact(c: &Crashed, original: &[u8], damaged: &[u8]) -> usize {
    c.batches
        .iter()
        .take_while(|b| damaged.get(b.0..b.0 + b.1) == Some(&original[b.0..b.0 + b.1]))
        .count()
}

#[test]
fn a_cut_at_every_byte_of_the_last_batches_keeps_exactly_the_whole_batches_before_it() {
    let c = crashed_log();
    let scratch = tempfile::tempdir().unwrap();
    let n = c.batches.len();
    let first = c.batches[n - 3].0;
    let end = c.batches[n - 1].0 + c.batches[n - 1].1;
    for cut in first..=end {
        let dir = fresh_copy(&c, scratch.path(), cut);
        let path = dir.join(&c.active_log);
        let original = std::fs::read(&path).unwrap();
        let mut data = original.clone();
        if cut % 2 == 0 {
            // A torn write: the file is preallocated, the pages past the cut never reached disk.
            data[cut..].fill(0);
        } else {
            // A file that was never grown past the cut.
            data.truncate(cut);
        }
        std::fs::write(&path, &data).unwrap();
        let keep = intact(&c, &original, &data);
        assert!(keep >= c.batches.iter().take_while(|b| b.0 + b.1 <= cut).count());
        check_recovered(&c, &dir, keep, &format!("cut at {cut}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_single_flipped_bit_anywhere_in_the_last_batches_cuts_the_log_before_that_batch() {
    let c = crashed_log();
    let scratch = tempfile::tempdir().unwrap();
    let n = c.batches.len();
    for (i, &(pos, len, _, _)) in c.batches.iter().enumerate().skip(n - 3) {
        for byte in pos..pos + len {
            let dir = fresh_copy(&c, scratch.path(), byte);
            let path = dir.join(&c.active_log);
            let mut data = std::fs::read(&path).unwrap();
            data[byte] ^= 1 << (byte % 8);
            std::fs::write(&path, &data).unwrap();
            check_recovered(&c, &dir, i, &format!("bit {} of byte {byte} (batch {i})", byte % 8));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn garbage_after_the_last_batch_is_cut_away() {
    let c = crashed_log();
    let scratch = tempfile::tempdir().unwrap();
    let dir = fresh_copy(&c, scratch.path(), 0);
    let path = dir.join(&c.active_log);
    let mut data = std::fs::read(&path).unwrap();
    let end = c.batches.last().map(|b| b.0 + b.1).unwrap();
    data[end..end + 100].fill(0xa5);
    std::fs::write(&path, &data).unwrap();
    check_recovered(&c, &dir, c.batches.len(), "garbage tail");
}
