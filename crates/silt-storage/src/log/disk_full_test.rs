//! Injected failures. A full disk (injected: preallocation fails with ENOSPC) is an error, never a crash, and the
//! log stays readable and usable once space returns. `tests/disk_full_test.rs` repeats this on
//! a real, tiny tmpfs when the tests run as root.

use bytes::Bytes;
use silt_core::batch::{BatchBuilder, Record};
use silt_core::{LeaderEpoch, Offset};

use super::Log;
use crate::file_util::FAIL_PREALLOCATE;
use crate::{LogConfig, StorageError};

fn batch(n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        b.push(&Record::value(Bytes::from(vec![b'a' + (i % 26) as u8; 200]), i as i64));
    }
    b.build_vec().unwrap()
}

#[test]
fn preallocation_failure_on_roll_is_disk_full_and_leaves_the_log_intact() {
    let d = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_max_bytes: 4096,
        index_max_bytes: 1024,
        max_batch_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = Log::open(d.path(), config.clone(), 0).unwrap();
    while log.segment_count() == 1 || !log.log_end_offset().0.is_multiple_of(10) {
        log.append(&mut batch(5), LeaderEpoch(1), 0).unwrap();
    }
    let end = log.log_end_offset();
    let before = log.read(Offset(0), 1 << 20).unwrap();

    FAIL_PREALLOCATE.with(|f| f.set(true));
    let mut failures = 0;
    for _ in 0..50 {
        match log.append(&mut batch(5), LeaderEpoch(1), 0) {
            Ok(_) => {}
            Err(StorageError::DiskFull { .. }) => failures += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    FAIL_PREALLOCATE.with(|f| f.set(false));
    assert!(failures > 0, "the active segment filled up and the roll failed");
    let stuck = log.log_end_offset();
    assert!(stuck >= end);
    assert_eq!(log.read(Offset(0), 1 << 20).unwrap(), before, "old data still readable");
    assert_eq!(log.sync().unwrap(), stuck);

    // Space is back: the next append rolls and continues at the next offset.
    let info = log.append(&mut batch(1), LeaderEpoch(1), 0).unwrap();
    assert_eq!(info.base_offset, stuck);
    drop(log);
    let log = Log::open(d.path(), config, 0).unwrap();
    assert_eq!(log.log_end_offset(), stuck.next());
}

#[test]
fn disk_full_at_open_is_an_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    FAIL_PREALLOCATE.with(|f| f.set(true));
    let r = Log::open(d.path(), LogConfig::default(), 0);
    FAIL_PREALLOCATE.with(|f| f.set(false));
    assert!(matches!(r, Err(StorageError::DiskFull { .. })), "{r:?}");
    // Nothing half-made is left behind to confuse the next open.
    let log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(0));
}

/// The fsyncgate rule: after a failed fdatasync the appended bytes may be lost from the page
/// cache while a later sync succeeds, so the failure is final. The log refuses appends,
/// truncation and syncs from then on (even once syncs would work again), never reports the
/// unsynced appends durable, and its close writes no clean-shutdown marker: the next open
/// recovers (scans) the active segment.
#[test]
fn a_failed_sync_takes_the_log_offline_until_it_is_reopened() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    log.append(&mut batch(3), LeaderEpoch(1), 0).unwrap();
    assert_eq!(log.sync().unwrap(), Offset(3));
    log.append(&mut batch(3), LeaderEpoch(1), 0).unwrap();

    crate::file_util::FAIL_SYNC.with(|f| f.set(true));
    assert!(matches!(log.sync(), Err(StorageError::Io { .. })));
    crate::file_util::FAIL_SYNC.with(|f| f.set(false));

    assert!(log.offline().is_some());
    assert!(matches!(log.sync(), Err(StorageError::Offline { .. })), "a later sync never succeeds");
    assert_eq!(log.synced_offset(), Offset(3), "the unsynced appends are never reported durable");
    assert!(matches!(
        log.append(&mut batch(1), LeaderEpoch(1), 0),
        Err(StorageError::Offline { .. })
    ));
    assert!(matches!(log.truncate_to(Offset(1)), Err(StorageError::Offline { .. })));
    assert!(log.read(Offset(0), 1 << 20).is_ok(), "what it holds stays readable");
    assert!(log.close().is_err());
    assert!(!d.path().join(crate::checkpoint::CLEAN_SHUTDOWN_FILE).exists());

    let log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    assert!(log.offline().is_none(), "reopened and recovered");
    assert_eq!(log.log_end_offset(), Offset(6), "the page cache still had them here");
}
