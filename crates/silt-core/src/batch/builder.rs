//! `BatchBuilder`: how producers encode records into a batch.
//!
//! Records are encoded as they are pushed, into one buffer that already has room for the header;
//! `build` fills the header and the CRC. Record layout (all varints zig-zag):
//! `length, attributes: i8, timestamp_delta: varlong, offset_delta: varint,
//!  key_len: varint (-1 = null), key, value_len: varint (-1 = null), value,
//!  header_count: varint, { key_len: varint, key (UTF-8), value_len: varint (-1 = null), value }*`.

use bytes::Bytes;

use super::varint::{put_varint, put_varlong, varlong_len};
use super::*;
use crate::{LeaderEpoch, Offset};

/// A record header: a UTF-8 key and an optional value, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record as a producer hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// A record with only a value.
    pub fn value(value: impl Into<Bytes>, timestamp_ms: i64) -> Record {
        Record { value: Some(value.into()), timestamp_ms, ..Record::default() }
    }
}

/// Encodes records into one batch.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// Transactional and control bits (the codec's are set by `build`).
    attributes: u16,
    compression: Compression,
    level: Option<i32>,
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder for a non-idempotent producer.
    pub fn new() -> BatchBuilder {
        Self::with_capacity(4096)
    }

    /// An empty builder whose buffer starts with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            attributes: 0,
            compression: Compression::None,
            level: None,
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The size the batch has now, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The size the batch would have after pushing `record`, so a producer can keep under
    /// `batch_max_bytes`.
    pub fn size_with(&self, record: &Record) -> usize {
        let body = self.record_body_len(record);
        self.buf.len() + varlong_len(body as i64) + body
    }

    fn timestamp_delta(&self, record: &Record) -> i64 {
        if self.count == 0 { 0 } else { record.timestamp_ms.wrapping_sub(self.base_timestamp) }
    }

    fn record_body_len(&self, r: &Record) -> usize {
        let headers: usize = r
            .headers
            .iter()
            .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref()))
            .sum();
        1 + varlong_len(self.timestamp_delta(r))
            + varlong_len(i64::from(self.count))
            + bytes_len(r.key.as_deref())
            + bytes_len(r.value.as_deref())
            + varlong_len(r.headers.len() as i64)
            + headers
    }

    /// Appends one record. Its offset in the batch is the number of records pushed before it.
    pub fn push(&mut self, r: &Record) {
        if self.count == 0 {
            self.base_timestamp = r.timestamp_ms;
        }
        let body = self.record_body_len(r);
        let ts_delta = self.timestamp_delta(r);
        put_varlong(&mut self.buf, body as i64);
        let start = self.buf.len();
        self.buf.push(0); // record attributes, unused
        put_varlong(&mut self.buf, ts_delta);
        put_varint(&mut self.buf, self.count as i32);
        put_bytes(&mut self.buf, r.key.as_deref());
        put_bytes(&mut self.buf, r.value.as_deref());
        put_varlong(&mut self.buf, r.headers.len() as i64);
        for h in &r.headers {
            put_bytes(&mut self.buf, Some(h.key.as_bytes()));
            put_bytes(&mut self.buf, h.value.as_deref());
        }
        debug_assert_eq!(self.buf.len() - start, body);
        self.max_timestamp = self.max_timestamp.max(r.timestamp_ms);
        self.count += 1;
    }

    /// Marks the batch as part of a transaction (its producer's; see `set_producer`).
    pub fn set_transactional(&mut self) {
        self.attributes |= TRANSACTIONAL_FLAG;
    }

    /// Marks the batch as a control batch (a transaction marker; brokers write them).
    pub(super) fn set_control(&mut self) {
        self.attributes |= CONTROL_FLAG;
    }

    /// Compresses the records with `codec` when the batch is built (`level` as
    /// [`Compression::check_level`] allows; out of range is clamped). Sizes reported before
    /// `build` are uncompressed.
    pub fn set_compression(&mut self, codec: Compression, level: Option<i32>) {
        self.compression = codec;
        self.level = level;
    }

    /// Marks the batch as coming from an idempotent producer (used by a later stage).
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    /// Fills the header and CRC and returns the encoded batch, with base offset 0 and no leader
    /// epoch (the leader stamps both). An empty builder yields `None`: a batch has >= 1 record.
    pub fn build(self) -> Option<Bytes> {
        self.build_vec().map(Bytes::from)
    }

    /// Like [`build`](Self::build), returning the owned buffer (so a leader can patch it).
    pub fn build_vec(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        if self.compression != Compression::None {
            let packed = self.compression.compress(self.level, &self.buf[HEADER_LEN..]);
            self.buf.truncate(HEADER_LEN);
            self.buf.extend_from_slice(&packed);
            self.attributes |= self.compression.id();
        }
        let batch_length = (self.buf.len() - LOG_OVERHEAD) as u32;
        let b = &mut self.buf;
        b[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&batch_length.to_be_bytes());
        b[MAGIC_POS] = MAGIC;
        b[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&self.attributes.to_be_bytes());
        b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4]
            .copy_from_slice(&(self.count - 1).to_be_bytes());
        b[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        b[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&self.count.to_be_bytes());
        patch_base_offset_and_epoch(b, Offset::ZERO, LeaderEpoch::NONE);
        let crc = crc_of(b);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        Some(self.buf)
    }
}

/// `batch` with its records section replaced by `plain_records` (the records uncompressed, as
/// [`validate_produced`](super::validate_produced) returns them or as they stand in an
/// uncompressed batch) compressed with `to`: the header is kept but for the codec bits, the
/// length and the CRC. What a broker does when a topic's `compression.type` names a codec other
/// than the producer's.
pub fn recompress(
    batch: &[u8],
    plain_records: &[u8],
    to: Compression,
    level: Option<i32>,
) -> Vec<u8> {
    let packed = to.compress(level, plain_records);
    let mut out = Vec::with_capacity(HEADER_LEN + packed.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&packed);
    let attributes = u16::from_be_bytes([out[ATTRIBUTES_POS], out[ATTRIBUTES_POS + 1]]);
    let attributes = (attributes & !COMPRESSION_MASK) | to.id();
    out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    let batch_length = (out.len() - LOG_OVERHEAD) as u32;
    out[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc_of(&out);
    out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    out
}
