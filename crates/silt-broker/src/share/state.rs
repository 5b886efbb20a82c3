//! The state of one share-partition (KIP-932): which records of a topic partition a share group
//! has handed out, to whom, how often, and which are done. A pure state machine: the
//! coordinator reads the log, persists the [`Snapshot`] and answers; nothing here does I/O.
//!
//! Offsets below the share-partition start offset (SPSO, `start`) are done (acknowledged or
//! archived). Offsets in `start..end` (`end` is the SPEO) are in flight: each record the log
//! holds there has a [`RecordState`] and a delivery count. Offsets from `end` on have never been
//! handed out. The in-flight window holds at most `max_locks` records, so memory and the
//! persisted snapshot stay bounded however slow the members are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a member acknowledges a record (KIP-932's AcknowledgeType, plus RENEW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AckType {
    /// Processed: never delivered again.
    Accept,
    /// Give it back now: available to any member (its delivery counts).
    Release,
    /// Unprocessable: never delivered again (dead-lettered when the topic names a dead-letter
    /// topic).
    Reject,
    /// Still working on it: the acquisition lock starts over.
    Renew,
}

impl AckType {
    /// The wire value (1 accept, 2 release, 3 reject, 4 renew: Kafka's numbering).
    pub fn from_wire(v: i32) -> Option<AckType> {
        match v {
            1 => Some(AckType::Accept),
            2 => Some(AckType::Release),
            3 => Some(AckType::Reject),
            4 => Some(AckType::Renew),
            _ => None,
        }
    }
}

/// The state of one in-flight record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordState {
    /// May be handed to a member.
    Available,
    /// Held by `member` until `until_ms` (coordinator clock).
    Acquired { member: String, until_ms: u64 },
    /// Accepted: done.
    Acknowledged,
    /// Rejected, or delivered `share.delivery.count.limit` times: done, never delivered again.
    Archived,
}

/// One in-flight record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub state: RecordState,
    /// How many times it has been handed out.
    pub deliveries: u16,
}

/// Why a record was archived (the dead-letter header says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveReason {
    Rejected,
    DeliveryLimit,
}

impl ArchiveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveReason::Rejected => "rejected",
            ArchiveReason::DeliveryLimit => "delivery-limit",
        }
    }
}

/// A record a transition archived: the coordinator dead-letters it before persisting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Archived {
    pub offset: u64,
    pub deliveries: u16,
    pub reason: ArchiveReason,
}

/// Why one offset of an acknowledgement was refused (Kafka's INVALID_RECORD_STATE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AckError {
    #[error(
        "offset {0} is not acquired by this member (its lock expired, or it was never delivered to it)"
    )]
    NotAcquired(u64),
}

/// What the limits of a share-partition are (broker config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub lock_ms: u64,
    pub delivery_limit: u16,
    pub max_locks: usize,
}

/// One share-partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SharePartition {
    /// SPSO: every offset below is done.
    pub start: u64,
    /// SPEO: the next offset never handed out.
    pub end: u64,
    /// The log's records in `start..end` that are not done below the first one that is not.
    pub records: BTreeMap<u64, InFlight>,
}

/// What one delivery handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub offset: u64,
    pub deliveries: u16,
}

impl SharePartition {
    /// A share-partition starting at `offset` (the log start or the high watermark, per
    /// `share.auto.offset.reset`).
    pub fn starting_at(offset: u64) -> SharePartition {
        SharePartition { start: offset, end: offset, records: BTreeMap::new() }
    }

    /// Records held by members.
    pub fn acquired(&self) -> usize {
        self.records.values().filter(|r| matches!(r.state, RecordState::Acquired { .. })).count()
    }

