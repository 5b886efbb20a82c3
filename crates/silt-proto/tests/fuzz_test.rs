//! Fuzz-style check of the protobuf messages a broker decodes from clients and peers (issue 14):
//! encodings of valid requests and answers with lying length prefixes, flipped bits, cuts and
//! random tails decode to an error or to some message, never a panic, and never allocate more
//! than the input could hold (prost checks every length against the bytes left). `SILT_FUZZ_CASES`
//! sets the number of cases (default 100,000).

use prost::Message;
use silt_proto::internal::{ReplicaFetchPartitionResponse, ReplicaFetchResponse};
use silt_proto::v1;

use silt_core::rng::XorShift as Rng;

fn seeds() -> Vec<Vec<u8>> {
    let produce = v1::ProduceRequest {
        acks: 1,
        timeout_ms: 1_000,
        topics: vec![v1::TopicProduceData {
            topic: "t".into(),
            partitions: (0..3)
                .map(|p| v1::PartitionProduceData {
                    partition: p,
                    data: Some(v1::partition_produce_data::Data::RecordBatches(
                        vec![7u8; 100].into(),
                    )),
                })
                .collect(),
        }],
        ..Default::default()
    };
    let fetch = v1::FetchRequest {
        max_wait_ms: 500,
        topics: vec![v1::TopicFetchData {
            topic: "t".into(),
            partitions: vec![v1::PartitionFetchData { partition: 1, ..Default::default() }],
        }],
        ..Default::default()
    };
    let replica = ReplicaFetchResponse {
        partitions: vec![ReplicaFetchPartitionResponse {
            topic: "t".into(),
            records: vec![1u8; 300].into(),
            ..Default::default()
        }],
    };
    vec![produce.encode_to_vec(), fetch.encode_to_vec(), replica.encode_to_vec()]
}

/// A varint length claiming far more bytes than follow.
fn lying_length(rng: &mut Rng) -> Vec<u8> {
    let mut v = rng.next() | (1 << 40);
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            b.push(rng.next() as u8);
            continue;
        }
        match rng.below(5) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                let lie = lying_length(rng);
                b.splice(i..i, lie);
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 => b.extend((0..rng.below(32)).map(|_| rng.next() as u8)),
            _ => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
    }
    b
}

#[test]
fn mutated_messages_decode_to_errors_never_panics() {
    let cases: u64 =
        std::env::var("SILT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seeds = seeds();
    let mut rng = Rng(0x0b5e_55ed_c0de);
    for case in 0..cases {
        let b = mutate(&mut rng, &seeds);
        let r = std::panic::catch_unwind(|| {
            let _ = v1::ProduceRequest::decode(b.as_slice());
            let _ = v1::FetchRequest::decode(b.as_slice());
            let _ = ReplicaFetchResponse::decode(b.as_slice());
            let _ = v1::GroupHeartbeatRequest::decode(b.as_slice());
        });
        assert!(r.is_ok(), "case {case} panicked on {b:?}");
    }
}
