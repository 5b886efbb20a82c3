//! Changing where a topic lives: adding partitions, moving replicas (Kafka's KIP-455 model),
//! preferred leader election, and decommissioning a broker (moves under the hood).
//!
//! A move of a partition to `target` replicas keeps the union of the old and the target
//! replicas in `replicas` (target first, so the preferred leader is the target's) while the new
//! replicas catch up as followers. The leader adds each to the ISR once caught up
//! (`AlterPartition`); the change that makes the ISR hold every target replica completes the
//! move in the same entry: `replicas` becomes `target`, the removed replicas leave the ISR, and
//! leadership moves to a target replica if the leader is being removed. The ISR only grows
//! during a move, so `min.insync.replicas` holds throughout. A cancelled move returns to the
//! original replicas.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ClusterImage, CommandResponse, PartitionImage, elect_leader, valid_assignment};
use crate::rejection::Rejection;

/// An ongoing move of a partition's replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// The replicas the partition ends with (order: preference).
    pub target: Vec<u64>,
    /// The replicas it had before (a cancel returns to them).
    pub original: Vec<u64>,
    /// Bytes per second each new replica may copy while catching up; 0: unthrottled.
    #[serde(default)]
    pub throttle_bytes_per_sec: u64,
}

impl Reassignment {
    /// The replicas the move adds.
    pub fn adding(&self) -> Vec<u64> {
        self.target.iter().copied().filter(|b| !self.original.contains(b)).collect()
    }

    /// The replicas the move removes.
    pub fn removing(&self) -> Vec<u64> {
        self.original.iter().copied().filter(|b| !self.target.contains(b)).collect()
    }
}

/// What a preferred leader election did for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOutcome {
    /// Leadership moved to the preferred replica.
    Elected {
        leader: u64,
    },
    /// The preferred replica already leads.
    AlreadyPreferred,
    /// The preferred replica is not in sync, fenced or shutting down: nothing changed.
    PreferredNotAvailable {
        preferred: u64,
    },
    UnknownPartition,
}

/// Completes `p`'s move when every target replica is in the ISR; true if it did.
pub(crate) fn complete_if_caught_up(p: &mut PartitionImage, fenced: &BTreeSet<u64>) -> bool {
    let Some(r) = &p.reassignment else { return false };
    if !r.target.iter().all(|b| p.isr.contains(b)) {
        return false;
    }
    let target = r.target.clone();
    p.isr.retain(|b| target.contains(b));
    p.replicas = target;
    if p.leader.is_none_or(|l| !p.replicas.contains(&l)) {
        p.leader = elect_leader(&p.replicas, &p.isr, |b| fenced.contains(&b), false);
    }
    p.reassignment = None;
    new_replica_set(p);
    true
}

/// Ends a change of `p`'s replica set (a move started, completed or cancelled): a new leader
/// epoch, so the leader starts its follower tracking afresh and fetches sent before the change
/// are fenced. Without it, a replica removed (its log deleted) and added again could be judged
/// by a position its deleted log had, and join the ISR empty.
fn new_replica_set(p: &mut PartitionImage) {
    p.leader_epoch += 1;
    p.partition_epoch += 1;
}

impl ClusterImage {
    /// Appends `assignment` to a topic of `from` partitions (refused when the count changed
    /// since the proposer looked: a retry or a concurrent call adds nothing twice).
    pub(super) fn create_partitions(
        &mut self,
        topic: &str,
        from: u32,
        assignment: &[Vec<u64>],
    ) -> CommandResponse {
        let Some(t) = self.topics.get(topic) else {
            return CommandResponse::Rejected(Rejection::UnknownTopic { topic: topic.into() });
        };
        if t.partitions.len() != from as usize {
            return CommandResponse::Rejected(Rejection::PartitionCountChanged {
                topic: topic.into(),
                expected: from,
                current: t.partitions.len() as u32,
            });
        }
        if !valid_assignment(assignment) {
            return CommandResponse::Rejected(Rejection::InvalidAssignment { topic: topic.into() });
        }
        let new: Vec<PartitionImage> = assignment.iter().map(|r| self.new_partition(r)).collect();
        self.topics.get_mut(topic).expect("invariant: checked above").partitions.extend(new);
        CommandResponse::Done
    }