    /// Records in flight (not done).
    pub fn in_flight(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r.state, RecordState::Available | RecordState::Acquired { .. }))
            .count()
    }

    /// Offsets waiting to be delivered again, in order, at most `max`.
    pub fn redeliverable(&self, max: usize) -> Vec<u64> {
        self.records
            .iter()
            .filter(|(_, r)| r.state == RecordState::Available)
            .map(|(o, _)| *o)
            .take(max)
            .collect()
    }

    /// How many new records (from `end`) may be acquired now: the window holds `max_locks`.
    pub fn room(&self, limits: &Limits) -> usize {
        limits.max_locks.saturating_sub(self.records.len())
    }

    /// Hands `offset` (an available in-flight record) to `member`.
    pub fn acquire_again(
        &mut self,
        offset: u64,
        member: &str,
        now_ms: u64,
        limits: &Limits,
    ) -> Option<Delivery> {
        let r = self.records.get_mut(&offset)?;
        if r.state != RecordState::Available {
            return None;
        }
        r.deliveries = r.deliveries.saturating_add(1);
        r.state = RecordState::Acquired {
            member: member.to_string(),
            until_ms: now_ms.saturating_add(limits.lock_ms),
        };
        Some(Delivery { offset, deliveries: r.deliveries })
    }

    /// Hands the new record at `offset` (at or after `end`) to `member`; offsets between `end`
    /// and it hold nothing (compacted away, control batches). `end` moves past it.
    pub fn acquire_new(
        &mut self,
        offset: u64,
        member: &str,
        now_ms: u64,
        limits: &Limits,
    ) -> Option<Delivery> {
        if offset < self.end {
            return None;
        }
        self.records.insert(
            offset,
            InFlight {
                state: RecordState::Acquired {
                    member: member.to_string(),
                    until_ms: now_ms.saturating_add(limits.lock_ms),
                },
                deliveries: 1,
            },
        );
        self.end = offset + 1;
        Some(Delivery { offset, deliveries: 1 })
    }

    /// Moves `end` to `offset` when the log holds nothing in `end..offset` (a read found only
    /// control batches or compacted gaps there).
    pub fn skip_to(&mut self, offset: u64) {
        if offset > self.end {
            self.end = offset;
            self.advance();
        }
    }

    /// Archives in-flight records the log no longer holds (below its start after retention):
    /// nothing can be delivered for them.
    pub fn lost_below(&mut self, log_start: u64) {
        if self.start >= log_start {
            return;
        }
        let lost: Vec<u64> = self.records.range(..log_start).map(|(o, _)| *o).collect();
        for o in lost {
            self.records.remove(&o);
        }
        self.start = self.start.max(log_start);
        self.end = self.end.max(log_start);
        self.advance();
    }

    /// Drops an available record the log no longer holds (compacted away while in flight).
    pub fn forget(&mut self, offset: u64) {
        if self.records.get(&offset).is_some_and(|r| r.state == RecordState::Available) {
            self.records.remove(&offset);
            self.advance();
        }
    }

    /// Applies one acknowledgement of `offset` by `member`. Returns the record it archived.
    pub fn acknowledge(
        &mut self,
        offset: u64,
        member: &str,
        ack: AckType,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<Option<Archived>, AckError> {
        let r = self.records.get_mut(&offset).ok_or(AckError::NotAcquired(offset))?;
        match &r.state {
            RecordState::Acquired { member: m, .. } if m == member => {}
            _ => return Err(AckError::NotAcquired(offset)),
        }
        let archived = match ack {
            AckType::Accept => {
                r.state = RecordState::Acknowledged;
                None
            }
            AckType::Reject => {
                r.state = RecordState::Archived;
                Some(Archived { offset, deliveries: r.deliveries, reason: ArchiveReason::Rejected })
            }
            AckType::Release => release(offset, r, limits),
            AckType::Renew => {
                r.state = RecordState::Acquired {
                    member: member.to_string(),
                    until_ms: now_ms.saturating_add(limits.lock_ms),
                };
                None
            }
        };
        self.advance();
        Ok(archived)
    }

    /// Releases every lock that expired by `now_ms` (`member: None`) or that `member` holds
    /// (it left the group). Returns how many were released and what was archived.
    pub fn release_locks(
        &mut self,
        now_ms: u64,
        member: Option<&str>,
        limits: &Limits,
    ) -> (usize, Vec<Archived>) {
        let mut released = 0;
        let mut archived = Vec::new();
        for (offset, r) in self.records.iter_mut() {
            let due = match (&r.state, member) {
                (RecordState::Acquired { until_ms, .. }, None) => *until_ms <= now_ms,
                (RecordState::Acquired { member: m, .. }, Some(gone)) => m == gone,
                _ => false,
            };
            if due {
                released += 1;
                archived.extend(release(*offset, r, limits));
            }
        }
        if released > 0 {
            self.advance();
        }
        (released, archived)
    }

    /// Moves the start past the done records at the front of the window and forgets them.
    fn advance(&mut self) {
        while let Some((&o, r)) = self.records.first_key_value() {
            if matches!(r.state, RecordState::Available | RecordState::Acquired { .. }) {
                self.start = o;
                return;
            }
            self.records.remove(&o);
        }
        self.start = self.end;
    }

    /// The durable form: the window's records as runs (an acquired record is persisted as
    /// available: a lock does not survive a coordinator failover).
    pub fn snapshot(&self) -> Snapshot {
        let mut runs: Vec<Run> = Vec::new();
        for (&o, r) in &self.records {
            let state = match r.state {
                RecordState::Available | RecordState::Acquired { .. } => PersistedState::Available,
                RecordState::Acknowledged => PersistedState::Acknowledged,
                RecordState::Archived => PersistedState::Archived,
            };
            match runs.last_mut() {
                Some(last)
                    if last.last + 1 == o
                        && last.state == state
                        && last.deliveries == r.deliveries =>
                {
                    last.last = o;
                }
                _ => runs.push(Run { first: o, last: o, state, deliveries: r.deliveries }),
            }
        }
        Snapshot { start: self.start, end: self.end, runs }
    }

    /// The share-partition a snapshot describes (every record available or done).
    pub fn restore(s: &Snapshot) -> SharePartition {
        let mut records = BTreeMap::new();
        for run in &s.runs {
            if run.last < run.first || run.first < s.start || run.last >= s.end {
                continue; // not from this coordinator: ignore rather than trust
            }
            let state = match run.state {
                PersistedState::Available => RecordState::Available,
                PersistedState::Acknowledged => RecordState::Acknowledged,
                PersistedState::Archived => RecordState::Archived,
            };
            // Runs are bounded by the window (max_locks records), but a corrupt record must not
            // allocate without bound.
            for o in run.first..=run.last.min(run.first.saturating_add(1 << 20)) {
                records.insert(o, InFlight { state: state.clone(), deliveries: run.deliveries });
            }
        }
        let mut p = SharePartition { start: s.start, end: s.end.max(s.start), records };
        p.advance();
        p
    }
}

/// A released (or expired) record: available again, or archived at the delivery limit.
fn release(offset: u64, r: &mut InFlight, limits: &Limits) -> Option<Archived> {
    if r.deliveries >= limits.delivery_limit {
        r.state = RecordState::Archived;
        Some(Archived { offset, deliveries: r.deliveries, reason: ArchiveReason::DeliveryLimit })
    } else {
        r.state = RecordState::Available;
        None
    }
}

/// A persisted record state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PersistedState {
    Available,
    Acknowledged,
    Archived,
}

/// Consecutive offsets with the same state and delivery count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Run {
    pub first: u64,
    pub last: u64,
    pub state: PersistedState,
    pub deliveries: u16,
}

/// What `__share_group_state` holds for one share-partition (KIP-932's ShareSnapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub start: u64,
    pub end: u64,
    pub runs: Vec<Run>,
}

#[cfg(test)]
#[path = "state_test.rs"]
mod tests;
