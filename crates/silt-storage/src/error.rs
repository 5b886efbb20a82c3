//! `StorageError`: everything that can go wrong in a partition log, with the file and position.

use std::io;
use std::path::PathBuf;

use silt_core::Offset;
use silt_core::batch::BatchError;

/// A storage failure. Variants carry the path (and position) so logs point at the bytes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file system has no room: preallocating a segment or index failed with `ENOSPC` (or a
    /// write did, on file systems without `fallocate`). Nothing was appended.
    #[error("disk full while writing {path}")]
    DiskFull { path: PathBuf },
    /// Bytes on disk failed a check (framing, CRC, offsets, epochs).
    #[error("corrupt data in {segment} at position {position}: {reason}")]
    Corrupt { segment: PathBuf, position: u64, reason: String },
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: Offset, log_start: Offset, log_end: Offset },
    /// The batch handed to `append` is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch cannot fit in a segment (`segment_max_bytes`) or exceeds `max_batch_bytes`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    /// A replicated batch does not start at the log end offset.
    #[error("replicated batch starts at offset {found}, expected {expected}")]
    NonContiguous { expected: Offset, found: Offset },
    /// A leader epoch went backwards.
    #[error("leader epoch {epoch} is older than the latest epoch {latest}")]
    StaleEpoch { epoch: u32, latest: u32 },
    /// The configuration is unusable.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    /// An fsync of this log failed earlier: what it held may not be on disk, whatever a later
    /// sync says (the page cache may have dropped the dirty pages), so the log takes no more
    /// writes and syncs until it is reopened and recovered (the "fsyncgate" rule).
    #[error("the log in {dir} is offline after a failed sync ({reason}); restart to recover it")]
    Offline { dir: PathBuf, reason: String },
    /// Any other I/O failure.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error, turning `ENOSPC`/`EDQUOT` into [`StorageError::DiskFull`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::DiskFull { path },
            _ => StorageError::Io { path, source },
        }
    }
}

/// Shorthand for attaching a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StorageError> {
        self.map_err(|e| StorageError::io(path, e))
    }
}
