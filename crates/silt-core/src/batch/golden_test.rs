//! Golden test: pins the byte layout of a batch. If this fails, the on-disk and wire format
//! changed: bump `MAGIC` and update `docs/format.md`, don't just re-bless the file.
//! Re-bless (for a deliberate change) with `SILT_BLESS=1 cargo test -p silt-core golden`.

use bytes::Bytes;

use super::*;
use crate::{LeaderEpoch, Offset};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/batch_v2.hex");

fn golden_batch() -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(&Record {
        key: Some(Bytes::from_static(b"key")),
        value: Some(Bytes::from_static(b"value")),
        headers: vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"v")) }],
        timestamp_ms: 1_000,
    });
    b.push(&Record {
        key: None,
        value: Some(Bytes::from_static(b"x")),
        headers: vec![],
        timestamp_ms: 1_002,
    });
    let mut batch = b.build_vec().expect("non-empty");
    patch_base_offset_and_epoch(&mut batch, Offset(42), LeaderEpoch(7));
    batch
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, byte) in b.iter().enumerate() {
        s.push_str(&format!("{byte:02x}"));
        s.push(if i % 16 == 15 { '\n' } else { ' ' });
    }
    s.trim_end().to_string() + "\n"
}

#[test]
fn golden_batch_bytes_are_stable() {
    let batch = golden_batch();
    if std::env::var_os("SILT_BLESS").is_some() {
        std::fs::write(GOLDEN, hex(&batch)).expect("write golden file");
    }
    let want = std::fs::read_to_string(GOLDEN).expect("golden file present");
    assert_eq!(hex(&batch), want, "batch layout changed");
}

#[test]
fn golden_header_fields_sit_at_their_documented_positions() {
    let b = golden_batch();
    assert_eq!(&b[BASE_OFFSET_POS..BASE_OFFSET_POS + 8], &42u64.to_be_bytes());
    assert_eq!(&b[LENGTH_POS..LENGTH_POS + 4], &((b.len() - LOG_OVERHEAD) as u32).to_be_bytes());
    assert_eq!(&b[PARTITION_LEADER_EPOCH_POS..PARTITION_LEADER_EPOCH_POS + 4], &7u32.to_be_bytes());
    assert_eq!(b[MAGIC_POS], 2);
    assert_eq!(&b[ATTRIBUTES_POS..ATTRIBUTES_POS + 2], &[0, 0]);
    assert_eq!(&b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4], &1u32.to_be_bytes());
    assert_eq!(&b[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8], &1000i64.to_be_bytes());
    assert_eq!(&b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8], &1002i64.to_be_bytes());
    assert_eq!(&b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8], &(-1i64).to_be_bytes());
    assert_eq!(&b[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2], &(-1i16).to_be_bytes());
    assert_eq!(&b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4], &(-1i32).to_be_bytes());
    assert_eq!(&b[RECORD_COUNT_POS..RECORD_COUNT_POS + 4], &2u32.to_be_bytes());
    assert_eq!(&b[CRC_POS..CRC_POS + 4], &crc32c::crc32c(&b[CRC_START..]).to_be_bytes());
    // First record: length 18, attributes 0, ts delta 0, offset delta 0, key "key", value "value",
    // one header "h" = "v" (all varints zig-zag, so n encodes as 2n).
    let r0 = &b[HEADER_LEN..HEADER_LEN + 19];
    assert_eq!(
        r0,
        &[36, 0, 0, 0, 6, b'k', b'e', b'y', 10, b'v', b'a', b'l', b'u', b'e', 2, 2, b'h', 2, b'v']
    );
}

#[test]
fn the_batch_crc_is_crc32c_as_in_kafka() {
    // The CRC-32C check value (RFC 3720 / iSCSI): "123456789" -> 0xE3069283.
    let mut probe = vec![0u8; CRC_START];
    probe.extend_from_slice(b"123456789");
    assert_eq!(crc_of(&probe), 0xE306_9283);
}
