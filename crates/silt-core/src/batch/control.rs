//! Transaction markers: the control batches a transaction's commit or abort leaves in every
//! partition it wrote (Kafka's layout, so Kafka clients skip and interpret them). One record;
//! key `version: i16 = 0, type: i16` (0 abort, 1 commit); value `version: i16 = 0,
//! coordinator_epoch: i32`; the batch has the transactional and control attribute bits and the
//! producer id and epoch of the transaction it ends (the epoch after the end's bump).

use bytes::Bytes;

use super::{BatchBuilder, BatchHeader, CONTROL_FLAG, Record, RecordIter};

const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
}

impl Marker {
    /// The control batch (base offset 0: the leader stamps it like any batch).
    pub fn encode(&self, timestamp_ms: i64) -> Vec<u8> {
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&(if self.commit { COMMIT } else { ABORT }).to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        let mut b = BatchBuilder::with_capacity(128);
        b.push(&Record {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
            timestamp_ms,
        });
        b.set_producer(self.producer_id, self.producer_epoch, -1);
        b.set_transactional();
        b.set_control();
        b.build_vec().expect("invariant: one record pushed")
    }

    /// The marker a control batch holds (`None`: not a control batch, or not a marker).
    pub fn decode(batch: Bytes) -> Option<Marker> {
        let h = BatchHeader::parse(&batch)?;
        if h.attributes & CONTROL_FLAG == 0 {
            return None;
        }
        let r = RecordIter::new(batch).ok()?.next()?.ok()?;
        let (key, value) = (r.key?, r.value?);
        if key.len() < 4 || value.len() < 6 || key[..2] != [0, 0] {
            return None;
        }
        let commit = match i16::from_be_bytes([key[2], key[3]]) {
            COMMIT => true,
            ABORT => false,
            _ => return None,
        };
        Some(Marker {
            commit,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{TRANSACTIONAL_FLAG, validate};

    #[test]
    fn a_marker_is_a_valid_control_batch_that_decodes_back() {
        for commit in [true, false] {
            let m = Marker { commit, producer_id: 42, producer_epoch: 3, coordinator_epoch: 7 };
            let bytes = m.encode(1_700_000_000_000);
            let h = validate(&bytes, 1 << 20).expect("a valid batch");
            assert_eq!(
                h.attributes & (CONTROL_FLAG | TRANSACTIONAL_FLAG),
                CONTROL_FLAG | TRANSACTIONAL_FLAG
            );
            assert_eq!((h.producer_id, h.producer_epoch, h.record_count), (42, 3, 1));
            assert_eq!(Marker::decode(Bytes::from(bytes)), Some(m));
        }
        let mut data = BatchBuilder::new();
        data.push(&Record::value("v", 1));
        assert_eq!(Marker::decode(data.build().unwrap()), None, "a data batch is no marker");
    }
}
