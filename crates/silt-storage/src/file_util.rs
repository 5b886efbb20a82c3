//! File-system helpers: preallocation, durable directory changes, and a test hook that makes
//! preallocation fail as on a full disk.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::StorageError;
use crate::error::IoContext;

#[cfg(test)]
thread_local! {
    /// When set, the next preallocations on this thread fail with `ENOSPC`.
    pub(crate) static FAIL_PREALLOCATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// When set, the next data syncs on this thread fail with `EIO`.
    pub(crate) static FAIL_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// With the `fault-injection` feature (fault tests only): a file of this name in a partition
/// directory makes every data sync of that partition fail with `EIO`.
#[cfg(feature = "fault-injection")]
pub const FAIL_SYNC_FILE: &str = "FAIL_SYNC";

/// fdatasync of `file` (with the test hooks that make it fail).
pub(crate) fn sync_data(file: &File, path: &Path) -> Result<(), StorageError> {
    #[cfg(test)]
    if FAIL_SYNC.with(|f| f.get()) {
        return Err(StorageError::io(path, io::Error::from_raw_os_error(libc::EIO)));
    }
    #[cfg(feature = "fault-injection")]
    if path.parent().is_some_and(|d| d.join(FAIL_SYNC_FILE).exists()) {
        return Err(StorageError::io(path, io::Error::from_raw_os_error(libc::EIO)));
    }
    file.sync_data().at(path)
}

/// Reserves `len` bytes of real disk space for `file`, growing it, so later writes (and writes
/// through a map) cannot hit `ENOSPC`. Falls back to `set_len` where `fallocate` is unsupported.
pub(crate) fn preallocate(file: &File, len: u64, path: &Path) -> Result<(), StorageError> {
    #[cfg(test)]
    if FAIL_PREALLOCATE.with(|f| f.get()) {
        return Err(StorageError::io(path, io::Error::from_raw_os_error(libc::ENOSPC)));
    }
    let len_i = libc::off_t::try_from(len)
        .map_err(|_| StorageError::InvalidConfig(format!("length {len} too large")))?;
    // Safe wrapper around fallocate(2): the fd is valid for the call.
    let rc = fallocate(file, len_i);
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(len).at(path),
        _ => Err(StorageError::io(path, err)),
    }
}

#[allow(unsafe_code)]
fn fallocate(file: &File, len: libc::off_t) -> libc::c_int {
    // SAFETY: fallocate(2) only reads its integer arguments; the fd belongs to `file`, which is
    // borrowed for the duration of the call.
    unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) }
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
