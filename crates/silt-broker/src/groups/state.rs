//! One consumer group at its coordinator, as pure state: members with their subscriptions and
//! sessions, the target assignment (server-side assignor), each member's current assignment
//! (the cooperative step towards the target), and the committed offsets. Time is passed in as
//! milliseconds of a monotonic clock, so every rule here is tested without sleeping.
//!
//! Cooperative rule: a partition is in a member's assignment only while no other member holds it,
//! where a member holds what it was assigned and what it last reported owning. A partition moves
//! only after its old owner heartbeats without it (having stopped consuming and committed it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use silt_core::assignor::{self, Assignment, Assignor, GroupSpec};

use super::records::OffsetValue;

/// One partition of one topic.
pub type Tp = (String, u32);

/// Why a group operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("member {0} is not in the group")]
    UnknownMember(String),
    #[error("member {member} has epoch {current}, not {asked}: it was fenced")]
    FencedEpoch { member: String, asked: u32, current: u32 },
    /// A commit for a partition the member does not hold (it was revoked, or never given):
    /// another member may own it and have committed further.
    #[error("member {member} at epoch {epoch} does not own {}-{}", .partition.0, .partition.1)]
    NotOwned { member: String, epoch: u32, partition: Tp },
    #[error("the group has {0} member(s)")]
    NotEmpty(usize),
    #[error("{0}")]
    Invalid(String),
}

/// A member as persisted in `__consumer_offsets` (so a new coordinator knows who holds what).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub epoch: u32,
    pub previous_epoch: u32,
    pub topics: BTreeSet<String>,
    pub regex: Option<String>,
    pub session_timeout_ms: u64,
    /// The member's current assignment (the last step given to it).
    pub assigned: BTreeSet<Tp>,
}

/// The membership part of a group as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub epoch: u32,
    pub assignor: String,
    pub members: Vec<MemberRecord>,
    pub target: Assignment,
}

/// A member with its soft state.
#[derive(Debug, Clone)]
pub struct Member {
    pub rec: MemberRecord,
    /// What it last reported consuming.
    pub owned: BTreeSet<Tp>,
    /// Removed when the clock passes this (ms).
    pub deadline_ms: u64,
    /// Since when it has been asked to give partitions up (ms), if it has.
    pub revoking_since_ms: Option<u64>,
    /// A static member that left: its assignment waits for it until the session ends.
    pub left: bool,
}

impl Member {
    /// What no other member may be given: assigned or still owned.
    fn holding(&self) -> BTreeSet<Tp> {
        self.rec.assigned.union(&self.owned).cloned().collect()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: String,
    pub timestamp_ms: i64,
    /// Where the commit record is in `__consumer_offsets` (later records win).
    pub record_offset: u64,
}

impl Committed {
    /// The offset of a record found at `record_offset`.
    pub fn from_record(v: OffsetValue, record_offset: u64) -> Committed {
        Committed {
            offset: v.offset,
            metadata: v.metadata,
            timestamp_ms: v.commit_timestamp_ms,
            record_offset,
        }
    }

    /// Its record value.
    pub fn to_record(&self) -> OffsetValue {
        OffsetValue {
            offset: self.offset,
            metadata: self.metadata.clone(),
            commit_timestamp_ms: self.timestamp_ms,
        }
    }
}

/// What a member sends in a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: u32,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub regex: Option<String>,
    pub assignor: Option<Assignor>,
    pub session_timeout_ms: u64,
    pub owned: BTreeSet<Tp>,
    /// A join keeps `member_id` (client-chosen) instead of calling `new_id`.
    pub client_member_id: bool,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub member_id: String,
    pub member_epoch: u32,
    pub assignment: BTreeSet<Tp>,
    /// The member has partitions to give up or to receive: it should heartbeat again soon.
    pub pending: bool,
    /// The persisted part of the group changed (write a group record before answering).
    pub changed: bool,
}

/// The group's state for listings.
pub fn state_name(g: &Group) -> &'static str {
    if g.members.is_empty() {
        "empty"
    } else if g.members.iter().all(|(id, m)| {
        let target = g.target.get(id).cloned().unwrap_or_default();
        m.rec.assigned == target && (m.owned == m.rec.assigned || m.left)
    }) {
        "stable"
    } else {
        "reconciling"
    }
}

