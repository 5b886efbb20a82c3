//! Log compaction (`cleanup.policy=compact`): the cleaner keeps the latest record per key in the
//! sealed segments, keeps offsets, drops tombstones after `delete.retention.ms`, never touches the
//! active segment, and swaps cleaned segments in so that a crash at any step recovers a
//! consistent log; a reader in the middle of the log while the cleaner swaps keeps reading in
//! offset order.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{EPOCH, read_all, small_config};
use silt_core::Offset;
use silt_core::batch::{BatchBuilder, BatchIter, Compression, Record, RecordIter};
use silt_storage::{IoThrottle, Log, LogConfig, SwapStep};

const NOW: i64 = 1_800_000_000_000;

fn compact_config() -> LogConfig {
    LogConfig {
        segment_max_bytes: 64 * 1024,
        max_batch_bytes: 32 * 1024,
        cleanup_compact: true,
        cleanup_delete: false,
        delete_retention_ms: 60_000,
        ..small_config()
    }
}

/// A batch of `n` records with keys `key-{(first + i) % keys}` and values `v{round}-{i}` (or
/// tombstones), at `ts`; zstd-compressed when `zstd`.
fn keyed(first: u64, n: u64, keys: u64, round: u64, ts: i64, zstd: bool) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    if zstd {
        b.set_compression(Compression::Zstd, None);
    }
    for i in 0..n {
        let k = (first + i) % keys;
        b.push(&Record {
            key: Some(Bytes::from(format!("key-{k}"))),
            value: (round != u64::MAX).then(|| Bytes::from(format!("v{round}-{k}"))),
            headers: vec![],
            timestamp_ms: ts,
        });
    }
    b.build_vec().unwrap()
}

/// Every record of the log: (offset, key, value).
fn records(log: &Log) -> Vec<(u64, String, Option<String>)> {
    let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    let mut out = Vec::new();
    for b in BatchIter::new(Bytes::from(read_all(log))) {
        for r in RecordIter::new(b.unwrap()).unwrap() {
            let r = r.unwrap();
            out.push((r.offset.0, s(r.key).unwrap(), s(r.value)));
        }
    }
    out
}

/// The latest value of every key (None: a tombstone).
fn latest(recs: &[(u64, String, Option<String>)]) -> BTreeMap<String, Option<String>> {
    recs.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect()
}

/// Plans, runs and installs one cleaning up to the log end; the bytes freed, or `None` if
/// nothing was due.
fn clean(log: &mut Log, now: i64) -> Option<u64> {
    let plan = log.clean_plan(log.log_end_offset(), now)?;
    let cleaned = plan.run(&|_, _| false, now, 64 << 20, &mut IoThrottle::new(None)).unwrap();
    Some(log.install_cleaned(cleaned).unwrap())
}

#[test]
fn a_million_records_over_a_thousand_keys_compact_to_the_latest_value_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_max_bytes: 1024 * 1024, ..compact_config() };
    let mut log = Log::open(dir.path(), config, NOW).unwrap();
    let keys = 1000;
    let per_batch = 500;
    for round in 0..(1_000_000 / per_batch) {
        let first = round * per_batch;
        let mut b = keyed(first, per_batch, keys, first / keys, NOW - 1000, round % 2 == 0);
        log.append(&mut b, EPOCH, NOW).unwrap();
    }
    assert_eq!(log.log_end_offset(), Offset(1_000_000));
    let before_bytes = log.size_bytes();
    let before = records(&log);
    assert_eq!(before.len(), 1_000_000);
    let segments = log.segment_count();
    assert!(segments > 3, "{segments} segments");
    assert!(log.dirty_ratio(log.log_end_offset(), NOW) > 0.99);

    let freed = clean(&mut log, NOW).expect("a dirty log is cleaned");
    let after = records(&log);
    // Offsets kept, order kept, the latest value of every key kept.
    assert_eq!(latest(&after), latest(&before));
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(log.log_end_offset(), Offset(1_000_000));
    assert!(log.segment_count() < segments / 4, "cleaned segments merged: {}", log.segment_count());
    // Sealed segments hold one record per key; the active segment is untouched.
    let active = log.active_base_offset().0;
    let sealed: Vec<_> = after.iter().filter(|r| r.0 < active).collect();
    let active_part: Vec<_> = before.iter().filter(|r| r.0 >= active).collect();
    assert!(sealed.len() <= 1000, "{} records left in sealed segments", sealed.len());
    assert_eq!(after.len(), sealed.len() + active_part.len());
    assert_eq!(freed, before_bytes - log.size_bytes());
    assert!(log.size_bytes() < before_bytes / 3, "{} of {before_bytes}", log.size_bytes());
    assert!(log.dirty_ratio(log.log_end_offset(), NOW) < 0.01);
    assert!(clean(&mut log, NOW).is_none(), "nothing dirty left");
    // Reopened (clean and crashed alike), the compacted log reads the same.
    log.close().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig { segment_max_bytes: 1024 * 1024, ..compact_config() },
        NOW,
    )
    .unwrap();
    assert_eq!(records(&log), after);
}

