//! Behaviour of a partition log: appends, reads, rolls, reopen, truncation, retention, epochs.

mod common;

use common::*;
use silt_core::batch::{BatchHeader, CRC_POS};
use silt_core::{LeaderEpoch, Offset};
use silt_storage::{Log, LogConfig, StorageError};

#[test]
fn append_assigns_consecutive_offsets_and_read_returns_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    let mut expected = Vec::new();
    for i in 0..5u64 {
        let mut b = batch(&format!("b{i}"), 3, 10, 1000 + i as i64);
        let info = log.append(&mut b, EPOCH, 0).unwrap();
        assert_eq!(info.base_offset, Offset(i * 3));
        assert_eq!(info.last_offset, Offset(i * 3 + 2));
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (Offset(i * 3), EPOCH));
        expected.extend_from_slice(&b);
    }
    assert_eq!(log.log_end_offset(), Offset(15));
    assert_eq!(read_all(&log), expected);
    // A read from the middle of a batch starts at that batch.
    let r = log.read(Offset(4), 1 << 20).unwrap();
    assert_eq!(r.first_offset, Offset(3));
    assert_eq!(values(&r.data)[0], (Offset(3), "b1-0".to_string()));
}

#[test]
fn read_respects_max_bytes_but_always_returns_one_batch_and_stops_below_upper() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    let mut sizes = Vec::new();
    for i in 0..4 {
        let mut b = batch("x", 2, 100, i);
        sizes.push(b.len());
        log.append(&mut b, EPOCH, 0).unwrap();
    }
    let one = log.read(Offset(0), 1).unwrap();
    assert_eq!(one.data.len(), sizes[0]);
    assert_eq!(one.next_offset, Offset(2));
    let two = log.read(Offset(0), sizes[0] + sizes[1]).unwrap();
    assert_eq!(two.next_offset, Offset(4));
    let below = log.read_upto(Offset(0), 1 << 20, Offset(5)).unwrap();
    assert_eq!(below.next_offset, Offset(4), "the batch holding offset 5 is not below the limit");
    let nothing = log.read_upto(Offset(4), 1 << 20, Offset(5)).unwrap();
    assert!(nothing.data.is_empty());
    let at_end = log.read(Offset(8), 100).unwrap();
    assert!(at_end.data.is_empty());
}

#[test]
fn offsets_out_of_range_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    log.append(&mut batch("x", 2, 10, 0), EPOCH, 0).unwrap();
    assert!(matches!(
        log.read(Offset(3), 10),
        Err(StorageError::OffsetOutOfRange { offset: Offset(3), .. })
    ));
}

