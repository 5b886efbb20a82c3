//! `LogConfig`: the knobs of one partition log, with units in their names.

use crate::StorageError;

/// Default `segment_max_bytes`: 1 GiB, as in Kafka.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default `segment_ms`: 7 days.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Default `index_interval_bytes`: one index entry per 4 KiB of log.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
/// Default `index_max_bytes`: 10 MiB per index file, as in Kafka.
pub const DEFAULT_INDEX_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default `max_batch_bytes` (Kafka's `max.message.bytes`): 1 MiB plus header slack.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024 + 12 * 1024;
/// Smallest accepted `segment_max_bytes`, so a segment holds at least a header.
pub const MIN_SEGMENT_MAX_BYTES: u64 = 1024;

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would pass this size. At most 4 GiB - 1,
    /// because index entries store positions as u32.
    pub segment_max_bytes: u64,
    /// Roll when the active segment is older than this (wall clock since it was created).
    pub segment_ms: i64,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// Preallocated size of each index file; a full index rolls the segment.
    pub index_max_bytes: u64,
    /// Delete whole segments whose newest record is older than this; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while the log is larger than this; `None` means no limit.
    pub retention_bytes: Option<u64>,
    /// Largest batch `append` accepts (`max.message.bytes`).
    pub max_batch_bytes: usize,
    /// Check each batch's CRC when serving reads, so a bit flipped on disk after the write is
    /// reported instead of served.
    pub verify_crc_on_read: bool,
    /// `cleanup.policy` has `delete`: retention deletes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` has `compact`: the cleaner keeps the latest record per key.
    pub cleanup_compact: bool,
    /// Clean once dirty bytes are at least this share of the cleanable log.
    pub min_cleanable_dirty_ratio: f64,
    /// Records younger than this (by timestamp) are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// Tombstones (and aborted transactions' records, once cleaned) are removed this long after
    /// their timestamp.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            index_max_bytes: DEFAULT_INDEX_MAX_BYTES,
            retention_ms: Some(DEFAULT_SEGMENT_MS),
            retention_bytes: None,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            verify_crc_on_read: true,
            cleanup_delete: true,
            cleanup_compact: false,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl LogConfig {
    /// Checks the rules that span fields; the error names the key.
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |m: String| Err(StorageError::InvalidConfig(m));
        if !(MIN_SEGMENT_MAX_BYTES..=u64::from(u32::MAX)).contains(&self.segment_max_bytes) {
            return bad(format!(
                "segment_max_bytes = {} must be in [{MIN_SEGMENT_MAX_BYTES}, {}]",
                self.segment_max_bytes,
                u32::MAX
            ));
        }
        if self.segment_ms <= 0 {
            return bad(format!("segment_ms = {} must be positive", self.segment_ms));
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive".into());
        }
        if self.index_max_bytes < 64 {
            return bad(format!("index_max_bytes = {} must be at least 64", self.index_max_bytes));
        }
        if self.max_batch_bytes as u64 > self.segment_max_bytes {
            return bad(format!(
                "max_batch_bytes = {} exceeds segment_max_bytes = {}",
                self.max_batch_bytes, self.segment_max_bytes
            ));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad("min_cleanable_dirty_ratio must be within [0, 1]".into());
        }
        if self.min_compaction_lag_ms < 0 || self.delete_retention_ms < 0 {
            return bad("min_compaction_lag_ms and delete_retention_ms must not be negative".into());
        }
        if matches!(self.retention_ms, Some(ms) if ms <= 0) {
            return bad("retention_ms must be positive (or unset for no limit)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert!(LogConfig::default().validate().is_ok());
        let err = LogConfig { segment_max_bytes: 10, ..LogConfig::default() }.validate();
        assert!(err.unwrap_err().to_string().contains("segment_max_bytes"));
        let err = LogConfig {
            max_batch_bytes: 1 << 30,
            segment_max_bytes: 1 << 20,
            ..LogConfig::default()
        }
        .validate();
        assert!(err.unwrap_err().to_string().contains("max_batch_bytes"));
        let err = LogConfig { retention_ms: Some(0), ..LogConfig::default() }.validate();
        assert!(err.unwrap_err().to_string().contains("retention_ms"));
    }
}
