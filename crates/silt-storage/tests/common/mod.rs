//! Helpers shared by the storage tests: batches with predictable contents, directory copies.

#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use silt_core::batch::{BatchBuilder, BatchIter, Record, RecordIter};
use silt_core::{LeaderEpoch, Offset};
use silt_storage::{Log, LogConfig};

pub const EPOCH: LeaderEpoch = LeaderEpoch(1);

/// A batch of `n` records whose values are `tag-i` padded to `value_len`, all at `ts`.
pub fn batch(tag: &str, n: usize, value_len: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let mut v = format!("{tag}-{i}").into_bytes();
        v.resize(value_len.max(v.len()), b'.');
        b.push(&Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v)),
            headers: vec![],
            timestamp_ms: ts,
        });
    }
    b.build_vec().expect("non-empty")
}

/// A small config that rolls often and indexes densely, so tests cross segments and indexes.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_max_bytes: 16 * 1024,
        index_interval_bytes: 256,
        index_max_bytes: 4096,
        max_batch_bytes: 8 * 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Reads every batch from the log start to the end, following segments.
pub fn read_all(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20).expect("read");
        assert!(r.next_offset > at, "read made no progress at {at}");
        out.extend_from_slice(&r.data);
        at = r.next_offset;
    }
    out
}

/// Every record value in `data`, with its offset.
pub fn values(data: &[u8]) -> Vec<(Offset, String)> {
    let mut out = Vec::new();
    for b in BatchIter::new(Bytes::copy_from_slice(data)) {
        for r in RecordIter::new(b.expect("batch")).expect("records") {
            let r = r.expect("record");
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            out.push((r.offset, v.trim_end_matches('.').to_string()));
        }
    }
    out
}

/// Copies every file of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
