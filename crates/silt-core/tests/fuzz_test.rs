//! Fuzz-style check of the batch decoders (issue 14: every length from the network or the disk is
//! bounded before allocation; bad input is an error, never a panic). Valid batches are mutated —
//! bit flips, length and count fields overwritten with random or extreme values, truncation,
//! random tails, splices — half of them with the CRC fixed up afterwards so the record parser
//! sees the garbage too, and every decoder runs on each: `BatchHeader::parse`, `check_framing`,
//! `verify_crc`, `validate`, `validate_produced`, `BatchIter`, `RecordIter`; seeds include a
//! batch of every codec, so the decompressors see the garbage too. The test passes if nothing panics and
//! every accepted batch decodes to exactly its record count.
//!
//! CI runs `SILT_FUZZ_CASES` cases (default 300,000, a few seconds); for a long run:
//! `SILT_FUZZ_CASES=10000000 cargo test --release -p silt-core --test fuzz_test`.

use bytes::Bytes;
use silt_core::batch::Compression;
use silt_core::batch::{
    BatchBuilder, BatchHeader, BatchIter, CRC_POS, Header, LENGTH_POS, RECORD_COUNT_POS, Record,
    RecordIter, check_framing, crc_of, validate, validate_produced, verify_crc,
};

use silt_core::rng::XorShift as Rng;

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for shape in 0..6usize + Compression::ALL.len() {
        let mut b = BatchBuilder::new();
        if let Some(&codec) = Compression::ALL.get(shape.saturating_sub(5)) {
            b.set_compression(codec, None);
        }
        for i in 0..(1 + shape * 3) {
            b.push(&Record {
                key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (shape != 3).then(|| Bytes::from(vec![b'v'; i * 17 % 300])),
                headers: (0..(i % 3))
                    .map(|h| Header { key: format!("h{h}"), value: Some(Bytes::from("x")) })
                    .collect(),
                timestamp_ms: 1_700_000_000_000 + i as i64 * 7,
            });
        }
        out.push(b.build_vec().expect("a batch"));
    }
    out
}

const EXTREMES: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x0100_0000];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(rng.next() as u8);
            continue;
        }
        match rng.below(7) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                // A length or count field with a random or extreme value.
                let at = [LENGTH_POS, RECORD_COUNT_POS, 23][rng.below(3)];
                let v = if rng.below(2) == 0 {
                    EXTREMES[rng.below(EXTREMES.len())]
                } else {
                    rng.next() as u32
                };
                if at + 4 <= b.len() {
                    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            2 => {
                // Garbage inside the records (varint lengths included).
                let i = 61 + rng.below(b.len().saturating_sub(61));
                if i < b.len() {
                    b[i] = [0x7f, 0xff, 0x80, 0x01, 0x00][rng.below(5)];
                }
            }
            3 => b.truncate(rng.below(b.len() + 1)),
            4 => b.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(b.len());
                b.truncate(cut);
                b.extend_from_slice(&other[rng.below(other.len())..]);
            }
            _ => {
                let i = rng.below(b.len());
                b.insert(i, rng.next() as u8);
            }
        }
    }
    if rng.below(2) == 0 && b.len() >= CRC_POS + 4 {
        let crc = crc_of(&b);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }
    b
}

fn exercise(b: &[u8]) {
    let max = 1 << 20;
    let _ = BatchHeader::parse(b);
    let _ = check_framing(b, max);
    let _ = verify_crc(b, max);
    let stored = validate(b, max);
    let accepted = validate_produced(b, max, max).map(|(h, _)| h);
    if accepted.is_ok() {
        assert!(stored.is_ok(), "produced but not storable: {b:?}");
    }
    let bytes = Bytes::copy_from_slice(b);
    for item in BatchIter::new(bytes.clone()).take(1_000) {
        if item.is_err() {
            break;
        }
    }
    if let Ok(records) = RecordIter::new(bytes) {
        let decoded: Vec<_> = records.take(100_000).collect();
        if let Ok(h) = accepted {
            assert_eq!(decoded.len(), h.record_count as usize, "accepted batch: {b:?}");
            assert!(decoded.iter().all(Result::is_ok), "accepted batch: {b:?}");
        }
    } else {
        assert!(accepted.is_err(), "validated but undecodable: {b:?}");
    }
}

#[test]
fn mutated_batches_are_errors_never_panics() {
    let cases: u64 =
        std::env::var("SILT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let seeds = seeds();
    for s in &seeds {
        validate_produced(s, 1 << 20, 1 << 20).expect("seeds are valid");
        exercise(s);
    }
    let mut rng = Rng(0x005e_ed0f_5117);
    for case in 0..cases {
        let b = mutate(&mut rng, &seeds);
        let r = std::panic::catch_unwind(|| exercise(&b));
        assert!(r.is_ok(), "case {case} panicked on {b:?}");
    }
}
