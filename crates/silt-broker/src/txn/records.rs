//! The records of `__transaction_state` (docs/format.md §9): JSON key and value, like
//! `__consumer_offsets`, so the topic can be read with `silt consume`. One record per state
//! change of a transactional id; later records win.

use serde::{Deserialize, Serialize};
use silt_core::batch::{BatchBuilder, Record};
use silt_core::txn::{Txn, TxnState};

/// The name of the internal topic.
pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    transactional_id: String,
}

/// A transactional id's state as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: u64,
    pub state: String,
    pub partitions: Vec<(String, u32)>,
    /// When the current transaction started (ms since the Unix epoch).
    pub started_ms: u64,
    pub updated_ms: u64,
    /// The id before a move to a fresh producer id (-1: none; absent in older records).
    #[serde(default = "no_producer")]
    pub previous_producer_id: i64,
    /// The transaction was aborted by a newer incarnation (absent in older records: false).
    #[serde(default)]
    pub fenced_abort: bool,
}

fn no_producer() -> i64 {
    -1
}

/// The state's name (Kafka's).
pub fn state_name(s: TxnState) -> &'static str {
    match s {
        TxnState::Empty => "Empty",
        TxnState::Ongoing => "Ongoing",
        TxnState::PrepareCommit => "PrepareCommit",
        TxnState::PrepareAbort => "PrepareAbort",
        TxnState::CompleteCommit => "CompleteCommit",
        TxnState::CompleteAbort => "CompleteAbort",
    }
}

fn state_of(name: &str) -> Option<TxnState> {
    Some(match name {
        "Empty" => TxnState::Empty,
        "Ongoing" => TxnState::Ongoing,
        "PrepareCommit" => TxnState::PrepareCommit,
        "PrepareAbort" => TxnState::PrepareAbort,
        "CompleteCommit" => TxnState::CompleteCommit,
        "CompleteAbort" => TxnState::CompleteAbort,
        _ => return None,
    })
}

impl TxnRecord {
    pub fn of(t: &Txn) -> TxnRecord {
        TxnRecord {
            producer_id: t.producer_id,
            epoch: t.epoch,
            timeout_ms: t.timeout_ms,
            state: state_name(t.state).to_string(),
            partitions: t.partitions.iter().cloned().collect(),
            started_ms: t.started_ms,
            updated_ms: t.updated_ms,
            previous_producer_id: t.previous_producer_id,
            fenced_abort: t.fenced_abort,
        }
    }

    /// The state machine it describes (`None`: a state this version does not know).
    pub fn into_txn(self) -> Option<Txn> {
        Some(Txn {
            producer_id: self.producer_id,
            epoch: self.epoch,
            timeout_ms: self.timeout_ms,
            state: state_of(&self.state)?,
            partitions: self.partitions.into_iter().collect(),
            started_ms: self.started_ms,
            updated_ms: self.updated_ms,
            previous_producer_id: self.previous_producer_id,
            fenced_abort: self.fenced_abort,
        })
    }
}

/// One batch holding the records of `entries` (id and state; `None`: a tombstone) in order.
pub fn encode(entries: &[(&str, Option<TxnRecord>)], timestamp_ms: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (id, value) in entries {
        let key = Key { transactional_id: id.to_string() };
        let key = serde_json::to_vec(&key).expect("invariant: plain structs serialize");
        let value =
            value.as_ref().map(|v| serde_json::to_vec(v).expect("invariant: plain structs"));
        b.push(&Record {
            key: Some(key.into()),
            value: value.map(Into::into),
            headers: Vec::new(),
            timestamp_ms,
        });
    }
    b.build_vec().expect("invariant: at least one entry")
}

/// Decodes one stored record: the id and its state (`None` value: a tombstone). `None` for
/// records this version does not understand (skipped).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, Option<Txn>)> {
    let key: Key = serde_json::from_slice(key?).ok()?;
    let txn = match value {
        Some(v) => Some(serde_json::from_slice::<TxnRecord>(v).ok()?.into_txn()?),
        None => None,
    };
    Some((key.transactional_id, txn))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use silt_core::batch::RecordIter;

    use super::*;

    #[test]
    fn states_roundtrip_through_a_batch_and_unknown_records_are_skipped() {
        let mut t = Txn::new(7, 60_000, 1_000).unwrap();
        t.add_partition(7, 0, ("orders".into(), 3), 1_001).unwrap();
        let batch = encode(&[("app-1", Some(TxnRecord::of(&t))), ("app-2", None)], 5);
        let decoded: Vec<_> = RecordIter::new(Bytes::from(batch))
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                decode(r.key.as_deref(), r.value.as_deref()).unwrap()
            })
            .collect();
        assert_eq!(decoded, vec![("app-1".to_string(), Some(t)), ("app-2".to_string(), None)]);
        let future = br#"{"producer_id":1,"epoch":0,"timeout_ms":1,"state":"Later","partitions":[],"started_ms":0,"updated_ms":0}"#;
        assert_eq!(decode(Some(br#"{"transactional_id":"x"}"#), Some(future)), None);
        assert_eq!(decode(Some(b"garbage"), None), None);
    }
}
