//! Storage benchmarks: append of 1 KiB records in 16 KiB and 1 MiB batches, with and without an
//! fdatasync per append, and sequential reads from the page cache. Logs live under the target
//! directory (same disk as the `dd` baseline in `benches/storage-vs-dd.sh`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use silt_core::batch::{BatchBuilder, Record};
use silt_core::{LeaderEpoch, Offset};
use silt_storage::{Log, LogConfig};

const RECORD: usize = 1024;

/// One batch of 1 KiB records of about `batch_bytes`.
fn batch(batch_bytes: usize) -> Vec<u8> {
    let mut b = BatchBuilder::with_capacity(batch_bytes + 4096);
    let value = Bytes::from(vec![0x5au8; RECORD]);
    let rec =
        Record { key: None, value: Some(value), headers: vec![], timestamp_ms: 1_700_000_000_000 };
    while b.size_with(&rec) <= batch_bytes {
        b.push(&rec);
    }
    b.build_vec().expect("non-empty")
}

fn config() -> LogConfig {
    LogConfig {
        segment_max_bytes: 512 * 1024 * 1024,
        max_batch_bytes: 2 * 1024 * 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("silt-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    for (label, batch_bytes) in [("16KiB", 16 * 1024), ("1MiB", 1024 * 1024)] {
        let template = batch(batch_bytes);
        g.throughput(Throughput::Bytes(template.len() as u64));
        for sync in [false, true] {
            let id = BenchmarkId::new(if sync { "sync_each" } else { "no_sync" }, label);
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let dir = scratch();
                    let mut log = Log::open(dir.path(), config(), 0).expect("open");
                    let mut buf = template.clone();
                    let start = Instant::now();
                    for _ in 0..iters {
                        log.append(&mut buf, LeaderEpoch(1), 0).expect("append");
                        if sync {
                            log.sync().expect("sync");
                        }
                    }
                    let t = start.elapsed();
                    drop(log);
                    t
                })
            });
        }
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let dir = scratch();
    let mut log = Log::open(dir.path(), config(), 0).expect("open");
    let template = batch(1024 * 1024);
    for _ in 0..256 {
        let mut b = template.clone();
        log.append(&mut b, LeaderEpoch(1), 0).expect("append");
    }
    log.sync().expect("sync");
    let total = log.size_bytes();
    g.throughput(Throughput::Bytes(total));
    for verify in [true, false] {
        log.set_config(LogConfig { verify_crc_on_read: verify, ..config() }).expect("config");
        let name =
            if verify { "sequential_1MiB_fetches_crc_checked" } else { "sequential_1MiB_fetches" };
        let mut out = vec![0u8; 2 * 1024 * 1024];
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut at = Offset(0);
                let mut bytes = 0usize;
                while at < log.log_end_offset() {
                    let r = log.read(at, 1024 * 1024).expect("read");
                    // The read itself is a zero-copy slice of the map; copy it out once, as
                    // writing it to a socket would, so every byte is really read.
                    out[..r.data.len()].copy_from_slice(&r.data);
                    bytes += r.data.len();
                    at = r.next_offset;
                }
                bytes
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
