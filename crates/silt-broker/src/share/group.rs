//! One share group as its coordinator holds it: members (in memory: a coordinator failover makes
//! them join again, and the records they held go back to the group) and share-partitions
//! (persisted). Pure: membership rules and assignment.

use std::collections::{BTreeMap, BTreeSet};

use super::state::SharePartition;

/// A topic partition.
pub(crate) type Tp = (String, u32);

/// Where a group starts on a partition it has no state for (`share.auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Reset {
    #[default]
    Latest,
    Earliest,
}

/// A member of a share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub client_id: String,
    pub epoch: i32,
    pub topics: BTreeSet<String>,
    pub reset: Reset,
    pub last_seen_ms: u64,
    pub assignment: Vec<Tp>,
}

/// Counters since this coordinator loaded the group (metrics and describe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    pub redeliveries: u64,
    pub archived: u64,
    pub dead_lettered: u64,
}

/// A share group.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShareGroup {
    pub members: BTreeMap<String, Member>,
    pub partitions: BTreeMap<Tp, SharePartition>,
    pub counters: Counters,
    /// Where the next fetch starts looking, so members spread over partitions.
    pub cursor: usize,
}

/// Why a heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MemberError {
    #[error("member {0} is not in the group (rejoin with member_epoch 0)")]
    Unknown(String),
    #[error("member {member} sent epoch {sent}, the group has {current}: rejoin")]
    Fenced { member: String, sent: i32, current: i32 },
}

/// A heartbeat's request, checked.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    pub member_id: String,
    pub epoch: i32,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub reset: Reset,
}

/// Every partition of `topics` that exists (`existing`: topic -> partition count).
pub(crate) fn assignment(topics: &BTreeSet<String>, existing: &BTreeMap<String, u32>) -> Vec<Tp> {
    let mut out = Vec::new();
    for t in topics {
        if let Some(&n) = existing.get(t) {
            out.extend((0..n).map(|p| (t.clone(), p)));
        }
    }
    out
}

