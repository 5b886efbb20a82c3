//! Codec round trips and the refusals of `validate`.

use bytes::Bytes;

use super::*;
use crate::{LeaderEpoch, Offset};

fn rec(key: Option<&str>, value: Option<&str>, ts: i64) -> Record {
    Record {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: vec![],
        timestamp_ms: ts,
    }
}

fn sample() -> Vec<Record> {
    let mut with_headers = rec(Some("k2"), Some("v2"), 1_700_000_000_500);
    with_headers.headers = vec![
        Header { key: "trace".into(), value: Some(Bytes::from_static(b"abc")) },
        Header { key: "empty".into(), value: None },
    ];
    vec![
        rec(Some("k1"), Some("v1"), 1_700_000_000_000),
        with_headers,
        rec(None, None, 1_699_999_999_000), // earlier timestamp: negative delta
        rec(None, Some(""), 1_700_000_001_000),
    ]
}

fn build(records: &[Record]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in records {
        let predicted = b.size_with(r);
        b.push(r);
        assert_eq!(b.size_bytes(), predicted, "size_with predicts the encoded size");
    }
    b.build_vec().expect("non-empty")
}

#[test]
fn built_batch_validates_and_decodes_to_the_same_records() {
    let records = sample();
    let mut batch = build(&records);
    patch_base_offset_and_epoch(&mut batch, Offset(100), LeaderEpoch(3));
    let h = validate(&batch, 1 << 20).expect("valid");
    assert_eq!(h.base_offset, Offset(100));
    assert_eq!(h.partition_leader_epoch, LeaderEpoch(3));
    assert_eq!(h.record_count, 4);
    assert_eq!(h.last_offset(), Offset(103));
    assert_eq!(h.max_timestamp, 1_700_000_001_000);
    let decoded: Vec<_> =
        RecordIter::new(Bytes::from(batch)).unwrap().map(Result::unwrap).collect();
    assert_eq!(decoded.len(), records.len());
    for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
        assert_eq!(d.offset, Offset(100 + i as u64));
        assert_eq!(d.timestamp_ms, r.timestamp_ms);
        assert_eq!(d.key, r.key);
        assert_eq!(d.value, r.value);
        assert_eq!(d.headers, r.headers);
    }
}

#[test]
fn empty_builder_builds_nothing() {
    assert!(BatchBuilder::new().build().is_none());
}

#[test]
fn batch_iter_splits_back_to_back_batches_and_stops_at_a_cut() {
    let a = build(&sample());
    let b = build(&[rec(None, Some("x"), 1)]);
    let mut joined = a.clone();
    joined.extend_from_slice(&b);
    let all: Vec<_> = BatchIter::new(Bytes::from(joined.clone())).collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].as_ref().unwrap().as_ref(), &a[..]);
    assert_eq!(all[1].as_ref().unwrap().as_ref(), &b[..]);
    joined.truncate(joined.len() - 1);
    let cut: Vec<_> = BatchIter::new(Bytes::from(joined)).collect();
    assert!(cut[0].is_ok());
    assert!(matches!(cut[1], Err(BatchError::Truncated { .. })));
    assert_eq!(cut.len(), 2);
}

#[test]
fn every_single_bit_flip_in_the_crc_range_is_caught() {
    let batch = build(&sample());
    for byte in CRC_POS..batch.len() {
        for bit in 0..8 {
            let mut bad = batch.clone();
            bad[byte] ^= 1 << bit;
            assert!(validate(&bad, 1 << 20).is_err(), "flip at byte {byte} bit {bit} accepted");
        }
    }
}

#[test]
fn offset_and_epoch_are_outside_the_crc() {
    let mut batch = build(&sample());
    patch_base_offset_and_epoch(&mut batch, Offset(u64::MAX - 10), LeaderEpoch(9));
    assert!(validate(&batch, 1 << 20).is_ok());
}

