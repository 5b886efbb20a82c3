//! Conversions between wire messages and `silt-core` values, and facts about error codes.

use silt_core::batch::{DecodedRecord, Header, Record};

use crate::v1;

/// Why a wire record could not be turned into a core record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("record has {count} headers, more than the limit of {max}")]
    TooManyHeaders { count: usize, max: usize },
}

/// A produce record from the wire; `now_ms` fills a zero timestamp.
pub fn record_from_proto(r: v1::Record, now_ms: i64) -> Result<Record, ConvertError> {
    let max = silt_core::batch::MAX_HEADERS_PER_RECORD;
    if r.headers.len() > max {
        return Err(ConvertError::TooManyHeaders { count: r.headers.len(), max });
    }
    Ok(Record {
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(|h| Header { key: h.key, value: h.value }).collect(),
        timestamp_ms: if r.timestamp_ms == 0 { now_ms } else { r.timestamp_ms },
    })
}

fn headers_to_proto(headers: Vec<Header>) -> Vec<v1::RecordHeader> {
    headers.into_iter().map(|h| v1::RecordHeader { key: h.key, value: h.value }).collect()
}

/// A core record as a wire produce record.
pub fn record_to_proto(r: Record) -> v1::Record {
    v1::Record {
        key: r.key,
        value: r.value,
        headers: headers_to_proto(r.headers),
        timestamp_ms: r.timestamp_ms,
    }
}

/// A decoded stored record as a wire fetched record.
pub fn decoded_to_fetched(r: DecodedRecord) -> v1::FetchedRecord {
    v1::FetchedRecord {
        offset: r.offset.0 as i64,
        timestamp_ms: r.timestamp_ms,
        key: r.key,
        value: r.value,
        headers: headers_to_proto(r.headers),
    }
}

impl v1::ErrorCode {
    /// Whether a client should retry the same request (after refreshing metadata / backing off).
    pub fn is_retriable(self) -> bool {
        use v1::ErrorCode::*;
        matches!(
            self,
            NotLeader
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | RequestTimedOut
                | BrokerNotAvailable
                | UnknownLeaderEpoch
                | FencedLeaderEpoch
                | CoordinatorNotAvailable
                | NotCoordinator
                | CoordinatorLoadInProgress
                | ConcurrentTransactions
                | UnstableOffsetCommit
        )
    }

    /// Whether a failed produce definitely stored nothing (so a retry cannot duplicate). `false`
    /// for codes whose outcome is unknown (the records may be in the log), and for `None`
    /// (success: the records are stored).
    pub fn definitely_not_stored(self) -> bool {
        use v1::ErrorCode::*;
        !matches!(
            self,
            None | NotEnoughReplicasAfterAppend
                | RequestTimedOut
                | StorageError
                | UnknownServerError
        )
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message;
    use silt_core::Offset;

    use super::*;

    #[test]
    fn records_roundtrip_with_null_values_and_headers() {
        let core = Record {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                Header { key: "h".into(), value: None },
                Header { key: "g".into(), value: Some(Bytes::from_static(b"v")) },
            ],
            timestamp_ms: 5,
        };
        assert_eq!(record_from_proto(record_to_proto(core.clone()), 99).unwrap(), core);
        let stamped =
            record_from_proto(v1::Record { timestamp_ms: 0, ..Default::default() }, 99).unwrap();
        assert_eq!(stamped.timestamp_ms, 99, "a zero timestamp takes the broker's clock");
        let many =
            v1::Record { headers: vec![v1::RecordHeader::default(); 5000], ..Default::default() };
        assert!(matches!(record_from_proto(many, 0), Err(ConvertError::TooManyHeaders { .. })));
        let fetched = decoded_to_fetched(DecodedRecord {
            offset: Offset(7),
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::from_static(b"x")),
            headers: vec![],
        });
        assert_eq!((fetched.offset, fetched.value.as_deref()), (7, Some(&b"x"[..])));
    }

    #[test]
    fn error_code_classes() {
        use v1::ErrorCode::*;
        assert!(NotLeader.is_retriable() && NotLeader.definitely_not_stored());
        assert!(NotEnoughReplicas.definitely_not_stored());
        assert!(!NotEnoughReplicasAfterAppend.definitely_not_stored());
        assert!(!RequestTimedOut.definitely_not_stored());
        assert!(!CorruptMessage.is_retriable() && CorruptMessage.definitely_not_stored());
        assert!(!None.definitely_not_stored(), "success means stored");
        assert!(!None.is_retriable());
        for c in [NotLeader, NotEnoughReplicas, RequestTimedOut, BrokerNotAvailable] {
            assert!(c.is_retriable(), "{c:?}");
        }
        for c in [UnknownLeaderEpoch, FencedLeaderEpoch] {
            assert!(c.is_retriable(), "{c:?}");
        }
        for c in [UnknownTopic, MessageTooLarge, InvalidRequest, TopicAlreadyExists] {
            assert!(!c.is_retriable(), "{c:?}");
        }
        // A commit refused for a partition the member does not own would be refused again.
        for c in [StaleMemberEpoch, FencedMemberEpoch, UnknownMemberId] {
            assert!(!c.is_retriable(), "{c:?}");
        }
    }

    #[test]
    fn record_batches_survive_the_wire_as_bytes() {
        let batch = Bytes::from_static(b"\x00\x01batch-bytes");
        let req = v1::ProduceRequest {
            acks: v1::Acks::All as i32,
            timeout_ms: 0,
            topics: vec![v1::TopicProduceData {
                topic: "t".into(),
                partitions: vec![v1::PartitionProduceData {
                    partition: 2,
                    data: Some(v1::partition_produce_data::Data::RecordBatches(batch.clone())),
                }],
            }],
            ..Default::default()
        };
        let back = v1::ProduceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        match &back.topics[0].partitions[0].data {
            Some(v1::partition_produce_data::Data::RecordBatches(b)) => {
                let b: &Bytes = b;
                assert_eq!(b, &batch);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