impl ShareGroup {
    /// Applies a heartbeat (join with epoch 0, or stay); returns the member id, its epoch and
    /// its assignment. `new_id` names a joining member that brought no id.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        now_ms: u64,
        existing: &BTreeMap<String, u32>,
        new_id: impl FnOnce() -> String,
    ) -> Result<(String, i32, Vec<Tp>), MemberError> {
        let assigned = assignment(&hb.topics, existing);
        if hb.epoch == 0 {
            let id = if hb.member_id.is_empty() { new_id() } else { hb.member_id };
            let epoch = self.members.get(&id).map_or(1, |m| m.epoch.saturating_add(1));
            self.members.insert(
                id.clone(),
                Member {
                    client_id: hb.client_id,
                    epoch,
                    topics: hb.topics,
                    reset: hb.reset,
                    last_seen_ms: now_ms,
                    assignment: assigned.clone(),
                },
            );
            return Ok((id, epoch, assigned));
        }
        let m = self
            .members
            .get_mut(&hb.member_id)
            .ok_or_else(|| MemberError::Unknown(hb.member_id.clone()))?;
        if hb.epoch != m.epoch {
            return Err(MemberError::Fenced {
                member: hb.member_id,
                sent: hb.epoch,
                current: m.epoch,
            });
        }
        m.last_seen_ms = now_ms;
        m.reset = hb.reset;
        if m.topics != hb.topics || m.assignment != assigned {
            m.topics = hb.topics;
            m.assignment = assigned;
            m.epoch = m.epoch.saturating_add(1);
        }
        Ok((hb.member_id, m.epoch, m.assignment.clone()))
    }

    /// The member `id` at `epoch` (0 = any), touched by a fetch or an acknowledgement.
    pub fn touch(&mut self, id: &str, epoch: i32, now_ms: u64) -> Result<&Member, MemberError> {
        let m = self.members.get_mut(id).ok_or_else(|| MemberError::Unknown(id.to_string()))?;
        if epoch != 0 && epoch != m.epoch {
            return Err(MemberError::Fenced {
                member: id.to_string(),
                sent: epoch,
                current: m.epoch,
            });
        }
        m.last_seen_ms = now_ms;
        Ok(m)
    }

    /// Members silent for `session_ms`.
    pub fn expired_members(&self, now_ms: u64, session_ms: u64) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| now_ms.saturating_sub(m.last_seen_ms) >= session_ms)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Follows topic changes (created, deleted, more partitions): members' assignments, and
    /// share-partitions of deleted topics are dropped. Returns the dropped partitions.
    pub fn topics_changed(&mut self, existing: &BTreeMap<String, u32>) -> Vec<Tp> {
        for m in self.members.values_mut() {
            let a = assignment(&m.topics, existing);
            if a != m.assignment {
                m.assignment = a;
                m.epoch = m.epoch.saturating_add(1);
            }
        }
        let gone: Vec<Tp> = self
            .partitions
            .keys()
            .filter(|(t, p)| existing.get(t).is_none_or(|&n| *p >= n))
            .cloned()
            .collect();
        for tp in &gone {
            self.partitions.remove(tp);
        }
        gone
    }

    /// Records held by `member`.
    pub fn held_by(&self, member: &str) -> usize {
        use super::state::RecordState;
        self.partitions
            .values()
            .flat_map(|p| p.records.values())
            .filter(|r| matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, epoch: i32, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.to_string(),
            epoch,
            client_id: "c".into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            reset: Reset::Latest,
        }
    }

    #[test]
    fn every_member_gets_every_partition_of_its_topics() {
        let existing = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)]);
        let mut g = ShareGroup::default();
        let (m1, e1, a1) =
            g.heartbeat(hb("", 0, &["a", "x"]), 0, &existing, || "m1".into()).unwrap();
        let (m2, _, a2) = g.heartbeat(hb("", 0, &["a"]), 0, &existing, || "m2".into()).unwrap();
        assert_eq!((m1.as_str(), m2.as_str(), e1), ("m1", "m2", 1));
        assert_eq!(a1, vec![("a".to_string(), 0), ("a".to_string(), 1)]);
        assert_eq!(a1, a2, "records, not partitions, are shared");
    }

    #[test]
    fn stale_epochs_and_unknown_members_are_refused() {
        let existing = BTreeMap::from([("a".to_string(), 1)]);
        let mut g = ShareGroup::default();
        let (m, e, _) = g.heartbeat(hb("", 0, &["a"]), 0, &existing, || "m".into()).unwrap();
        assert!(matches!(
            g.heartbeat(hb(&m, e + 1, &["a"]), 1, &existing, String::new),
            Err(MemberError::Fenced { .. })
        ));
        assert!(matches!(
            g.heartbeat(hb("ghost", 3, &["a"]), 1, &existing, String::new),
            Err(MemberError::Unknown(_))
        ));
        assert!(g.touch(&m, e, 2).is_ok());
        assert!(g.touch(&m, 0, 2).is_ok());
    }

    #[test]
    fn silent_members_expire_and_new_partitions_bump_the_epoch() {
        let mut existing = BTreeMap::from([("a".to_string(), 1)]);
        let mut g = ShareGroup::default();
        let (m, e, _) = g.heartbeat(hb("", 0, &["a"]), 0, &existing, || "m".into()).unwrap();
        g.partitions.insert(("a".into(), 0), SharePartition::starting_at(0));
        assert!(g.expired_members(999, 1000).is_empty());
        assert_eq!(g.expired_members(1000, 1000), vec![m.clone()]);
        existing.insert("a".into(), 2);
        assert!(g.topics_changed(&existing).is_empty());
        assert_eq!(g.members[&m].epoch, e + 1);
        assert_eq!(g.members[&m].assignment.len(), 2);
        existing.remove("a");
        assert_eq!(g.topics_changed(&existing), vec![("a".to_string(), 0)]);
        assert!(g.partitions.is_empty());
    }
}
