//! Decoding for consumers: split a buffer into batches, and a batch into records.
//!
//! Both iterators are bounded by the buffer they are given: every length is checked against the
//! bytes that remain before anything is sliced, so garbage yields an error item, never a panic.
//! Key, value and header values are `Bytes` slices of the input (no copy).

use bytes::Bytes;

use super::varint::{get_varint, get_varlong};
use super::*;
use crate::Offset;

/// One record read from a batch, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: Offset,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A `[start, end)` byte range within a batch.
pub(super) type Span = (usize, usize);

/// The fields of one record, as positions in the batch (shared by validation and decoding).
pub(super) struct RawRecord {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Span>,
    pub value: Option<Span>,
    pub headers: Vec<(Span, Option<Span>)>,
}

/// The most headers one record may carry; bounds the allocation for a lying header count.
pub const MAX_HEADERS_PER_RECORD: usize = 4096;

fn get_bytes(buf: &[u8], pos: &mut usize, end: usize) -> Result<Option<Span>, &'static str> {
    let len = get_varint(buf, pos).map_err(|_| "bad length varint")?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "negative length")?;
    if len > end.saturating_sub(*pos) {
        return Err("field runs past the record");
    }
    let start = *pos;
    *pos += len;
    Ok(Some((start, *pos)))
}

/// Parses the record starting at `*pos`, which must end by `end`; advances `*pos` past it.
/// `collect_headers` false skips building the header list (validation only counts).
pub(super) fn parse_record(
    buf: &[u8],
    pos: &mut usize,
    end: usize,
    collect_headers: bool,
) -> Result<RawRecord, &'static str> {
    let buf = &buf[..end];
    let len = get_varint(buf, pos).map_err(|_| "bad record length varint")?;
    let len = usize::try_from(len).map_err(|_| "negative record length")?;
    if len == 0 || len > end - *pos {
        return Err("record length out of bounds");
    }
    let rec_end = *pos + len;
    let rbuf = &buf[..rec_end];
    *pos += 1; // attributes
    let timestamp_delta = get_varlong(rbuf, pos).map_err(|_| "bad timestamp delta")?;
    let offset_delta = get_varint(rbuf, pos).map_err(|_| "bad offset delta")?;
    let key = get_bytes(rbuf, pos, rec_end)?;
    let value = get_bytes(rbuf, pos, rec_end)?;
    let count = get_varint(rbuf, pos).map_err(|_| "bad header count")?;
    let count = usize::try_from(count).map_err(|_| "negative header count")?;
    if count > MAX_HEADERS_PER_RECORD || count > rec_end - *pos {
        return Err("header count out of bounds");
    }
    let mut headers = Vec::with_capacity(if collect_headers { count } else { 0 });
    for _ in 0..count {
        let k = get_bytes(rbuf, pos, rec_end)?.ok_or("null header key")?;
        std::str::from_utf8(&rbuf[k.0..k.1]).map_err(|_| "header key is not UTF-8")?;
        let v = get_bytes(rbuf, pos, rec_end)?;
        if collect_headers {
            headers.push((k, v));
        }
    }
    if *pos != rec_end {
        return Err("record length disagrees with its fields");
    }
    Ok(RawRecord { timestamp_delta, offset_delta, key, value, headers })
}

/// Splits a buffer of back-to-back batches (a fetch response, a log read) into batches.
///
/// Yields `Err` once and stops at the first batch whose framing is wrong or that is cut short;
/// does not check CRCs (call [`validate`] on the items for that).
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    pos: usize,
    failed: bool,
}

impl BatchIter {
    pub fn new(buf: Bytes) -> BatchIter {
        BatchIter { buf, pos: 0, failed: false }
    }
}

impl Iterator for BatchIter {
    type Item = Result<Bytes, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match check_framing(rest, MAX_BATCH_LEN_LIMIT) {
            Ok(h) => {
                let b = self.buf.slice(self.pos..self.pos + h.total_len());
                self.pos += h.total_len();
                Some(Ok(b))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterates the records of one batch, decompressing a compressed batch's records first. Build it
/// from a batch that passed [`validate`]; on a batch that did not, it yields an error item and
/// stops rather than panicking.
#[derive(Debug, Clone)]
pub struct RecordIter {
    /// The records section: the batch itself (records from `HEADER_LEN`), or the decompressed
    /// records of a compressed batch (from 0).
    records: Bytes,
    header: BatchHeader,
    pos: usize,
    index: u32,
    failed: bool,
}

impl RecordIter {
    /// Starts decoding `batch`; fails if it is shorter than its header says, or if its records do
    /// not decompress within [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
    pub fn new(batch: Bytes) -> Result<RecordIter, BatchError> {
        Self::with_limit(batch, DEFAULT_MAX_DECOMPRESSED_BYTES)
    }

    /// Like [`new`](Self::new), with the bound on the decompressed records given.
    pub fn with_limit(
        batch: Bytes,
        max_decompressed_bytes: usize,
    ) -> Result<RecordIter, BatchError> {
        let header = check_framing(&batch, MAX_BATCH_LEN_LIMIT)?;
        let batch = batch.slice(..header.total_len());
        let (records, pos) = match header.codec()? {
            Compression::None => (batch, HEADER_LEN),
            codec => {
                let plain = codec.decompress(&batch[HEADER_LEN..], max_decompressed_bytes)?;
                (Bytes::from(plain), 0)
            }
        };
        Ok(RecordIter { records, header, pos, index: 0, failed: false })
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
}

impl Iterator for RecordIter {
    type Item = Result<DecodedRecord, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.header.record_count {
            return None;
        }
        let index = self.index;
        let end = self.records.len();
        match parse_record(&self.records, &mut self.pos, end, true) {
            Ok(raw) => {
                self.index += 1;
                let slice = |r: Span| self.records.slice(r.0..r.1);
                let headers = raw
                    .headers
                    .into_iter()
                    .map(|(k, v)| Header {
                        key: String::from_utf8_lossy(&self.records[k.0..k.1]).into_owned(),
                        value: v.map(slice),
                    })
                    .collect();
                Some(Ok(DecodedRecord {
                    offset: self.header.base_offset.plus(raw.offset_delta.max(0) as u64),
                    timestamp_ms: self.header.base_timestamp.wrapping_add(raw.timestamp_delta),
                    key: raw.key.map(slice),
                    value: raw.value.map(slice),
                    headers,
                }))
            }
            Err(reason) => {
                self.failed = true;
                Some(Err(BatchError::CorruptRecord { index, reason }))
            }
        }
    }
}
