//! The records of `__share_group_state` (compacted): one per share-partition, keyed by group,
//! topic and partition, valued by its [`Snapshot`]; a tombstone deletes it. The latest record of
//! a key is the share-partition's state.

use serde::{Deserialize, Serialize};
use silt_core::batch::{BatchBuilder, Record};

use super::state::Snapshot;

pub const SHARE_STATE_TOPIC: &str = "__share_group_state";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

/// One state record: a snapshot, or `None` (the group forgot the partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub value: Option<Snapshot>,
}

pub fn encode(entries: &[Entry], timestamp_ms: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for e in entries {
        let key = serde_json::to_vec(&e.key).expect("invariant: plain structs serialize");
        let value = e
            .value
            .as_ref()
            .map(|v| serde_json::to_vec(v).expect("invariant: plain structs serialize"));
        b.push(&Record {
            key: Some(key.into()),
            value: value.map(Into::into),
            headers: Vec::new(),
            timestamp_ms,
        });
    }
    b.build_vec().expect("invariant: at least one entry")
}

pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Entry> {
    let key: Key = serde_json::from_slice(key?).ok()?;
    let value = match value {
        Some(v) => Some(serde_json::from_slice(v).ok()?),
        None => None,
    };
    Some(Entry { key, value })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use silt_core::batch::RecordIter;

    use super::super::state::{PersistedState, Run};
    use super::*;

    #[test]
    fn entries_roundtrip_through_a_batch() {
        let key = Key { group: "g".into(), topic: "t".into(), partition: 2 };
        let snap = Snapshot {
            start: 5,
            end: 9,
            runs: vec![Run { first: 5, last: 8, state: PersistedState::Available, deliveries: 2 }],
        };
        let entries =
            vec![Entry { key: key.clone(), value: Some(snap) }, Entry { key, value: None }];
        let batch = Bytes::from(encode(&entries, 1));
        let back: Vec<Entry> = RecordIter::new(batch)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                decode(r.key.as_deref(), r.value.as_deref()).unwrap()
            })
            .collect();
        assert_eq!(back, entries);
        assert_eq!(decode(Some(b"junk"), None), None);
        assert_eq!(decode(None, Some(b"{}")), None);
    }
}