#[test]
fn refusals_name_the_problem() {
    let good = build(&sample());
    let v = |b: &[u8]| validate(b, 1 << 20);

    assert_eq!(v(&good[..10]), Err(BatchError::TooShort { len: 10 }));

    let mut long = good.clone();
    long[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(v(&long), Err(BatchError::LengthOutOfBounds { .. })));

    assert!(matches!(v(&good[..good.len() - 1]), Err(BatchError::Truncated { .. })));

    let mut extra = good.clone();
    extra.push(0);
    assert_eq!(v(&extra), Err(BatchError::TrailingBytes { extra: 1 }));

    let mut magic = good.clone();
    magic[MAGIC_POS] = 1;
    assert_eq!(v(&magic), Err(BatchError::BadMagic { found: 1 }));

    assert!(matches!(validate(&good, 100), Err(BatchError::LengthOutOfBounds { .. })));
}

/// Rewrites a header field and fixes the CRC, so the check under test is the one that fires.
fn with_field(batch: &[u8], pos: usize, bytes: &[u8]) -> Vec<u8> {
    let mut b = batch.to_vec();
    b[pos..pos + bytes.len()].copy_from_slice(bytes);
    let crc = crc_of(&b);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn semantic_checks_fire_even_with_a_matching_crc() {
    let good = build(&sample());
    let v = |b: &[u8]| validate(b, 1 << 20);
    assert_eq!(
        v(&with_field(&good, ATTRIBUTES_POS, &7u16.to_be_bytes())),
        Err(BatchError::UnsupportedCompression { codec: 7 })
    );
    // Plain records labelled gzip: storage trusts the CRC, the leader decompresses and refuses.
    let gzip_label = with_field(&good, ATTRIBUTES_POS, &1u16.to_be_bytes());
    assert!(matches!(
        validate_produced(&gzip_label, 1 << 20, 1 << 20),
        Err(BatchError::Decompression { codec: 1, .. })
    ));
    assert_eq!(
        v(&with_field(&good, RECORD_COUNT_POS, &5u32.to_be_bytes())),
        Err(BatchError::BadRecordCount { record_count: 5, last_offset_delta: 3 })
    );
    let more = with_field(&good, RECORD_COUNT_POS, &5u32.to_be_bytes());
    let more = with_field(&more, LAST_OFFSET_DELTA_POS, &4u32.to_be_bytes());
    assert!(matches!(v(&more), Err(BatchError::CorruptRecord { index: 4, .. })));
    assert!(matches!(
        v(&with_field(&good, MAX_TIMESTAMP_POS, &5i64.to_be_bytes())),
        Err(BatchError::BadMaxTimestamp { .. })
    ));
    // Record 0's offset delta lives right after its length, attributes and timestamp delta.
    let mut off = good.clone();
    off[HEADER_LEN + 3] = 0x02; // zig-zag 1
    let off = with_field(&off, 0, &[0]);
    let produced = validate_produced(&off, 1 << 20, 1 << 20).map(|(h, _)| h);
    assert_eq!(produced, Err(BatchError::BadOffsetDelta { index: 0, found: 1 }));
    // Storage takes gaps (compaction leaves them) but not deltas that fall back.
    assert_eq!(v(&off), Err(BatchError::BadOffsetDelta { index: 1, found: 1 }));
}

#[test]
fn garbage_never_panics_the_decoders() {
    // A cheap deterministic fuzz: mutate a valid batch at every byte and decode anyway.
    let good = build(&sample());
    for i in 0..good.len() {
        for val in [0u8, 0x7f, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] = val;
            let _ = validate(&b, 1 << 20);
            if let Ok(it) = RecordIter::new(Bytes::from(b.clone())) {
                for r in it {
                    let _ = r;
                }
            }
            for r in BatchIter::new(Bytes::from(b)) {
                let _ = r;
            }
        }
    }
}

#[test]
fn verify_crc_catches_flips_and_accepts_stamped_batches() {
    let mut batch = build(&sample());
    patch_base_offset_and_epoch(&mut batch, Offset(9), LeaderEpoch(2));
    assert_eq!(verify_crc(&batch, 1 << 20).unwrap().base_offset, Offset(9));
    let mut bad = batch.clone();
    bad[HEADER_LEN + 2] ^= 4;
    assert!(matches!(verify_crc(&bad, 1 << 20), Err(BatchError::CrcMismatch { .. })));
}