#[test]
fn repeated_cleanings_keep_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { min_cleanable_dirty_ratio: 0.01, ..compact_config() };
    let mut log = Log::open(dir.path(), config, NOW).unwrap();
    let mut sizes = Vec::new();
    for cycle in 0..30u64 {
        for round in 0..30 {
            let n = cycle * 30 + round;
            log.append(&mut keyed(n * 13, 100, 200, n, NOW, false), EPOCH, NOW).unwrap();
        }
        clean(&mut log, NOW);
        // The cleaned (sealed) part: bytes and batches below the active segment.
        let active = log.active_base_offset();
        let sealed: Vec<usize> = BatchIter::new(Bytes::from(read_all(&log)))
            .map(|b| b.unwrap())
            .filter(|b| silt_core::batch::BatchHeader::parse(b).unwrap().base_offset < active)
            .map(|b| b.len())
            .collect();
        sizes.push((sealed.iter().sum::<usize>(), sealed.len(), log.segment_count()));
    }
    // The same 200 keys over and over: the cleaned part's bytes and batches (the empty batches
    // earlier cleanings left included) and the segment count stay flat.
    for (bytes, batches, segments) in &sizes[5..] {
        assert!(*bytes < 20 * 1024, "{sizes:?}");
        assert!(*batches < 20, "{sizes:?}");
        assert!(*segments <= 3, "{sizes:?}");
    }
    let recs = records(&log);
    assert_eq!(latest(&recs).len(), 200);
}

#[test]
fn tombstones_remove_their_key_and_go_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), NOW).unwrap();
    let t0 = NOW - 10_000;
    for round in 0..20 {
        log.append(&mut keyed(0, 100, 100, round, t0, false), EPOCH, NOW).unwrap();
    }
    // Tombstones for keys 0..50, then enough records of other keys to seal them.
    log.append(&mut keyed(0, 50, 100, u64::MAX, t0, false), EPOCH, NOW).unwrap();
    for round in 0..60 {
        log.append(&mut keyed(1000, 100, 2000, 100 + round, t0, false), EPOCH, NOW).unwrap();
    }
    clean(&mut log, NOW).expect("cleaned");
    let recs = records(&log);
    let active = log.active_base_offset().0;
    for k in 0..100 {
        let key = format!("key-{k}");
        let left: Vec<_> = recs.iter().filter(|r| r.1 == key && r.0 < active).collect();
        assert_eq!(left.len(), 1, "{key}: {left:?}");
        if k < 50 {
            assert_eq!(left[0].2, None, "{key}: its tombstone stays within delete.retention.ms");
        } else {
            assert_eq!(left[0].2.as_deref(), Some(format!("v19-{k}").as_str()));
        }
    }
    // More records make the log dirty again; past delete.retention.ms the tombstones go.
    for round in 0..60 {
        log.append(&mut keyed(5000, 100, 2000, 200 + round, NOW, false), EPOCH, NOW).unwrap();
    }
    let later = t0 + 60_000 + 1;
    clean(&mut log, later).expect("cleaned again");
    let recs = records(&log);
    for k in 0..100 {
        let key = format!("key-{k}");
        let left: Vec<_> = recs.iter().filter(|r| r.1 == key).collect();
        if k < 50 {
            assert!(left.is_empty(), "{key}: the tombstone is gone: {left:?}");
        } else {
            assert_eq!(left.len(), 1, "{key}");
        }
    }
}

#[test]
fn min_ratio_lag_and_the_bound_given_keep_segments_out_of_a_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 5_000,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, NOW).unwrap();
    for round in 0..200 {
        log.append(&mut keyed(0, 100, 100, round, NOW - 1_000, false), EPOCH, NOW).unwrap();
    }
    assert!(log.segment_count() > 2);
    // Younger than min.compaction.lag.ms: nothing to clean yet.
    assert!(log.clean_plan(log.log_end_offset(), NOW).is_none());
    // Nothing below the bound (the high watermark) either.
    assert!(log.clean_plan(Offset(10), NOW + 10_000).is_none());
    let plan = log.clean_plan(log.log_end_offset(), NOW + 10_000).expect("old enough");
    assert!(plan.dirty_ratio > 0.5);
    let cleaned = plan.run(&|_, _| false, NOW, 64 << 20, &mut IoThrottle::new(None)).unwrap();
    log.install_cleaned(cleaned).unwrap();
    // Cleaned: the ratio is low until enough new dirty data arrives.
    assert!(log.clean_plan(log.log_end_offset(), NOW + 10_000).is_none());
    // A compact-only log is never shortened by retention.
    let mut aged = log.config().clone();
    aged.retention_ms = Some(1);
    log.set_config(aged).unwrap();
    assert_eq!(log.apply_retention(NOW * 2).unwrap().deleted_segments, 0);
}

