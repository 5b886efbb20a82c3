//! Segmented, memory-mapped partition logs.
//!
//! A [`Log`] is one partition replica's directory: segments named by their 20-digit base offset,
//! each a `.log` of record batches back to back plus a sparse `.index` (offset -> position) and a
//! `.timeindex` (timestamp -> offset), and a few small checkpoint files. The code is synchronous
//! (`std::fs`); the broker drives each log from one task. This is the only crate that maps files,
//! and all of its `unsafe` lives in `mmap.rs`. The layout on disk is drawn in `docs/format.md`.

mod checkpoint;
mod cleaner;
mod config;
mod epoch_cache;
mod error;
mod file_util;
mod format_check;
#[cfg(feature = "fault-injection")]
pub use file_util::FAIL_SYNC_FILE;
pub use format_check::{find_foreign_format, foreign_format_message};
mod index_file;
mod log;
mod mmap;
mod offset_index;
mod recovery;
pub mod retention;
mod segment;
mod time_index;

pub use cleaner::{AbortedCheck, CleanPlan, CleanStats, Cleaned, IoThrottle};
pub use config::{LogConfig, MIN_SEGMENT_MAX_BYTES};
pub use epoch_cache::{EpochEntry, LeaderEpochCache};
pub use error::StorageError;
pub use log::{AppendInfo, Log, QUARANTINE_PREFIX, ReadResult, RetentionOutcome, SwapStep};
pub use segment::{SEGMENT_NAME_DIGITS, segment_file_name};
