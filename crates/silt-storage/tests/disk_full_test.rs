//! A real full disk: a tiny tmpfs mounted by the test (only when running as root; otherwise the
//! test says so and returns — the injected-failure unit test in `src/log/` always runs).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use silt_core::Offset;
use silt_storage::{Log, LogConfig, StorageError};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_tmpfs_gives_disk_full_errors_and_the_log_stays_readable() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=320k", "silt-test", mnt.to_str().unwrap()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!(
            "skipping: cannot mount a tmpfs here (not root?); the injected ENOSPC unit test covers this"
        );
        return;
    }
    let _guard = Mount(&mnt);
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 128 * 1024]).unwrap();
    let config = LogConfig {
        segment_max_bytes: 64 * 1024,
        index_max_bytes: 4096,
        max_batch_bytes: 8 * 1024,
        ..small_config()
    };
    let dir = mnt.join("orders-0");
    let mut log = Log::open(&dir, config.clone(), 0).unwrap();

    let mut full = None;
    for i in 0..200 {
        match log.append(&mut batch(&format!("f{i}"), 4, 400, i), EPOCH, 0) {
            Ok(_) => {}
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    assert!(matches!(full, Some(StorageError::DiskFull { .. })), "{full:?}");
    let end = log.log_end_offset();
    assert!(end > Offset(0));
    let vals = values(&read_all(&log));
    assert_eq!(vals.len() as u64, end.0, "everything acknowledged is readable");
    assert_eq!(log.sync().unwrap(), end);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(log.append(&mut batch("after", 1, 10, 0), EPOCH, 0).unwrap().base_offset, end);
    log.close().unwrap();
    let log = Log::open(&dir, config, 0).unwrap();
    assert_eq!(log.log_end_offset(), end.next());
}
