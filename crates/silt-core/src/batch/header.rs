//! The fixed batch header, read from bytes, and the in-place patch a leader applies.

use super::*;
use crate::{LeaderEpoch, Offset};

/// The fixed-size header of a batch, decoded. Reading it checks nothing but the size; see
/// [`validate`](super::validate) for the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    /// Bytes after the `batch_length` field; the whole batch is `LOG_OVERHEAD + batch_length`.
    pub batch_length: u32,
    pub partition_leader_epoch: LeaderEpoch,
    pub magic: u8,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: u32,
    /// Milliseconds since the Unix epoch.
    pub base_timestamp: i64,
    /// Milliseconds since the Unix epoch; the largest record timestamp in the batch.
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

fn u32_at(b: &[u8], pos: usize) -> u32 {
    u32::from_be_bytes(b[pos..pos + 4].try_into().expect("invariant: 4-byte slice"))
}

fn u64_at(b: &[u8], pos: usize) -> u64 {
    u64::from_be_bytes(b[pos..pos + 8].try_into().expect("invariant: 8-byte slice"))
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`; `None` if `buf` is shorter than a header.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: Offset(u64_at(buf, BASE_OFFSET_POS)),
            batch_length: u32_at(buf, LENGTH_POS),
            partition_leader_epoch: LeaderEpoch(u32_at(buf, PARTITION_LEADER_EPOCH_POS)),
            magic: buf[MAGIC_POS],
            crc: u32_at(buf, CRC_POS),
            attributes: u16::from_be_bytes([buf[ATTRIBUTES_POS], buf[ATTRIBUTES_POS + 1]]),
            last_offset_delta: u32_at(buf, LAST_OFFSET_DELTA_POS),
            base_timestamp: u64_at(buf, BASE_TIMESTAMP_POS) as i64,
            max_timestamp: u64_at(buf, MAX_TIMESTAMP_POS) as i64,
            producer_id: u64_at(buf, PRODUCER_ID_POS) as i64,
            producer_epoch: i16::from_be_bytes([
                buf[PRODUCER_EPOCH_POS],
                buf[PRODUCER_EPOCH_POS + 1],
            ]),
            base_sequence: u32_at(buf, BASE_SEQUENCE_POS) as i32,
            record_count: u32_at(buf, RECORD_COUNT_POS),
        })
    }

    /// The whole batch size in bytes, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// The offset of the last record.
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(u64::from(self.last_offset_delta))
    }

    /// The offset after the last record: where the next batch starts.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().next()
    }

    /// The compression codec bits of `attributes`.
    pub fn compression(&self) -> u16 {
        self.attributes & COMPRESSION_MASK
    }

    /// The batch's codec; ids 5-7 name none.
    pub fn codec(&self) -> Result<Compression, BatchError> {
        Compression::from_id(self.compression())
            .ok_or(BatchError::UnsupportedCompression { codec: self.compression() })
    }
}

/// Writes `base_offset` and `partition_leader_epoch` into a batch in place. Neither field is
/// covered by the CRC, so the batch stays valid. `batch` must hold at least a header.
pub fn patch_base_offset_and_epoch(batch: &mut [u8], base_offset: Offset, epoch: LeaderEpoch) {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.0.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH_POS..PARTITION_LEADER_EPOCH_POS + 4]
        .copy_from_slice(&epoch.0.to_be_bytes());
}

/// Stamps an encoded batch with an idempotent producer's id, epoch and first sequence, and
/// recomputes its CRC (the fields are covered by it). `false` if `batch` is shorter than a
/// header (nothing is changed).
pub fn stamp_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> bool {
    if batch.len() < HEADER_LEN {
        return false;
    }
    batch[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2]
        .copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc_of(batch);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    true
}

#[cfg(test)]
mod stamp_tests {
    use super::*;

    #[test]
    fn a_stamped_batch_carries_the_producer_and_a_valid_crc() {
        let mut b = BatchBuilder::new();
        b.push(&Record::value("x", 5));
        b.push(&Record::value("y", 6));
        let mut v = b.build_vec().unwrap();
        assert!(stamp_producer(&mut v, 42, 3, 7));
        let h = BatchHeader::parse(&v).unwrap();
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42, 3, 7));
        validate(&v, 1 << 20).expect("still valid, CRC included");
        assert!(!stamp_producer(&mut [0u8; 10], 1, 0, 0));
    }
}
