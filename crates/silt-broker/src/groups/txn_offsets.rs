//! Transactional offset commits (Kafka's TxnOffsetCommit; KIP-447's fencing by the member's
//! epoch). The group coordinator has the transaction coordinator add the group's
//! `__consumer_offsets` partition to the producer's transaction (the same verification a
//! partition leader does for a data batch, KIP-890 v2), writes the offsets there as one
//! transactional batch of the producer, and holds them as pending. The transaction's marker in
//! that partition decides them: a commit applies them to the group, an abort drops them.
//! Loading a partition does the same from the log (records of a transactional batch are
//! pending until their producer's marker).

use std::collections::{BTreeMap, HashMap};

use silt_core::batch::Marker;
use silt_proto::v1::{self, ErrorCode};

use super::coordinator::{self as coord, Slot, append_error, coordinate};
use super::records::{self, Entry, OFFSETS_TOPIC};
use super::service::{check_group, check_offsets, offset_entries};
use super::state::{Committed, GroupError, Tp};
use crate::broker::Shared;
use crate::error::WireError;
use crate::partition::WaitFor;
use crate::service::metadata::view;

/// Per producer id, the offsets its open transaction commits: (group, partition) → offset.
pub(crate) type Pending = HashMap<i64, BTreeMap<(String, Tp), Committed>>;

/// Replay: an offset record of `producer`'s transactional batch found at `offset`.
pub(super) fn replayed(slot: &mut Slot, producer: i64, e: Entry, offset: u64) -> Option<()> {
    let Entry::Offset { group, topic, partition, value: Some(v) } = e else { return None };
    let c = Committed::from_record(v, offset);
    slot.pending.entry(producer).or_default().insert((group, (topic, partition)), c);
    Some(())
}

/// `producer`'s transaction ended in this partition: its offsets apply (commit) or go (abort).
/// An offset committed later than the transaction's record (a plain commit) keeps winning.
pub(super) fn ended(slot: &mut Slot, producer: i64, commit: bool) {
    let Some(offsets) = slot.pending.remove(&producer) else { return };
    if !commit {
        return;
    }
    for ((group, tp), c) in offsets {
        let at = c.record_offset;
        slot.groups.entry(group).or_default().apply_offset(tp, Some(c), at);
    }
}

/// Whether a transaction that has not ended holds an offset of `group` for one of `tps` (any
/// partition when `tps` is empty).
pub(super) fn unstable<'a>(
    slot: &Slot,
    group: &str,
    mut tps: impl Iterator<Item = &'a Tp>,
    any: bool,
) -> bool {
    let held = |g: &str, tp: &Tp| {
        slot.pending.values().any(|m| m.contains_key(&(g.to_string(), tp.clone())))
    };
    if any {
        return slot.pending.values().any(|m| m.keys().any(|(g, _)| g == group));
    }
    tps.any(|tp| held(group, tp))
}

/// A marker was committed to partition `partition` of `__consumer_offsets` on this broker (its
/// leader): applies or drops the producer's pending offsets if the groups are loaded here (a
/// later load reads the marker from the log).
pub(crate) async fn on_marker(shared: &Shared, partition: u32, marker: &Marker) {
    let slot = shared.coordinator.slot(partition);
    let mut slot = slot.lock().await;
    if slot.loaded.is_some() {
        ended(&mut slot, marker.producer_id, marker.commit);
    }
}

