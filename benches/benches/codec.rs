//! Codec benchmarks: building and validating batches of 1 KiB records.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use silt_core::batch::{BatchBuilder, Record, RecordIter, validate};

fn records(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::value(Bytes::from(vec![i as u8; 1024]), i as i64)).collect()
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.sample_size(20);
    let recs = records(1000);
    let built = {
        let mut b = BatchBuilder::with_capacity(1 << 21);
        recs.iter().for_each(|r| b.push(r));
        b.build().expect("non-empty")
    };
    g.throughput(Throughput::Bytes(built.len() as u64));
    g.bench_function("build_1MiB", |b| {
        b.iter(|| {
            let mut bb = BatchBuilder::with_capacity(1 << 21);
            recs.iter().for_each(|r| bb.push(r));
            bb.build()
        })
    });
    g.bench_function("validate_1MiB", |b| b.iter(|| validate(&built, 1 << 21).expect("valid")));
    g.bench_function("decode_1MiB", |b| {
        b.iter(|| RecordIter::new(built.clone()).expect("batch").count())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
