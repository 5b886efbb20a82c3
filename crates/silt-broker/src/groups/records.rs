//! The records of `__consumer_offsets` (docs/format.md §8): JSON keys and values, so the topic
//! can be read with `silt consume`. A null value is a tombstone. Later records win.

use serde::{Deserialize, Serialize};
use silt_core::batch::{BatchBuilder, Record};

use super::state::GroupRecord;

/// The name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Key {
    /// A committed offset of one partition.
    Offset { group: String, topic: String, partition: u32 },
    /// A group's membership and assignment.
    Group { group: String },
}

/// The value of an offset record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    pub offset: i64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A decoded record: its key and, unless it is a tombstone, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Offset { group: String, topic: String, partition: u32, value: Option<OffsetValue> },
    Group { group: String, value: Option<GroupRecord> },
}

impl Entry {
    fn key(&self) -> Key {
        match self {
            Entry::Offset { group, topic, partition, .. } => {
                Key::Offset { group: group.clone(), topic: topic.clone(), partition: *partition }
            }
            Entry::Group { group, .. } => Key::Group { group: group.clone() },
        }
    }

    fn value(&self) -> Option<Vec<u8>> {
        let v = match self {
            Entry::Offset { value, .. } => value.as_ref().map(serde_json::to_vec),
            Entry::Group { value, .. } => value.as_ref().map(serde_json::to_vec),
        };
        v.map(|r| r.expect("invariant: plain structs serialize"))
    }
}

/// One batch holding `entries` in order.
pub fn encode(entries: &[Entry], timestamp_ms: i64) -> Vec<u8> {
    builder(entries, timestamp_ms).build_vec().expect("invariant: at least one entry")
}

/// One transactional batch of `producer_id` at `producer_epoch` holding `entries` (offsets a
/// transaction commits; sequence-less: the coordinator writes it, nothing deduplicates it).
pub fn encode_transactional(
    entries: &[Entry],
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Vec<u8> {
    let mut b = builder(entries, timestamp_ms);
    b.set_producer(producer_id, producer_epoch, -1);
    b.set_transactional();
    b.build_vec().expect("invariant: at least one entry")
}

fn builder(entries: &[Entry], timestamp_ms: i64) -> BatchBuilder {
    let mut b = BatchBuilder::new();
    for e in entries {
        let key = serde_json::to_vec(&e.key()).expect("invariant: plain structs serialize");
        b.push(&Record {
            key: Some(key.into()),
            value: e.value().map(Into::into),
            headers: Vec::new(),
            timestamp_ms,
        });
    }
    b
}

/// Decodes one stored record; `None` for records this version does not understand (skipped, so
/// a newer writer's records do not stop a load).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Entry> {
    let key: Key = serde_json::from_slice(key?).ok()?;
    Some(match key {
        Key::Offset { group, topic, partition } => Entry::Offset {
            group,
            topic,
            partition,
            value: match value {
                Some(v) => Some(serde_json::from_slice(v).ok()?),
                None => None,
            },
        },
        Key::Group { group } => Entry::Group {
            group,
            value: match value {
                Some(v) => Some(serde_json::from_slice(v).ok()?),
                None => None,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use silt_core::batch::RecordIter;

    use super::*;

    #[test]
    fn entries_roundtrip_through_a_batch() {
        let entries = vec![
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    metadata: "m".into(),
                    commit_timestamp_ms: 7,
                }),
            },
            Entry::Offset { group: "g".into(), topic: "t".into(), partition: 4, value: None },
            Entry::Group { group: "g".into(), value: None },
        ];
        let batch = encode(&entries, 7);
        let decoded: Vec<Entry> = RecordIter::new(Bytes::from(batch))
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                decode(r.key.as_deref(), r.value.as_deref()).unwrap()
            })
            .collect();
        assert_eq!(decoded, entries);
        assert_eq!(decode(Some(b"{\"type\":\"future\"}"), None), None);
        assert_eq!(decode(Some(b"garbage"), Some(b"x")), None);
    }
}