fn build_compressed(records: &[Record], codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.set_compression(codec, None);
    for r in records {
        b.push(r);
    }
    b.build_vec().expect("non-empty")
}

#[test]
fn every_codec_round_trips_a_batch_through_build_validate_and_decode() {
    let records = sample();
    let plain: Vec<_> = RecordIter::new(Bytes::from(build(&records))).expect("plain").collect();
    for codec in Compression::ALL {
        let batch = build_compressed(&records, codec);
        let (h, decompressed) =
            validate_produced(&batch, 1 << 20, 1 << 20).expect("the leader's check");
        assert_eq!(h.codec(), Ok(codec));
        assert_eq!(h.record_count, 4);
        assert_eq!(decompressed.is_some(), codec != Compression::None);
        validate(&batch, 1 << 20).expect("storage's check");
        let decoded: Vec<_> = RecordIter::new(Bytes::from(batch)).expect("iter").collect();
        assert_eq!(decoded, plain, "{codec}");
    }
}

#[test]
fn a_compressed_batch_past_the_decompression_bound_is_refused() {
    let zeros = Record::value(vec![0u8; 512 * 1024], 1);
    let batch = build_compressed(&[zeros.clone(), zeros], Compression::Zstd);
    assert!(batch.len() < 4096, "a bomb: {} bytes", batch.len());
    assert_eq!(
        validate_produced(&batch, 1 << 20, 1 << 20).map(|_| ()),
        Err(BatchError::DecompressedTooLarge { limit: 1 << 20 })
    );
    assert!(RecordIter::with_limit(Bytes::from(batch), 1 << 20).is_err());
}

#[test]
fn a_compressed_batch_with_bad_records_inside_is_refused_by_the_leader() {
    // The records section compresses garbage: the CRC is right, the records are not.
    let batch = build(&sample());
    let mut records = batch[HEADER_LEN..].to_vec();
    records[0] = 0x7f; // the first record's length
    let bad = recompress(&batch, &records, Compression::Lz4, None);
    assert!(validate(&bad, 1 << 20).is_ok(), "storage trusts the CRC");
    assert!(matches!(
        validate_produced(&bad, 1 << 20, 1 << 20),
        Err(BatchError::CorruptRecord { index: 0, .. })
    ));
    let mut unknown = batch.clone();
    unknown[ATTRIBUTES_POS + 1] |= 6;
    let crc = crc_of(&unknown);
    unknown[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(validate(&unknown, 1 << 20), Err(BatchError::UnsupportedCompression { codec: 6 }));
}

#[test]
fn recompress_keeps_the_header_and_changes_the_codec() {
    let mut b = BatchBuilder::new();
    b.set_producer(7, 2, 40);
    b.set_transactional();
    b.set_compression(Compression::Gzip, Some(1));
    for r in sample() {
        b.push(&r);
    }
    let gz = b.build_vec().expect("batch");
    let (h, plain) = validate_produced(&gz, 1 << 20, 1 << 20).expect("gzip batch");
    let zs = recompress(&gz, &plain.expect("decompressed"), Compression::Zstd, None);
    let (h2, _) = validate_produced(&zs, 1 << 20, 1 << 20).expect("zstd batch");
    assert_eq!(h2.codec(), Ok(Compression::Zstd));
    assert_eq!(h2.attributes & !COMPRESSION_MASK, h.attributes & !COMPRESSION_MASK);
    assert_eq!(
        (h2.producer_id, h2.producer_epoch, h2.base_sequence, h2.record_count),
        (7, 2, 40, 4)
    );
    let a: Vec<_> = RecordIter::new(Bytes::from(gz)).expect("gz").collect();
    let b: Vec<_> = RecordIter::new(Bytes::from(zs)).expect("zs").collect();
    assert_eq!(a, b);
}
