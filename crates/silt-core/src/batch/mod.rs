//! The record batch: the unit of storage, replication and transfer.
//!
//! A producer encodes records into a batch ([`BatchBuilder`]); the leader checks it without
//! re-encoding ([`validate`]) and stamps its base offset and leader epoch in place
//! ([`patch_base_offset_and_epoch`]); the log stores it byte for byte; consumers decode it
//! ([`BatchIter`], [`RecordIter`]). Every field position is a named constant below, and
//! `docs/format.md` draws the same layout. All integers in the header are big endian. The bytes
//! are Kafka's RecordBatch v2 exactly (magic 2, CRC-32C), so a Kafka client's batch is stored and
//! served as it came.
//!
//! ```text
//!  0  base_offset            u64   set by the leader, not covered by the CRC
//!  8  batch_length           u32   bytes after this field
//! 12  partition_leader_epoch u32   set by the leader, not covered by the CRC
//! 16  magic                  u8    format version, MAGIC (2)
//! 17  crc                    u32   CRC-32C (Castagnoli) of bytes [21, end)
//! 21  attributes             u16   bits 0-2 compression, bit 4 transactional, bit 5 control
//! 23  last_offset_delta      u32   record_count - 1
//! 27  base_timestamp         i64   ms since the Unix epoch
//! 35  max_timestamp          i64
//! 43  producer_id            i64   -1 when not idempotent
//! 51  producer_epoch         i16
//! 53  base_sequence          i32
//! 57  record_count           u32
//! 61  records...
//! ```

mod builder;
mod compact;
mod compression;
mod control;
mod decode;
mod header;
mod validate;
mod varint;

pub use builder::{BatchBuilder, Header, Record, recompress};
pub use compact::{Filtered, RecordRef, filter_records, for_each_record, for_each_record_in};
pub use compression::{Compression, DEFAULT_MAX_DECOMPRESSED_BYTES};
pub use control::Marker;
pub use decode::{BatchIter, DecodedRecord, MAX_HEADERS_PER_RECORD, RecordIter};
pub use header::{BatchHeader, patch_base_offset_and_epoch, stamp_producer};
pub use validate::{BatchError, check_framing, validate, validate_produced, verify_crc};

/// Position of `base_offset` (u64).
pub const BASE_OFFSET_POS: usize = 0;
/// Position of `batch_length` (u32): the number of bytes after this field.
pub const LENGTH_POS: usize = 8;
/// Position of `partition_leader_epoch` (u32).
pub const PARTITION_LEADER_EPOCH_POS: usize = 12;
/// Position of `magic` (u8).
pub const MAGIC_POS: usize = 16;
/// Position of `crc` (u32).
pub const CRC_POS: usize = 17;
/// Position of `attributes` (u16); the CRC covers everything from here to the end of the batch.
pub const ATTRIBUTES_POS: usize = 21;
/// Position of `last_offset_delta` (u32).
pub const LAST_OFFSET_DELTA_POS: usize = 23;
/// Position of `base_timestamp` (i64).
pub const BASE_TIMESTAMP_POS: usize = 27;
/// Position of `max_timestamp` (i64).
pub const MAX_TIMESTAMP_POS: usize = 35;
/// Position of `producer_id` (i64).
pub const PRODUCER_ID_POS: usize = 43;
/// Position of `producer_epoch` (i16).
pub const PRODUCER_EPOCH_POS: usize = 51;
/// Position of `base_sequence` (i32).
pub const BASE_SEQUENCE_POS: usize = 53;
/// Position of `record_count` (u32).
pub const RECORD_COUNT_POS: usize = 57;
/// Position of the first record; also the size of the fixed header.
pub const RECORDS_POS: usize = 61;
/// The fixed header size in bytes.
pub const HEADER_LEN: usize = RECORDS_POS;
/// Bytes before the part that `batch_length` counts (`base_offset` + `batch_length`).
pub const LOG_OVERHEAD: usize = LENGTH_POS + 4;
/// The first byte covered by the CRC.
pub const CRC_START: usize = ATTRIBUTES_POS;
/// The batch format version this code writes and reads: Kafka's RecordBatch v2.
pub const MAGIC: u8 = 2;
/// The format of Silt before Kafka parity: the same layout with magic 1 and CRC-32 (IEEE). It is
/// not read; a data directory holding it is refused at start (see `docs/format.md`).
pub const MAGIC_V1_SILT: u8 = 1;
/// Mask of the compression codec bits in `attributes` ([`Compression`] ids).
pub const COMPRESSION_MASK: u16 = 0b111;
/// `attributes` bit marking a transactional batch.
pub const TRANSACTIONAL_FLAG: u16 = 1 << 4;
/// `attributes` bit marking a control batch (a transaction marker, [`Marker`]).
pub const CONTROL_FLAG: u16 = 1 << 5;
/// `producer_id` / `producer_epoch` / `base_sequence` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_SEQUENCE: i32 = -1;
/// The hard upper bound on one batch, whatever the configuration says (`batch_length` is a u32,
/// but no sane batch comes near this; readers refuse anything larger before allocating).
pub const MAX_BATCH_LEN_LIMIT: usize = 256 * 1024 * 1024;

/// The CRC stored in a batch: CRC-32C (Castagnoli, as Kafka's v2 format has it) over
/// `[CRC_START, end)`.
pub fn crc_of(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START.min(batch.len())..])
}

#[cfg(test)]
mod golden_test;
#[cfg(test)]
mod roundtrip_test;