#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    log.append(&mut batch("x", 2, 10, 0), EPOCH, 0).unwrap();
    let mut bad = batch("y", 2, 10, 0);
    bad[CRC_POS] ^= 1;
    assert!(matches!(log.append(&mut bad, EPOCH, 0), Err(StorageError::InvalidBatch(_))));
    let mut huge = batch("z", 1, 9000, 0);
    assert!(matches!(log.append(&mut huge, EPOCH, 0), Err(StorageError::BatchTooLarge { .. })));
    assert!(matches!(
        log.append(&mut batch("w", 1, 1, 0), LeaderEpoch(0), 0),
        Err(StorageError::StaleEpoch { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(values(&read_all(&log)).len(), 2);
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), LogConfig { segment_ms: 1000, ..small_config() }, 0).unwrap();
    for i in 0..40 {
        log.append(&mut batch("s", 4, 200, i), EPOCH, 0).unwrap();
    }
    let by_size = log.segment_count();
    assert!(by_size >= 3, "40 x ~850 B batches in 16 KiB segments: {by_size} segments");
    log.append(&mut batch("t", 1, 10, 0), EPOCH, 1500).unwrap();
    assert_eq!(log.segment_count(), by_size + 1, "an old active segment rolls");
    for name in
        ["00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex"]
    {
        assert!(d.path().join(name).exists(), "{name}");
    }
    let all = values(&read_all(&log));
    assert_eq!(all.len(), 161);
    assert!(all.iter().enumerate().all(|(i, (o, _))| o.0 == i as u64));
}

/// After a clean close only the batches after each segment's last index entry are checked
/// whole at open (see the sealed-segment damage test); damage further back is not scanned for,
/// but the read-time CRC check never serves it.
#[test]
fn clean_reopen_keeps_everything_and_does_not_scan() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..30 {
        log.append(&mut batch("c", 3, 100, i), EPOCH, 0).unwrap();
    }
    let before = read_all(&log);
    let end = log.log_end_offset();
    let active = *log.segment_bases().last().unwrap();
    log.close().unwrap();
    assert!(d.path().join("clean-shutdown").exists());

    // Damage the payload of the active segment's first batch (before its last index entry):
    // a scan would cut it, a clean open does not look there.
    let path = d.path().join(silt_storage::segment_file_name(active, "log"));
    let mut bytes = std::fs::read(&path).unwrap();
    let first_len = BatchHeader::parse(&bytes).unwrap().total_len();
    assert!(first_len < bytes.len(), "the active segment needs more than one batch");
    bytes[first_len - 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert!(!d.path().join("clean-shutdown").exists(), "marker consumed on open");
    assert!(!log.damaged_on_open());
    assert_eq!(log.log_end_offset(), end, "no scan there, so the damaged batch is still counted");
    // ...but it is never served: the read-time CRC check reports it.
    let damaged = log.read(active, 1 << 20);
    assert!(matches!(damaged, Err(StorageError::Corrupt { .. })), "{damaged:?}");
    assert_eq!(read_all_until(&log, active), before[..before.len() - bytes.len()]);
}

fn read_all_until(log: &Log, upper: Offset) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < upper {
        let r = log.read_upto(at, 1 << 20, upper).unwrap();
        out.extend_from_slice(&r.data);
        at = r.next_offset;
    }
    out
}

#[test]
fn unclean_reopen_after_appends_and_syncs_keeps_synced_data() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..50 {
        log.append(&mut batch("u", 2, 150, i), EPOCH, 0).unwrap();
        if i % 7 == 0 {
            assert_eq!(log.sync().unwrap(), log.log_end_offset());
        }
    }
    let before = read_all(&log);
    drop(log); // crash: no close
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!(read_all(&log), before, "the page cache survived, so nothing is cut");
    assert_eq!(log.log_end_offset(), Offset(100));
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after_the_time() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    // Timestamps 0, 10, 20, ... one batch of 2 records each (both records share the time).
    for i in 0..60 {
        log.append(&mut batch("t", 2, 300, i * 10), EPOCH, 0).unwrap();
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.offset_for_timestamp(-5).unwrap(), Some((Offset(0), 0)));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((Offset(0), 0)));
    assert_eq!(log.offset_for_timestamp(1).unwrap(), Some((Offset(2), 10)));
    assert_eq!(log.offset_for_timestamp(255).unwrap(), Some((Offset(52), 260)));
    assert_eq!(log.offset_for_timestamp(590).unwrap(), Some((Offset(118), 590)));
    assert_eq!(log.offset_for_timestamp(591).unwrap(), None);
    // The same answers after a clean reopen (indexes read back from disk).
    let dir = log.dir().to_owned();
    log.close().unwrap();
    let log = Log::open(&dir, small_config(), 0).unwrap();
    assert_eq!(log.offset_for_timestamp(255).unwrap(), Some((Offset(52), 260)));
    assert_eq!(log.offset_for_timestamp(590).unwrap(), Some((Offset(118), 590)));
}