/// A consumer group.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub epoch: u32,
    pub assignor: Assignor,
    pub members: BTreeMap<String, Member>,
    pub target: Assignment,
    /// The subscribed topics' partition counts the target was computed from.
    pub target_topics: BTreeMap<String, u32>,
    pub offsets: BTreeMap<Tp, Committed>,
}

/// Does `name` match a member's subscription?
fn subscribed(rec: &MemberRecord, regex: Option<&regex::Regex>, name: &str) -> bool {
    rec.topics.contains(name) || regex.is_some_and(|r| r.is_match(name))
}

/// Compiles a subscription expression (anchored: it must match the whole topic name).
pub fn compile_regex(expr: &str) -> Result<regex::Regex, GroupError> {
    if expr.len() > 1024 {
        return Err(GroupError::Invalid("subscription regex longer than 1024 bytes".into()));
    }
    regex::RegexBuilder::new(&format!("^(?:{expr})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| GroupError::Invalid(format!("bad subscription regex: {e}")))
}

impl Group {
    /// Every member's subscribed topics among `topics` (existing, non-internal topics).
    fn subscriptions(&self, topics: &BTreeMap<String, u32>) -> BTreeMap<String, BTreeSet<String>> {
        self.members
            .iter()
            .map(|(id, m)| {
                let re = m.rec.regex.as_deref().and_then(|r| compile_regex(r).ok());
                let set = topics
                    .keys()
                    .filter(|t| subscribed(&m.rec, re.as_ref(), t))
                    .cloned()
                    .collect::<BTreeSet<_>>();
                (id.clone(), set)
            })
            .collect()
    }

    /// Every partition of a topic some member subscribes to, among `topics`.
    pub fn subscribed_partitions(&self, topics: &BTreeMap<String, u32>) -> BTreeSet<Tp> {
        let subs = self.subscriptions(topics);
        topics
            .iter()
            .filter(|(t, _)| subs.values().any(|s| s.contains(*t)))
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .collect()
    }

    /// Recomputes the target when members, subscriptions or the subscribed topics' partition
    /// counts changed (or `force`); bumps the group epoch when it does.
    fn refresh_target(&mut self, topics: &BTreeMap<String, u32>, force: bool) -> bool {
        let subs = self.subscriptions(topics);
        let used: BTreeMap<String, u32> = topics
            .iter()
            .filter(|(t, _)| subs.values().any(|s| s.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        let members_changed = self.target.keys().ne(self.members.keys());
        if !force && !members_changed && used == self.target_topics {
            return false;
        }
        let spec = GroupSpec {
            subscriptions: subs,
            partitions: used.clone(),
            previous: self.target.clone(),
        };
        self.target = assignor::assign(self.assignor, &spec);
        self.target_topics = used;
        self.epoch += 1;
        true
    }

    /// What `member` may be given now (see the module doc).
    fn step_for(&self, member: &str) -> BTreeSet<Tp> {
        let holding: Assignment =
            self.members.iter().map(|(id, m)| (id.clone(), m.holding())).collect();
        let target: Assignment = self
            .target
            .iter()
            .filter(|(id, _)| id.as_str() == member)
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect();
        assignor::cooperative_step(&holding, &target).remove(member).unwrap_or_default()
    }

    /// Serves one heartbeat at time `now_ms`. `topics` are the cluster's existing, non-internal
    /// topics with their partition counts; `new_id` names a joining member.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        now_ms: u64,
        topics: &BTreeMap<String, u32>,
        new_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatOutcome, GroupError> {
        if let Some(r) = &hb.regex {
            compile_regex(r)?;
        }
        let mut changed = false;
        let mut force = false;
        let id = if hb.member_epoch == 0 {
            // A join. A static member takes over its earlier incarnation's assignment (which is
            // then fenced: its id is gone); a rejoin after a fence starts afresh.
            let mut carried = BTreeSet::new();
            if let Some(inst) = &hb.instance_id
                && let Some(old) = self
                    .members
                    .iter()
                    .find(|(_, m)| m.rec.instance_id.as_ref() == Some(inst))
                    .map(|(id, _)| id.clone())
            {
                let m = self.members.remove(&old).expect("invariant: found above");
                carried = m.rec.assigned;
                // The target keeps the old id's share until the new id takes its place below.
                if let Some(t) = self.target.remove(&old) {
                    self.target.insert(String::new(), t);
                }
            } else if !hb.member_id.is_empty() {
                self.members.remove(&hb.member_id);
                force = true;
            }
            if self.members.is_empty()
                && let Some(a) = hb.assignor
            {
                self.assignor = a;
            }
            let id = if hb.client_member_id && !hb.member_id.is_empty() {
                hb.member_id.clone()
            } else {
                new_id()
            };
            if let Some(t) = self.target.remove("") {
                self.target.insert(id.clone(), t);
            }
            self.members.insert(
                id.clone(),
                Member {
                    rec: MemberRecord {
                        id: id.clone(),
                        instance_id: hb.instance_id.clone(),
                        client_id: hb.client_id.clone(),
                        epoch: 0,
                        previous_epoch: 0,
                        topics: hb.topics.clone(),
                        regex: hb.regex.clone(),
                        session_timeout_ms: hb.session_timeout_ms,
                        assigned: carried.clone(),
                    },
                    owned: BTreeSet::new(),
                    deadline_ms: 0,
                    revoking_since_ms: None,
                    left: false,
                },
            );
            changed = true;
            id
        } else {
            let m = self
                .members
                .get(&hb.member_id)
                .ok_or_else(|| GroupError::UnknownMember(hb.member_id.clone()))?;
            let holding = m.holding();
            let current = m.rec.epoch;
            let stale_ok = hb.member_epoch == m.rec.previous_epoch && hb.owned.is_subset(&holding);
            if m.left || (hb.member_epoch != current && !stale_ok) {
                return Err(GroupError::FencedEpoch {
                    member: hb.member_id.clone(),
                    asked: hb.member_epoch,
                    current,
                });
            }
            hb.member_id.clone()
        };
        let m = self.members.get_mut(&id).expect("invariant: present");
        let holding = m.holding();
        m.owned = hb.owned.intersection(&holding).cloned().collect();
        m.deadline_ms = now_ms + hb.session_timeout_ms;
        if m.rec.topics != hb.topics || m.rec.regex != hb.regex {
            m.rec.topics = hb.topics;
            m.rec.regex = hb.regex;
            changed = true;
            force = true;
        }
        if m.rec.client_id != hb.client_id || m.rec.session_timeout_ms != hb.session_timeout_ms {
            m.rec.client_id = hb.client_id;
            m.rec.session_timeout_ms = hb.session_timeout_ms;
            changed = true;
        }
        if self.refresh_target(topics, force) {
            changed = true;
        }
        let step = self.step_for(&id);
        let group_epoch = self.epoch;
        let target = self.target.get(&id).cloned().unwrap_or_default();
        let m = self.members.get_mut(&id).expect("invariant: present");
        if step.difference(&m.rec.assigned).next().is_some() || m.rec.epoch == 0 {
            // New partitions (or a new member): a new member epoch.
            m.rec.previous_epoch = m.rec.epoch;
            m.rec.epoch = group_epoch.max(m.rec.epoch + 1);
            changed = true;
        }
        if step != m.rec.assigned {
            m.rec.assigned = step.clone();
            changed = true;
        }
        let must_release = m.owned.difference(&step).next().is_some();
        m.revoking_since_ms = match (must_release, m.revoking_since_ms) {
            (true, None) => Some(now_ms),
            (true, since) => since,
            (false, _) => None,
        };
        Ok(HeartbeatOutcome {
            member_id: id,
            member_epoch: m.rec.epoch,
            pending: must_release || step != target || m.owned != step,
            assignment: step,
            changed,
        })
    }

    /// A member leaves. A static member's assignment waits for it until its session ends.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        topics: &BTreeMap<String, u32>,
    ) -> Result<(), GroupError> {
        let id = match instance_id {
            Some(inst) => self
                .members
                .iter()
                .find(|(_, m)| m.rec.instance_id.as_deref() == Some(inst))
                .map(|(id, _)| id.clone()),
            None => self.members.contains_key(member_id).then(|| member_id.to_string()),
        }
        .ok_or_else(|| GroupError::UnknownMember(member_id.to_string()))?;
        if instance_id.is_some() {
            let m = self.members.get_mut(&id).expect("invariant: found");
            m.left = true;
            m.owned.clear();
        } else {
            self.members.remove(&id);
            self.refresh_target(topics, true);
        }
        Ok(())
    }

    /// Removes members whose session ended, or that kept partitions they were asked to give up
    /// for longer than `rebalance_timeout_ms`. Returns the removed ids.
    pub fn expire(
        &mut self,
        now_ms: u64,
        rebalance_timeout_ms: u64,
        topics: &BTreeMap<String, u32>,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                now_ms > m.deadline_ms
                    || m.revoking_since_ms.is_some_and(|s| now_ms > s + rebalance_timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.refresh_target(topics, true);
        }
        gone
    }

    /// Refreshes the target when subscribed topics appeared or grew (no heartbeat needed).
    pub fn topics_changed(&mut self, topics: &BTreeMap<String, u32>) -> bool {
        !self.members.is_empty() && self.refresh_target(topics, false)
    }

    /// May `member_id` at `member_epoch` commit offsets of `partitions`? An empty id commits
    /// from outside the group, which only an empty group allows. A member commits from its
    /// current or its previous epoch (a commit may race the heartbeat answer that bumped it),
    /// and only partitions it holds: assigned now, or still reported owned while it gives them
    /// up (it commits before confirming the release). A partition is held by one member at a
    /// time, so a revoked member's late commit cannot overwrite the new owner's: the whole
    /// commit is refused (`NotOwned`) and no offset changes.
    pub fn check_commit<'a>(
        &self,
        member_id: &str,
        member_epoch: u32,
        partitions: impl IntoIterator<Item = &'a Tp>,
    ) -> Result<(), GroupError> {
        if member_id.is_empty() {
            return match self.members.len() {
                0 => Ok(()),
                n => Err(GroupError::NotEmpty(n)),
            };
        }
        let m = self
            .members
            .get(member_id)
            .ok_or_else(|| GroupError::UnknownMember(member_id.to_string()))?;
        if member_epoch != m.rec.epoch && member_epoch != m.rec.previous_epoch {
            return Err(GroupError::FencedEpoch {
                member: member_id.to_string(),
                asked: member_epoch,
                current: m.rec.epoch,
            });
        }
        match partitions
            .into_iter()
            .find(|tp| !m.rec.assigned.contains(*tp) && !m.owned.contains(*tp))
        {
            Some(tp) => Err(GroupError::NotOwned {
                member: member_id.to_string(),
                epoch: member_epoch,
                partition: tp.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Applies a committed offset found at `record_offset` (replay or a fresh commit); an older
    /// record than the one applied loses.
    pub fn apply_offset(&mut self, tp: Tp, c: Option<Committed>, record_offset: u64) {
        if self.offsets.get(&tp).is_some_and(|old| old.record_offset > record_offset) {
            return;
        }
        match c {
            Some(c) => self.offsets.insert(tp, c),
            None => self.offsets.remove(&tp),
        };
    }

    /// The persisted part of the membership.
    pub fn record(&self) -> GroupRecord {
        GroupRecord {
            epoch: self.epoch,
            assignor: assignor_name(self.assignor).to_string(),
            members: self.members.values().map(|m| m.rec.clone()).collect(),
            target: self.target.clone(),
        }
    }

    /// Restores the membership from a record (a new coordinator): every member gets a fresh
    /// session and is taken to hold what it was assigned.
    pub fn restore(&mut self, r: GroupRecord, now_ms: u64) {
        self.epoch = r.epoch;
        self.assignor = r.assignor.parse().unwrap_or_default();
        self.target = r.target;
        self.members = r
            .members
            .into_iter()
            .map(|rec| {
                let m = Member {
                    owned: rec.assigned.clone(),
                    deadline_ms: now_ms + rec.session_timeout_ms,
                    revoking_since_ms: None,
                    left: false,
                    rec,
                };
                (m.rec.id.clone(), m)
            })
            .collect();
        // Recomputed from the subscriptions at the next heartbeat if the topics moved on.
        self.target_topics = BTreeMap::new();
    }
}

/// The wire name of an assignor.
pub fn assignor_name(a: Assignor) -> &'static str {
    match a {
        Assignor::Range => "range",
        Assignor::RoundRobin => "roundrobin",
        Assignor::Sticky => "sticky",
    }
}

#[cfg(test)]
#[path = "state_test.rs"]
mod tests;
