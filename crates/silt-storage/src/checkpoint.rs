//! Small durable files: written whole to a temporary name, fsynced, renamed over the old one,
//! and the directory fsynced, so a crash leaves either the old or the new content.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::StorageError;
use crate::error::IoContext;
use crate::file_util::sync_dir;

/// Holds the log start offset (first offset not deleted by retention).
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
/// Holds the recovery point: segments below it were synced and sealed, no scan needed.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Exists only between a clean close and the next open; holds the log end offset.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The leader-epoch checkpoint.
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// Replaces `dir/name` with `contents` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = fs::File::create(&tmp).at(&tmp)?;
    f.write_all(contents).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    fs::rename(&tmp, &dst).at(&dst)?;
    sync_dir(dir)
}

/// Reads a file holding one decimal u64. `Ok(None)` if absent; `Err` text if unreadable or
/// malformed (callers fall back to a safe default and say so).
pub(crate) fn read_u64(dir: &Path, name: &str) -> Result<Option<u64>, String> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes a decimal u64 with [`write_atomic`].
pub(crate) fn write_u64(dir: &Path, name: &str, value: u64) -> Result<(), StorageError> {
    write_atomic(dir, name, format!("{value}\n").as_bytes())
}

/// Removes `dir/name` if present and fsyncs the directory.
pub(crate) fn remove_durably(dir: &Path, name: &str) -> Result<(), StorageError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_roundtrip_and_malformed_is_reported() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_u64(d.path(), "x"), Ok(None));
        write_u64(d.path(), "x", 42).unwrap();
        assert_eq!(read_u64(d.path(), "x"), Ok(Some(42)));
        assert!(!d.path().join("x.tmp").exists());
        fs::write(d.path().join("x"), "4x2").unwrap();
        assert!(read_u64(d.path(), "x").is_err());
        remove_durably(d.path(), "x").unwrap();
        remove_durably(d.path(), "x").unwrap();
        assert_eq!(read_u64(d.path(), "x"), Ok(None));
    }
}