#[test]
fn truncation_removes_the_suffix_durably_and_appends_continue() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..40 {
        let epoch = if i < 30 { EPOCH } else { LeaderEpoch(2) };
        log.append(&mut batch("a", 2, 200, i), epoch, 0).unwrap();
    }
    assert_eq!(log.end_offset_for_epoch(EPOCH), Some((EPOCH, Offset(60))));
    let segs = log.segment_count();
    // Offset 21 is inside the batch [20, 21]: the whole batch goes.
    assert_eq!(log.truncate_to(Offset(21)).unwrap(), Offset(20));
    assert!(log.segment_count() < segs);
    assert_eq!(log.epochs().latest_epoch(), Some(EPOCH), "epoch 2 started past the cut");
    assert_eq!(
        log.append(&mut batch("b", 1, 10, 0), LeaderEpoch(3), 0).unwrap().base_offset,
        Offset(20)
    );
    let vals = values(&read_all(&log));
    assert_eq!(vals.len(), 21);
    assert_eq!(vals[20].1, "b-0");
    // A crash right after: the truncated batches must not come back.
    drop(log);
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(21));
    assert_eq!(values(&read_all(&log))[20].1, "b-0");
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(2)), Some((EPOCH, Offset(20))));
}

/// Truncation removes the bytes of every cut batch, not only the first one's header: when the
/// next append is exactly as long as the batch it replaces, the old batches after it line up with
/// the expected offsets, and a crash before a clean close must not bring them back.
#[test]
fn truncated_batches_stay_gone_when_an_equal_sized_append_lines_them_up_again() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..10 {
        log.append(&mut batch("a", 1, 50, i), EPOCH, 0).unwrap();
    }
    assert_eq!(log.segment_count(), 1, "the test needs the cut inside one segment");
    assert_eq!(log.truncate_to(Offset(5)).unwrap(), Offset(5));
    // Same length as the batch it replaces: the old batch 6 now follows where a batch 6 would.
    log.append(&mut batch("x", 1, 50, 5), EPOCH, 0).unwrap();
    drop(log); // a crash: no clean-shutdown marker, the active segment is scanned
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(6), "{:?}", values(&read_all(&log)));
    assert_eq!(values(&read_all(&log))[5].1, "x-0");
}

/// A flipped `last_offset_delta` in the last batch of a sealed segment (not the last one), after
/// a clean close: the batch fails its CRC, so that segment is cut before it, the log reports
/// itself damaged (the broker then re-fetches from the leader), and the later segments, which
/// no longer follow, are moved to a quarantine directory with their bytes intact — before, the
/// damaged header made the next segment "not follow" and every later segment was deleted.
#[test]
fn damage_in_a_sealed_segment_cuts_it_there_and_quarantines_the_later_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..120 {
        log.append(&mut batch(&format!("s{i}"), 3, 120, i), EPOCH, 0).unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() >= 3, "the test needs several segments: {bases:?}");
    log.close().unwrap();
    let first = d.path().join(silt_storage::segment_file_name(bases[0], "log"));
    let mut data = std::fs::read(&first).unwrap();
    let (mut pos, mut last) = (0, None);
    while let Some(h) = BatchHeader::parse(&data[pos..]).filter(|h| h.batch_length > 0) {
        last = Some((pos, h.base_offset));
        pos += h.total_len();
    }
    let (last_pos, last_base) = last.unwrap();
    data[last_pos + silt_core::batch::LAST_OFFSET_DELTA_POS + 3] ^= 0x04;
    std::fs::write(&first, &data).unwrap();
    let later: Vec<Vec<u8>> = bases[1..]
        .iter()
        .map(|b| std::fs::read(d.path().join(silt_storage::segment_file_name(*b, "log"))).unwrap())
        .collect();

    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert!(log.damaged_on_open());
    assert_eq!(log.log_end_offset(), last_base, "cut before the damaged batch, not after it");
    assert_eq!(log.segment_bases(), vec![bases[0]]);
    let quarantine: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(silt_storage::QUARANTINE_PREFIX))
        .collect();
    assert_eq!(quarantine.len(), 1);
    for (b, bytes) in bases[1..].iter().zip(&later) {
        let moved = quarantine[0].path().join(silt_storage::segment_file_name(*b, "log"));
        assert_eq!(&std::fs::read(&moved).unwrap()[..bytes.len()], &bytes[..], "{moved:?}");
    }
}