    pub(super) fn reassign(
        &mut self,
        topic: &str,
        partition: u32,
        target: Option<&[u64]>,
        throttle_bytes_per_sec: u64,
    ) -> CommandResponse {
        let fenced = self.fenced_ids();
        let known: BTreeSet<u64> = self.brokers.keys().copied().collect();
        let decommissioning: BTreeSet<u64> =
            self.brokers.values().filter(|b| b.decommissioning).map(|b| b.id).collect();
        let p = match self.partition_mut(topic, partition) {
            Ok(p) => p,
            Err(rejected) => return rejected,
        };
        let invalid = |reason: String| {
            CommandResponse::Rejected(Rejection::InvalidReplicas {
                topic: topic.into(),
                partition,
                reason,
            })
        };
        let Some(target) = target else { return cancel(topic, partition, p, &fenced) };
        if target.is_empty() {
            return invalid("no replicas given".into());
        }
        if target.iter().collect::<BTreeSet<_>>().len() != target.len() {
            return invalid(format!("{target:?} names a broker twice"));
        }
        if let Some(b) = target.iter().find(|b| !known.contains(b)) {
            return invalid(format!("broker {b} is not registered"));
        }
        if p.reassignment.is_some() {
            return CommandResponse::Rejected(Rejection::ReassignmentInProgress {
                topic: topic.into(),
                partition,
            });
        }
        if let Some(b) =
            target.iter().find(|b| !p.replicas.contains(b) && decommissioning.contains(b))
        {
            return CommandResponse::Rejected(Rejection::BrokerDecommissioning { broker: *b });
        }
        let same_set =
            target.iter().collect::<BTreeSet<_>>() == p.replicas.iter().collect::<BTreeSet<_>>();
        if same_set {
            // Only the preference order changes: nothing to copy.
            if p.replicas != target {
                p.replicas = target.to_vec();
                p.partition_epoch += 1;
            }
            return CommandResponse::Done;
        }
        let original = p.replicas.clone();
        let mut replicas = target.to_vec();
        replicas.extend(original.iter().copied().filter(|b| !target.contains(b)));
        p.replicas = replicas;
        p.reassignment =
            Some(Reassignment { target: target.to_vec(), original, throttle_bytes_per_sec });
        new_replica_set(p);
        // Moving to a subset of the ISR (a lower replication factor) needs no copying.
        complete_if_caught_up(p, &fenced);
        CommandResponse::Done
    }

    /// Preferred leader election for each of `partitions`.
    pub(super) fn elect_preferred(&mut self, partitions: &[(String, u32)]) -> Vec<ElectionOutcome> {
        let unavailable: BTreeSet<u64> =
            self.brokers.values().filter(|b| b.fenced || b.shutting_down).map(|b| b.id).collect();
        let known: BTreeSet<u64> = self.brokers.keys().copied().collect();
        partitions
            .iter()
            .map(|(topic, partition)| {
                let Ok(p) = self.partition_mut(topic, *partition) else {
                    return ElectionOutcome::UnknownPartition;
                };
                let preferred = p.replicas[0];
                if p.leader == Some(preferred) {
                    return ElectionOutcome::AlreadyPreferred;
                }
                if !p.isr.contains(&preferred)
                    || unavailable.contains(&preferred)
                    || !known.contains(&preferred)
                {
                    return ElectionOutcome::PreferredNotAvailable { preferred };
                }
                p.leader = Some(preferred);
                p.leader_epoch += 1;
                p.partition_epoch += 1;
                ElectionOutcome::Elected { leader: preferred }
            })
            .collect()
    }

