//! What the log cleaner does to one stored batch: read its records' keys, and rebuild it with a
//! subset of them (compaction). A rebuilt batch keeps its base offset, last offset delta, base
//! timestamp, producer fields and attributes, so offsets never move and the next batch still
//! follows it; its records keep their own offset and timestamp deltas, so they are copied, not
//! re-encoded (a compressed batch is decompressed and compressed again with its codec). A batch
//! left with no record is kept as an empty batch (record count 0, no records section) where the
//! cleaner needs its header: as the last batch of a segment (which ends the segment's offset
//! range) or of a producer (whose sequence state it carries), as Kafka's cleaner does.

use super::decode::parse_record;
use super::*;
use crate::Offset;

/// One record as the cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: a delete marker for its key.
    pub tombstone: bool,
}

/// What [`filter_records`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record is kept: store the batch as it is.
    Unchanged,
    /// Some records are kept: the rebuilt batch.
    Rewritten(Vec<u8>),
    /// No record is kept: the batch's header alone (record count 0), for callers that must keep
    /// it; the rest drop the batch.
    Emptied(Vec<u8>),
}

/// Calls `f` for every record of `batch` (decompressing within `max_decompressed`). Returns the
/// header.
pub fn for_each_record(
    batch: &[u8],
    max_decompressed: usize,
    mut f: impl FnMut(RecordRef<'_>),
) -> Result<BatchHeader, BatchError> {
    let h = check_framing(batch, MAX_BATCH_LEN_LIMIT)?;
    let batch = &batch[..h.total_len()];
    let plain;
    let (buf, start) = match h.codec()? {
        Compression::None => (batch, HEADER_LEN),
        codec => {
            plain = codec.decompress(&batch[HEADER_LEN..], max_decompressed)?;
            (plain.as_slice(), 0)
        }
    };
    walk(&h, buf, start, |r, _| f(r))?;
    Ok(h)
}

/// Calls `f` for every record of a batch whose records section is already at hand: `records`
/// from `start` (the batch itself from `HEADER_LEN`, or its decompressed records from 0, as
/// [`validate_produced`](super::validate_produced) returns them), so nothing is decompressed
/// twice.
pub fn for_each_record_in(
    h: &BatchHeader,
    records: &[u8],
    start: usize,
    mut f: impl FnMut(RecordRef<'_>),
) -> Result<(), BatchError> {
    walk(h, records, start, |r, _| f(r))
}

/// Walks the records of `buf` from `start`, calling `f` with each and its byte span.
fn walk(
    h: &BatchHeader,
    buf: &[u8],
    start: usize,
    mut f: impl FnMut(RecordRef<'_>, (usize, usize)),
) -> Result<(), BatchError> {
    let mut pos = start;
    for index in 0..h.record_count {
        let at = pos;
        let raw = parse_record(buf, &mut pos, buf.len(), false)
            .map_err(|reason| BatchError::CorruptRecord { index, reason })?;
        let delta = u64::try_from(raw.offset_delta)
            .map_err(|_| BatchError::BadOffsetDelta { index, found: raw.offset_delta })?;
        let r = RecordRef {
            offset: h.base_offset.plus(delta),
            timestamp_ms: h.base_timestamp.wrapping_add(raw.timestamp_delta),
            key: raw.key.map(|(a, b)| &buf[a..b]),
            tombstone: raw.value.is_none(),
        };
        f(r, (at, pos));
    }
    Ok(())
}

/// Rebuilds `batch` with the records `keep` accepts (see the module doc).
pub fn filter_records(
    batch: &[u8],
    max_decompressed: usize,
    mut keep: impl FnMut(RecordRef<'_>) -> bool,
) -> Result<Filtered, BatchError> {
    let h = check_framing(batch, MAX_BATCH_LEN_LIMIT)?;
    let batch = &batch[..h.total_len()];
    let codec = h.codec()?;
    let plain;
    let (buf, start) = match codec {
        Compression::None => (batch, HEADER_LEN),
        codec => {
            plain = codec.decompress(&batch[HEADER_LEN..], max_decompressed)?;
            (plain.as_slice(), 0)
        }
    };
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut max_ts = i64::MIN;
    walk(&h, buf, start, |r, span| {
        if keep(r) {
            kept.push(span);
            max_ts = max_ts.max(r.timestamp_ms);
        }
    })?;
    if kept.len() == h.record_count as usize {
        return Ok(Filtered::Unchanged);
    }
    let mut records = Vec::with_capacity(kept.iter().map(|(a, b)| b - a).sum());
    for (a, b) in &kept {
        records.extend_from_slice(&buf[*a..*b]);
    }
    let mut attributes = h.attributes;
    let body = if kept.is_empty() {
        attributes &= !COMPRESSION_MASK;
        Vec::new()
    } else if codec == Compression::None {
        records
    } else {
        codec.compress(None, &records)
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&body);
    out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    out[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&(kept.len() as u32).to_be_bytes());
    if !kept.is_empty() {
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_ts.to_be_bytes());
    }
    let batch_length = (out.len() - LOG_OVERHEAD) as u32;
    out[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc_of(&out);
    out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(if kept.is_empty() { Filtered::Emptied(out) } else { Filtered::Rewritten(out) })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn keyed(codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.set_compression(codec, None);
        b.set_producer(9, 1, 100);
        for i in 0..6i64 {
            b.push(&Record {
                key: Some(Bytes::from(format!("k{}", i % 3))),
                value: (i != 4).then(|| Bytes::from(format!("v{i}"))),
                headers: vec![],
                timestamp_ms: 1000 + i,
            });
        }
        let mut v = b.build_vec().unwrap();
        patch_base_offset_and_epoch(&mut v, Offset(50), crate::LeaderEpoch(2));
        v
    }

    #[test]
    fn filtering_keeps_offsets_and_the_batch_range_for_every_codec() {
        for codec in Compression::ALL {
            let batch = keyed(codec);
            let mut seen = Vec::new();
            for_each_record(&batch, 1 << 20, |r| {
                seen.push((r.offset.0, r.key.map(<[u8]>::to_vec), r.tombstone))
            })
            .unwrap();
            assert_eq!(seen.len(), 6);
            assert_eq!(seen[4], (54, Some(b"k1".to_vec()), true));
            // Keep the last record of each key: offsets 53, 54 (tombstone), 55.
            let Filtered::Rewritten(out) =
                filter_records(&batch, 1 << 20, |r| r.offset.0 >= 53).unwrap()
            else {
                panic!("{codec}: rewritten expected")
            };
            let h = validate(&out, 1 << 20).expect("storage takes a compacted batch");
            assert_eq!((h.base_offset.0, h.last_offset().0, h.record_count), (50, 55, 3));
            assert_eq!((h.producer_id, h.base_sequence, h.max_timestamp), (9, 100, 1005));
            assert_eq!(h.codec(), Ok(codec));
            assert!(validate_produced(&out, 1 << 20, 1 << 20).is_err(), "not dense");
            let got: Vec<(u64, Option<Bytes>)> = RecordIter::new(Bytes::from(out))
                .unwrap()
                .map(|r| r.map(|r| (r.offset.0, r.value)).unwrap())
                .collect();
            assert_eq!(
                got,
                vec![(53, Some(Bytes::from("v3"))), (54, None), (55, Some(Bytes::from("v5")))]
            );
            assert_eq!(filter_records(&batch, 1 << 20, |_| true).unwrap(), Filtered::Unchanged);
            let Filtered::Emptied(empty) = filter_records(&batch, 1 << 20, |_| false).unwrap()
            else {
                panic!("emptied expected")
            };
            let h = validate(&empty, 1 << 20).expect("storage takes an empty batch");
            assert_eq!((h.record_count, h.next_offset().0, h.compression()), (0, 56, 0));
            assert_eq!(RecordIter::new(Bytes::from(empty)).unwrap().count(), 0);
        }
    }
}