/// An offset-index entry of a sealed segment damaged so that it still passes the open-time
/// checks (inside the file, rising) but points one byte into a batch: reads through it walk the
/// segment from its start instead of failing on a torn "header" forever.
#[test]
fn a_damaged_index_entry_is_checked_on_lookup_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..60 {
        log.append(&mut batch(&format!("s{i}"), 3, 120, i), EPOCH, 0).unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() >= 2);
    let want = read_all(&log);
    log.close().unwrap();
    let idx = d.path().join(silt_storage::segment_file_name(bases[0], "index"));
    let mut entries = std::fs::read(&idx).unwrap();
    assert!(entries.len() >= 3 * 8, "the test needs a few index entries");
    // The second entry's position, one byte further: inside its batch, still rising.
    let pos = u32::from_be_bytes(entries[12..16].try_into().unwrap());
    entries[12..16].copy_from_slice(&(pos + 1).to_be_bytes());
    std::fs::write(&idx, &entries).unwrap();
    let rel = u32::from_be_bytes(entries[8..12].try_into().unwrap());

    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert!(!log.damaged_on_open());
    let at = Offset(bases[0].0 + u64::from(rel));
    let r = log.read(at, 1 << 20).expect("read through the damaged entry");
    assert_eq!(values(&r.data)[0].0, at);
    assert_eq!(read_all(&log), want);
}

#[test]
fn truncating_below_the_log_start_restarts_the_log_there() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    log.append(&mut batch("a", 2, 10, 0), EPOCH, 0).unwrap();
    log.truncate_fully_and_start_at(Offset(100)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(100), Offset(100)));
    assert_eq!(log.append(&mut batch("b", 1, 10, 0), EPOCH, 0).unwrap().base_offset, Offset(100));
    drop(log);
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(100), Offset(101)));
}

#[test]
fn replicated_appends_keep_the_leaders_offsets_and_must_be_contiguous() {
    let d = tempfile::tempdir().unwrap();
    let mut leader = Log::open(&d.path().join("l"), small_config(), 0).unwrap();
    let mut follower = Log::open(&d.path().join("f"), small_config(), 0).unwrap();
    let mut b1 = batch("r", 3, 10, 0);
    let mut b2 = batch("r", 3, 10, 0);
    leader.append(&mut b1, LeaderEpoch(4), 0).unwrap();
    leader.append(&mut b2, LeaderEpoch(4), 0).unwrap();
    assert!(matches!(follower.append_replicated(&b2, 0), Err(StorageError::NonContiguous { .. })));
    follower.append_replicated(&b1, 0).unwrap();
    follower.append_replicated(&b2, 0).unwrap();
    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(follower.epochs().latest_epoch(), Some(LeaderEpoch(4)));
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_segments_and_persists_the_start() {
    let d = tempfile::tempdir().unwrap();
    let config =
        LogConfig { retention_bytes: Some(40 * 1024), retention_ms: Some(1000), ..small_config() };
    let mut log = Log::open(d.path(), config.clone(), 0).unwrap();
    for i in 0..100 {
        log.append(&mut batch("r", 4, 200, i * 100), EPOCH, 0).unwrap();
    }
    let total = log.size_bytes();
    let out = log.apply_retention(0).unwrap(); // at time 0 nothing is old: bytes only
    assert!(out.deleted_segments > 0);
    assert!(log.size_bytes() >= 40 * 1024 && log.size_bytes() < total);
    assert_eq!(out.log_start, log.log_start_offset());
    assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
    assert!(matches!(log.read(Offset(0), 10), Err(StorageError::OffsetOutOfRange { .. })));
    // By time: at t=100 s every record (<= 9.9 s) is older than 1 s; only the active segment stays.
    let out = log.apply_retention(100_000).unwrap();
    assert!(out.deleted_segments > 0);
    assert_eq!(log.segment_count(), 1);
    let start = log.log_start_offset();
    assert_eq!(values(&read_all(&log)).first().map(|v| v.0), Some(start));
    drop(log);
    let log = Log::open(d.path(), config, 0).unwrap();
    assert_eq!(log.log_start_offset(), start, "log start persisted across a crash");
}

#[test]
fn deleting_before_an_offset_keeps_the_segment_holding_it_and_the_active_one() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..100 {
        log.append(&mut batch("r", 4, 200, i * 100), EPOCH, 0).unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() >= 4, "{bases:?}");
    // An offset inside the third segment: the first two go, the third (holding it) stays.
    let inside = Offset(bases[2].0 + 1);
    let out = log.delete_segments_before(inside).unwrap();
    assert_eq!(out.deleted_segments, 2);
    assert_eq!(log.log_start_offset(), bases[2]);
    assert_eq!(values(&read_all(&log)).first().map(|v| v.0), Some(bases[2]));
    // Past the end: everything but the active segment.
    log.delete_segments_before(Offset(u64::MAX)).unwrap();
    assert_eq!(log.segment_count(), 1);
    let start = log.log_start_offset();
    drop(log);
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_start_offset(), start, "log start persisted");
    assert_eq!(log.log_end_offset(), Offset(400));
}