    pub(super) fn decommission(&mut self, id: u64, throttle_bytes_per_sec: u64) -> CommandResponse {
        let Some(leaving) = self.brokers.get(&id) else {
            return CommandResponse::Rejected(Rejection::UnknownBroker { id });
        };
        let rack = leaving.rack.clone();
        let eligible: BTreeMap<u64, Option<String>> = self
            .brokers
            .values()
            .filter(|b| b.id != id && !b.fenced && !b.shutting_down && !b.decommissioning)
            .map(|b| (b.id, b.rack.clone()))
            .collect();
        let mut load: BTreeMap<u64, usize> = eligible.keys().map(|b| (*b, 0)).collect();
        for t in self.topics.values() {
            for p in &t.partitions {
                for r in &p.replicas {
                    if let Some(n) = load.get_mut(r) {
                        *n += 1;
                    }
                }
            }
        }
        let mut moves = Vec::new();
        for (name, t) in &self.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&id) {
                    continue;
                }
                if let Some(r) = &p.reassignment {
                    if !r.target.contains(&id) {
                        continue; // already moving off `id`
                    }
                    return CommandResponse::Rejected(Rejection::ReassignmentInProgress {
                        topic: name.clone(),
                        partition: i as u32,
                    });
                }
                // Same rack as the leaving broker first, then the least loaded, then by id.
                let to = eligible
                    .iter()
                    .filter(|(b, _)| !p.replicas.contains(b))
                    .min_by_key(|(b, r)| (rack.is_some() && **r != rack, load[*b], **b))
                    .map(|(b, _)| *b);
                let Some(to) = to else {
                    return CommandResponse::Rejected(Rejection::NoReplacement {
                        broker: id,
                        topic: name.clone(),
                        partition: i as u32,
                    });
                };
                *load.get_mut(&to).expect("invariant: eligible") += 1;
                let target: Vec<u64> =
                    p.replicas.iter().map(|r| if *r == id { to } else { *r }).collect();
                moves.push((name.clone(), i as u32, target));
            }
        }
        // All or nothing: applied to a copy, kept only if every move is accepted.
        let mut next = self.clone();
        next.brokers.get_mut(&id).expect("invariant: checked above").decommissioning = true;
        let count = moves.len() as u32;
        for (topic, partition, target) in moves {
            let r = next.reassign(&topic, partition, Some(&target), throttle_bytes_per_sec);
            if let CommandResponse::Rejected(why) = r {
                return CommandResponse::Rejected(why);
            }
        }
        *self = next;
        CommandResponse::Moves(count)
    }

    pub(super) fn recommission(&mut self, id: u64) -> CommandResponse {
        let Some(b) = self.brokers.get_mut(&id) else {
            return CommandResponse::Rejected(Rejection::UnknownBroker { id });
        };
        b.decommissioning = false;
        let moving_off: Vec<(String, u32)> = self
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions.iter().enumerate().filter_map(move |(i, p)| {
                    let r = p.reassignment.as_ref()?;
                    r.removing().contains(&id).then(|| (name.clone(), i as u32))
                })
            })
            .collect();
        let mut cancelled = 0;
        for (topic, partition) in moving_off {
            if self.reassign(&topic, partition, None, 0) == CommandResponse::Done {
                cancelled += 1;
            }
        }
        CommandResponse::Moves(cancelled)
    }
}

/// Returns `p` to its original replicas; refused without a move, or when no original replica is
/// in sync (the move must then complete).
fn cancel(
    topic: &str,
    partition: u32,
    p: &mut PartitionImage,
    fenced: &BTreeSet<u64>,
) -> CommandResponse {
    let Some(r) = p.reassignment.clone() else {
        return CommandResponse::Rejected(Rejection::NoReassignmentInProgress {
            topic: topic.into(),
            partition,
        });
    };
    let isr: Vec<u64> = p.isr.iter().copied().filter(|b| r.original.contains(b)).collect();
    if isr.is_empty() {
        return CommandResponse::Rejected(Rejection::CannotCancel {
            topic: topic.into(),
            partition,
        });
    }
    p.replicas = r.original;
    p.isr = isr;
    p.reassignment = None;
    if p.leader.is_none_or(|l| !p.replicas.contains(&l)) {
        p.leader = elect_leader(&p.replicas, &p.isr, |b| fenced.contains(&b), false);
    }
    new_replica_set(p);
    CommandResponse::Done
}