#[test]
fn aborted_records_are_dropped_and_producers_keep_their_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), NOW).unwrap();
    for round in 0..100u64 {
        let mut b = BatchBuilder::new();
        b.set_producer(7, 0, (round * 10) as i32);
        for i in 0..10 {
            b.push(&Record {
                key: Some(Bytes::from(format!("p{i}"))),
                value: Some(Bytes::from(format!("r{round}"))),
                headers: vec![],
                timestamp_ms: NOW,
            });
        }
        log.append(&mut b.build_vec().unwrap(), EPOCH, NOW).unwrap();
    }
    for round in 0..100 {
        log.append(&mut keyed(0, 100, 10_000, round, NOW, false), EPOCH, NOW).unwrap();
    }
    let plan = log.clean_plan(log.log_end_offset(), NOW).unwrap();
    // Producer 7's records at offsets 500..600 are "aborted".
    let aborted = |p: i64, o: Offset| p == 7 && (500..600).contains(&o.0);
    let cleaned = plan.run(&aborted, NOW, 64 << 20, &mut IoThrottle::new(None)).unwrap();
    log.install_cleaned(cleaned).unwrap();
    let recs = records(&log);
    let p: Vec<_> = recs.iter().filter(|r| r.1.starts_with('p')).collect();
    assert_eq!(p.len(), 10, "{p:?}");
    assert!(p.iter().all(|r| r.2.as_deref() == Some("r99")));
    // Producer 7's last batch (offsets 990..1000) holds its sequence state.
    let data = Bytes::from(read_all(&log));
    let last_of_7 = BatchIter::new(data)
        .map(|b| silt_core::batch::BatchHeader::parse(&b.unwrap()).unwrap())
        .filter(|h| h.producer_id == 7)
        .last()
        .unwrap();
    assert_eq!((last_of_7.base_offset.0, last_of_7.base_sequence), (990, 990));
}

#[test]
fn a_crash_at_every_step_of_a_swap_recovers_a_consistent_log() {
    for step in [SwapStep::Written, SwapStep::Committed, SwapStep::IndexesSwapped] {
        for torn in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), compact_config(), NOW).unwrap();
            for round in 0..150 {
                log.append(&mut keyed(round * 7, 100, 300, round, NOW, round % 3 == 0), EPOCH, NOW)
                    .unwrap();
            }
            log.sync().unwrap();
            let before = records(&log);
            let end = log.log_end_offset();
            let plan = log.clean_plan(end, NOW).unwrap();
            let cleaned =
                plan.run(&|_, _| false, NOW, 64 << 20, &mut IoThrottle::new(None)).unwrap();
            let first = plan_first_segment(dir.path());
            log.install_cleaned_until(cleaned, step).unwrap();
            drop(log); // kill -9: no close
            if torn && step == SwapStep::Written {
                // The crash came while the cleaned copy was being written.
                let f = dir.path().join(format!("{first}.log.cleaned"));
                let len = std::fs::metadata(&f).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
            }
            let log = Log::open(dir.path(), compact_config(), NOW).unwrap();
            assert!(!log.damaged_on_open(), "{step:?}");
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .collect();
            assert!(leftovers.is_empty(), "{step:?}: {leftovers:?}");
            let after = records(&log);
            assert_eq!(log.log_end_offset(), end, "{step:?}");
            assert_eq!(latest(&after), latest(&before), "{step:?}");
            assert!(after.windows(2).all(|w| w[0].0 < w[1].0), "{step:?}");
            let first_seg_records =
                |r: &[(u64, String, Option<String>)]| r.iter().filter(|x| x.0 < 1000).count();
            if step == SwapStep::Written {
                assert_eq!(after, before, "an uncommitted swap is undone");
            } else {
                assert!(
                    first_seg_records(&after) < first_seg_records(&before),
                    "{step:?}: a committed swap is finished"
                );
            }
            // The rest of the cleaning can be done again after the restart.
            let mut log = log;
            clean(&mut log, NOW);
            assert_eq!(latest(&records(&log)), latest(&before));
        }
    }
}

/// The base of the first segment file in `dir`, as its 20-digit name.
fn plan_first_segment(dir: &std::path::Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".log").map(String::from))
        .collect();
    names.sort();
    names.remove(0)
}