/// TxnCommitOffsets: verified with the transaction coordinator, checked against the group's
/// membership like a plain commit, written as the producer's transactional batch (waiting for
/// the commit under the slot lock, so a marker deciding it is applied after it is pending).
pub(crate) async fn commit(
    shared: &Shared,
    req: &v1::TxnCommitOffsetsRequest,
) -> Result<(), WireError> {
    shared.serving()?; // a stale image must not place groups
    check_group(&req.group)?;
    let epoch = i16::try_from(req.producer_epoch).ok().filter(|_| req.producer_id >= 0);
    let Some(epoch) = epoch else {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            "a transactional offset commit needs the producer id and epoch of InitProducerId",
        ));
    };
    let v = view(shared);
    let offsets = check_offsets(&coord::subscribable_topics(&v), &req.offsets)?;
    if offsets.is_empty() {
        return Ok(());
    }
    let loc = coord::locate(&v, &req.group)?;
    let tp = (OFFSETS_TOPIC.to_string(), loc.partition);
    crate::txn::markers::verify(shared, &req.transactional_id, req.producer_id, epoch, &tp).await?;
    let mut co = coordinate(shared, &v, &req.group).await?;
    match co.slot.groups.get(&req.group) {
        Some(g) => {
            g.check_commit(&req.member_id, req.member_epoch, offsets.iter().map(|(tp, _)| tp))?
        }
        None if req.member_id.is_empty() => {}
        None => return Err(GroupError::UnknownMember(req.member_id.clone()).into()),
    }
    let entries = offset_entries(&req.group, &offsets);
    let batch =
        records::encode_transactional(&entries, crate::service::now_ms(), req.producer_id, epoch);
    let appended = match co.handle.append_queued(vec![batch], WaitFor::Commit).await {
        Ok(rx) => coord::committed(shared, rx).await,
        Err(e) => Err(append_error(e)),
    };
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            // The batch may be in the log: reload before trusting memory again.
            co.slot.loaded = None;
            return Err(e);
        }
    };
    let pending = co.slot.pending.entry(req.producer_id).or_default();
    for (i, (tp, value)) in offsets.into_iter().enumerate() {
        let at = appended.base_offset.0 + i as u64;
        pending.insert((req.group.clone(), tp), Committed::from_record(value, at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::records::OffsetValue;

    fn offset(group: &str, partition: u32, offset: i64) -> Entry {
        Entry::Offset {
            group: group.into(),
            topic: "in".into(),
            partition,
            value: Some(OffsetValue { offset, metadata: String::new(), commit_timestamp_ms: 1 }),
        }
    }

    fn committed(slot: &Slot, group: &str, partition: u32) -> Option<i64> {
        slot.groups.get(group)?.offsets.get(&("in".to_string(), partition)).map(|c| c.offset)
    }

    #[test]
    fn pending_offsets_apply_on_commit_and_vanish_on_abort() {
        let mut slot = Slot::default();
        replayed(&mut slot, 7, offset("g", 0, 10), 100).unwrap();
        replayed(&mut slot, 8, offset("g", 1, 20), 101).unwrap();
        let tp0 = ("in".to_string(), 0);
        assert!(unstable(&slot, "g", [&tp0].into_iter(), false));
        assert!(unstable(&slot, "g", std::iter::empty(), true));
        assert!(!unstable(&slot, "other", std::iter::empty(), true));
        assert_eq!(committed(&slot, "g", 0), None, "nothing visible before the marker");
        ended(&mut slot, 7, true);
        ended(&mut slot, 8, false);
        assert_eq!(committed(&slot, "g", 0), Some(10));
        assert_eq!(committed(&slot, "g", 1), None, "an aborted commit never shows");
        assert!(slot.pending.is_empty());
        assert!(!unstable(&slot, "g", [&tp0].into_iter(), false));
    }

    #[test]
    fn a_later_plain_commit_wins_over_an_earlier_transactional_one() {
        let mut slot = Slot::default();
        replayed(&mut slot, 7, offset("g", 0, 10), 100).unwrap();
        let plain =
            Committed { offset: 15, metadata: String::new(), timestamp_ms: 2, record_offset: 105 };
        slot.groups.entry("g".into()).or_default().apply_offset(("in".into(), 0), Some(plain), 105);
        ended(&mut slot, 7, true);
        assert_eq!(committed(&slot, "g", 0), Some(15));
    }
}
