//! Batch checks: the framing a log scan needs, and the full check a leader runs before append.
//!
//! Neither re-encodes or copies: they read the header, hash the CRC range and walk the records.

use super::compression::Compression;
use super::decode::parse_record;
use super::*;

/// Why a batch was refused. Every variant says what was found, so an operator can tell a buggy
/// client from a damaged disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("batch length {length} is outside [{min}, {max}]")]
    LengthOutOfBounds { length: u64, min: u64, max: u64 },
    #[error("batch declares {declared} bytes but {available} are present")]
    Truncated { declared: usize, available: usize },
    #[error("unknown batch magic {found} (expected {MAGIC})")]
    BadMagic { found: u8 },
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("compression codec {codec} is not supported")]
    UnsupportedCompression { codec: u16 },
    #[error("the records do not decompress (codec {codec}): {reason}")]
    Decompression { codec: u16, reason: String },
    #[error("the records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("record count {record_count} disagrees with last offset delta {last_offset_delta}")]
    BadRecordCount { record_count: u32, last_offset_delta: u32 },
    #[error("record {index} is corrupt: {reason}")]
    CorruptRecord { index: u32, reason: &'static str },
    #[error("record {index} has offset delta {found}, out of order or out of the batch")]
    BadOffsetDelta { index: u32, found: i32 },
    #[error("max timestamp {stored} disagrees with the records' maximum {computed}")]
    BadMaxTimestamp { stored: i64, computed: i64 },
    #[error("{extra} bytes follow the last record")]
    TrailingBytes { extra: usize },
}

/// Checks what a reader needs to step over the batch at the start of `buf` safely: a whole
/// header, a `batch_length` within `[HEADER_LEN - LOG_OVERHEAD, max_batch_bytes]`, the bytes it
/// declares present, and the magic. Returns the header. `buf` may continue past the batch.
pub fn check_framing(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf).ok_or(BatchError::TooShort { len: buf.len() })?;
    let min = (HEADER_LEN - LOG_OVERHEAD) as u64;
    let max = max_batch_bytes.min(MAX_BATCH_LEN_LIMIT).saturating_sub(LOG_OVERHEAD) as u64;
    let length = u64::from(h.batch_length);
    if length < min || length > max {
        return Err(BatchError::LengthOutOfBounds { length, min, max });
    }
    if h.total_len() > buf.len() {
        return Err(BatchError::Truncated { declared: h.total_len(), available: buf.len() });
    }
    if h.magic != MAGIC {
        return Err(BatchError::BadMagic { found: h.magic });
    }
    Ok(h)
}

/// What a consumer checks before decoding a fetched batch: framing and CRC (the records'
/// structure is checked as they are decoded). `batch` must be exactly one batch.
pub fn verify_crc(batch: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    let h = check_framing(batch, max_batch_bytes)?;
    if h.total_len() != batch.len() {
        return Err(BatchError::TrailingBytes { extra: batch.len() - h.total_len() });
    }
    let computed = crc_of(batch);
    if computed != h.crc {
        return Err(BatchError::CrcMismatch { stored: h.crc, computed });
    }
    Ok(h)
}

/// The check storage runs on every batch it appends or recovers: framing, CRC, a known codec,
/// record count against the offset delta and, for an uncompressed batch, every record's framing,
/// offset delta and timestamp. A compressed batch's records are covered by its CRC and were
/// decompressed and checked by the leader that took it ([`validate_produced`]); storage does not
/// decompress. A batch the log cleaner rewrote (compaction) may hold fewer records than its offset
/// range — its offset deltas rise with gaps, and it may be empty — so storage accepts that; a
/// produced batch must be dense. `batch` must be exactly one batch. Returns its header.
pub fn validate(batch: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    let h = check_header(batch, max_batch_bytes, false)?;
    if h.compression() == 0 {
        check_records(&h, batch, HEADER_LEN, false)?;
    }
    Ok(h)
}

/// The full check a leader runs on a produced batch: everything [`validate`] checks, a dense
/// batch (offset deltas 0, 1, 2, …, at least one record) and, for a compressed batch, that the
/// records decompress within `max_decompressed_bytes` and check like an uncompressed batch's.
/// Returns the header and, for a compressed batch, the records section decompressed (so a broker
/// that recompresses does not decompress twice).
pub fn validate_produced(
    batch: &[u8],
    max_batch_bytes: usize,
    max_decompressed_bytes: usize,
) -> Result<(BatchHeader, Option<Vec<u8>>), BatchError> {
    let h = check_header(batch, max_batch_bytes, true)?;
    let codec = h.codec()?;
    if codec == Compression::None {
        check_records(&h, batch, HEADER_LEN, true)?;
        return Ok((h, None));
    }
    let records = codec.decompress(&batch[HEADER_LEN..], max_decompressed_bytes)?;
    check_records(&h, &records, 0, true)?;
    Ok((h, Some(records)))
}

fn check_header(
    batch: &[u8],
    max_batch_bytes: usize,
    dense: bool,
) -> Result<BatchHeader, BatchError> {
    let h = verify_crc(batch, max_batch_bytes)?;
    h.codec()?;
    let room = u64::from(h.last_offset_delta) + 1;
    let fits =
        if dense { u64::from(h.record_count) == room } else { u64::from(h.record_count) <= room };
    if !fits || (dense && h.record_count == 0) {
        return Err(BatchError::BadRecordCount {
            record_count: h.record_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Walks `h.record_count` records in `buf` from `start` to its end. Offset deltas must be 0, 1,
/// 2, … when `dense`, else rising within `[0, last_offset_delta]`.
fn check_records(h: &BatchHeader, buf: &[u8], start: usize, dense: bool) -> Result<(), BatchError> {
    let mut pos = start;
    let mut max_ts = i64::MIN;
    let mut prev: i64 = -1;
    for index in 0..h.record_count {
        if pos >= buf.len() {
            return Err(BatchError::CorruptRecord {
                index,
                reason: "batch ends before its records",
            });
        }
        let raw = parse_record(buf, &mut pos, buf.len(), false)
            .map_err(|reason| BatchError::CorruptRecord { index, reason })?;
        let delta = i64::from(raw.offset_delta);
        let ok = if dense {
            delta == i64::from(index)
        } else {
            delta > prev && delta <= i64::from(h.last_offset_delta)
        };
        if !ok {
            return Err(BatchError::BadOffsetDelta { index, found: raw.offset_delta });
        }
        prev = delta;
        max_ts = max_ts.max(h.base_timestamp.wrapping_add(raw.timestamp_delta));
    }
    if pos != buf.len() {
        return Err(BatchError::TrailingBytes { extra: buf.len() - pos });
    }
    if h.record_count > 0 && max_ts != h.max_timestamp {
        return Err(BatchError::BadMaxTimestamp { stored: h.max_timestamp, computed: max_ts });
    }
    Ok(())
}