#[test]
fn a_reader_keeps_reading_in_offset_order_across_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), NOW).unwrap();
    for round in 0..150 {
        log.append(&mut keyed(round * 3, 100, 500, round, NOW, false), EPOCH, NOW).unwrap();
    }
    let end = log.log_end_offset();
    let plan = log.clean_plan(end, NOW).unwrap();
    // The reader takes its first chunk, the cleaner swaps, the reader goes on from where it was
    // (its first chunk stays readable: it holds the old map).
    let first = log.read(Offset(0), 64 * 1024).unwrap();
    let cleaned = plan.run(&|_, _| false, NOW, 64 << 20, &mut IoThrottle::new(None)).unwrap();
    log.install_cleaned(cleaned).unwrap();
    let mut data = first.data.to_vec();
    let mut at = first.next_offset;
    while at < end {
        let r = log.read(at, 64 * 1024).unwrap();
        assert!(r.next_offset > at);
        data.extend_from_slice(&r.data);
        at = r.next_offset;
    }
    let mut last: Option<u64> = None;
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    for b in BatchIter::new(Bytes::from(data)) {
        for r in RecordIter::new(b.unwrap()).unwrap() {
            let r = r.unwrap();
            assert!(last.is_none_or(|l| r.offset.0 > l), "offsets rise");
            last = Some(r.offset.0);
            let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let prev = per_key.insert(k, r.offset.0);
            assert!(prev.is_none_or(|p| p < r.offset.0));
        }
    }
    assert_eq!(per_key.len(), 500, "every key seen");
}

#[test]
fn markers_go_once_their_transaction_has_nothing_left_and_the_horizon_passed() {
    use silt_core::batch::{CONTROL_FLAG, Marker};
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), NOW).unwrap();
    let old = NOW - 3_600_000;
    let txn = |log: &mut Log, producer: i64, seq: i32, tag: &str, ts: i64| {
        let mut b = BatchBuilder::new();
        b.set_producer(producer, 0, seq);
        b.set_transactional();
        for i in 0..10 {
            b.push(&Record {
                key: Some(Bytes::from(format!("t{producer}-{i}"))),
                value: Some(Bytes::from(tag.to_string())),
                headers: vec![],
                timestamp_ms: ts,
            });
        }
        log.append(&mut b.build_vec().unwrap(), EPOCH, NOW).unwrap().base_offset
    };
    let marker = |log: &mut Log, producer: i64, commit: bool, ts: i64| {
        let m = Marker { commit, producer_id: producer, producer_epoch: 0, coordinator_epoch: 1 };
        log.append(&mut m.encode(ts), EPOCH, NOW).unwrap().base_offset
    };
    txn(&mut log, 7, 0, "first", old);
    let first_marker = marker(&mut log, 7, true, old);
    let aborted_from = txn(&mut log, 7, 10, "aborted", old);
    let abort_marker = marker(&mut log, 7, false, old);
    txn(&mut log, 7, 20, "second", old);
    let last_marker = marker(&mut log, 7, true, old);
    // Producer 8: a superseded transaction whose marker is recent, then a later one.
    txn(&mut log, 8, 0, "first", NOW);
    let recent_marker = marker(&mut log, 8, true, NOW);
    txn(&mut log, 8, 10, "second", NOW);
    marker(&mut log, 8, true, NOW);
    for round in 0..100 {
        log.append(&mut keyed(0, 100, 10_000, round, NOW, false), EPOCH, NOW).unwrap();
    }
    let plan = log.clean_plan(log.log_end_offset(), NOW).unwrap();
    let aborted = |p: i64, o: Offset| p == 7 && o >= aborted_from && o <= abort_marker;
    let cleaned = plan.run(&aborted, NOW, 64 << 20, &mut IoThrottle::new(None)).unwrap();
    log.install_cleaned(cleaned).unwrap();
    let markers: Vec<u64> = BatchIter::new(Bytes::from(read_all(&log)))
        .map(|b| silt_core::batch::BatchHeader::parse(&b.unwrap()).unwrap())
        .filter(|h| h.attributes & CONTROL_FLAG != 0)
        .map(|h| h.base_offset.0)
        .collect();
    // Producer 7's first commit and its abort: nothing of their transactions is left and they
    // are old: gone. Its last marker stays (the producer's last batch), and so do producer 8's
    // (recent, and the second one's records are there).
    assert!(!markers.contains(&first_marker.0), "{markers:?}");
    assert!(!markers.contains(&abort_marker.0), "{markers:?}");
    assert!(markers.contains(&last_marker.0), "{markers:?}");
    assert!(markers.contains(&recent_marker.0), "{markers:?}");
    assert_eq!(markers.len(), 3, "{markers:?}");
    let recs = records(&log);
    let t7: Vec<_> = recs.iter().filter(|r| r.1.starts_with("t7-")).collect();
    assert_eq!(t7.len(), 10);
    assert!(t7.iter().all(|r| r.2.as_deref() == Some("second")));
}