#[test]
fn damaged_index_files_are_rebuilt_on_open() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..60 {
        log.append(&mut batch("i", 2, 150, i * 10), EPOCH, 0).unwrap();
    }
    let before = read_all(&log);
    log.close().unwrap();
    // Garbage in the first segment's offset index, a ragged time index.
    std::fs::write(d.path().join("00000000000000000000.index"), [0xffu8; 24]).unwrap();
    std::fs::write(d.path().join("00000000000000000000.timeindex"), [1u8; 13]).unwrap();
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!(read_all(&log), before);
    assert_eq!(log.offset_for_timestamp(255).unwrap(), Some((Offset(52), 260)));
    assert!(std::fs::metadata(d.path().join("00000000000000000000.index")).unwrap().len() > 0);
}

#[test]
fn damaged_epoch_checkpoint_is_rebuilt_from_the_batches() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    log.append(&mut batch("e", 2, 10, 0), LeaderEpoch(1), 0).unwrap();
    log.append(&mut batch("e", 2, 10, 0), LeaderEpoch(5), 0).unwrap();
    log.close().unwrap();
    std::fs::write(d.path().join("leader-epoch-checkpoint"), "garbage").unwrap();
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(1)), Some((LeaderEpoch(1), Offset(2))));
    assert_eq!(log.epochs().latest_epoch(), Some(LeaderEpoch(5)));
}

#[test]
fn a_bit_flipped_in_a_sealed_segment_is_reported_on_read_never_served() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..60 {
        log.append(&mut batch("z", 2, 300, i), EPOCH, 0).unwrap();
    }
    assert!(log.segment_count() > 2);
    drop(log); // unclean: sealed segments are trusted, the active one is scanned
    let path = d.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5000] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let log = Log::open(d.path(), small_config(), 0).unwrap();
    let mut at = Offset(0);
    let mut served = Vec::new();
    let err = loop {
        match log.read(at, 1000) {
            Ok(r) => {
                served.extend_from_slice(&r.data);
                at = r.next_offset;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StorageError::Corrupt { position, .. } if position <= 5000), "{err}");
    assert_eq!(&served[..], &read_all_until(&log, at)[..]);
    assert!(served.len() <= 5000, "nothing at or past the flipped byte was returned");
}

/// A read that runs into a damaged batch serves the good batches before it; `damage_point`
/// names the damaged batch's offset, and cutting the log there leaves a log that reads whole
/// (what a replica that found the damage does before re-fetching from the leader).
#[test]
fn damage_found_by_a_read_is_located_and_cut_away() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small_config(), 0).unwrap();
    for i in 0..60 {
        log.append(&mut batch("z", 2, 300, i), EPOCH, 0).unwrap();
    }
    let first_seg_end = log.segment_bases()[1];
    let path = d.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3000] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap(); // seen through the live map
    let good = log.read(Offset(0), 1 << 20).unwrap();
    assert!(good.next_offset > Offset(0), "the batches before the damage are served");
    let err = log.read(good.next_offset, 1 << 20).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(log.damage_point(Offset(0)), Some(good.next_offset));
    assert_eq!(log.damage_point(first_seg_end), None, "later segments check whole");
    log.truncate_to(good.next_offset).unwrap();
    assert_eq!(log.log_end_offset(), good.next_offset);
    assert_eq!(read_all(&log).len(), good.data.len());
}
