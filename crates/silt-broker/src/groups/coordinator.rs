//! The group coordinator: for each `__consumer_offsets` partition this broker leads, the groups
//! hashed to it, loaded by replaying the partition when leadership arrives (committed offsets and
//! memberships survive a coordinator failover), and written back with `acks=all` before any
//! answer depends on it. A background task ends expired sessions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silt_core::batch::{
    BatchHeader, BatchIter, CONTROL_FLAG, Marker, RecordIter, TRANSACTIONAL_FLAG,
};
use silt_proto::v1::ErrorCode;
use tokio::sync::OwnedMutexGuard;

use super::offsets_topic::{offsets_topic_overrides, offsets_topic_rf};
use super::records::{self, Entry, OFFSETS_TOPIC};
use super::state::{Committed, Group};
use super::txn_offsets;
use crate::broker::Shared;
use crate::error::WireError;
use crate::partition::{Appended, PartitionError, PartitionHandle, WaitFor};
use crate::service::metadata::{View, view};

/// How long a new coordinator waits for its partition's high watermark to reach the log end
/// before it answers `COORDINATOR_LOAD_IN_PROGRESS`.
const LOAD_WAIT: Duration = Duration::from_secs(10);
/// Bytes read per step while loading.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;
/// Superseded records a partition must hold (beyond twice the live ones) before a snapshot.
const SNAPSHOT_MIN_GARBAGE: u64 = 1_000;
/// Records per batch of a snapshot.
pub(crate) const SNAPSHOT_BATCH: usize = 100;
/// How often sessions are checked.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// The groups of one `__consumer_offsets` partition.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The leader epoch the groups were loaded in (None: not loaded).
    pub loaded: Option<u32>,
    pub groups: BTreeMap<String, Group>,
    /// Offset commits queued but not yet applied here (a snapshot waits for none).
    pub in_flight: Arc<std::sync::atomic::AtomicU32>,
    /// Transactional offset commits whose transaction has not ended, by producer id.
    pub pending: txn_offsets::Pending,
}

/// Counts a queued commit until it is applied or failed.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<std::sync::atomic::AtomicU32>);

impl InFlight {
    pub fn new(slot: &Slot) -> InFlight {
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(slot.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every slot of this broker, with the clock groups run on.
#[derive(Debug)]
pub(crate) struct Coordinator {
    slots: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<Slot>>>>,
    clock: Instant,
    next_member: AtomicU64,
    /// Groups of Kafka's classic protocol (members over the Kafka listener).
    pub classic: super::classic::ClassicGroups,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            slots: Mutex::default(),
            clock: Instant::now(),
            next_member: AtomicU64::new(0),
            classic: super::classic::ClassicGroups::default(),
        }
    }
}

impl Coordinator {
    /// Milliseconds on the coordinator's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// A member id no other member of any group has had: node, start time, counter.
    pub fn new_member_id(&self, node: u64) -> String {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        format!("{node}-{:x}-{n}", crate::service::now_ms())
    }

    pub(super) fn slot(&self, partition: u32) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(partition).or_default().clone()
    }

    /// Every slot (for expiry, listings and metrics).
    pub fn slots(&self) -> Vec<(u32, Arc<tokio::sync::Mutex<Slot>>)> {
        let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(p, s)| (*p, s.clone())).collect()
    }
}

/// The `__consumer_offsets` partition of a group.
pub(crate) fn partition_of(group: &str, partitions: u32) -> u32 {
    (silt_core::partitioner::murmur2(group.as_bytes()) & 0x7fff_ffff) as u32 % partitions.max(1)
}

/// Where a group is coordinated.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub partition: u32,
    pub leader: Option<u64>,
    pub leader_epoch: u32,
    pub address: String,
}

pub(crate) fn not_available(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::CoordinatorNotAvailable, message)
}

/// The number of `__consumer_offsets` partitions, if the topic exists.
pub(crate) fn offsets_partitions(v: &View) -> Option<u32> {
    v.topics.get(OFFSETS_TOPIC).map(|t| t.partitions.len() as u32)
}

/// Where `partition` of `__consumer_offsets` is led.
pub(crate) fn locate_partition(v: &View, partition: u32) -> Result<Location, WireError> {
    locate_in(v, OFFSETS_TOPIC, partition)
}

/// Where `partition` of the internal topic `topic` is led.
pub(crate) fn locate_in(v: &View, topic: &str, partition: u32) -> Result<Location, WireError> {
    let t =
        v.topics.get(topic).ok_or_else(|| not_available(format!("{topic} does not exist yet")))?;
    let p = t
        .partitions
        .get(partition as usize)
        .ok_or_else(|| not_available(format!("{topic} has no partition {partition}")))?;
    let address = p
        .leader
        .and_then(|l| v.brokers.iter().find(|b| b.node_id == l))
        .map(|b| b.address.clone())
        .unwrap_or_default();
    Ok(Location { partition, leader: p.leader, leader_epoch: p.leader_epoch, address })
}

/// Where `group` is coordinated.
pub(crate) fn locate(v: &View, group: &str) -> Result<Location, WireError> {
    let n = offsets_partitions(v)
        .ok_or_else(|| not_available(format!("{OFFSETS_TOPIC} does not exist yet")))?;
    locate_partition(v, partition_of(group, n))
}

/// Creates `__consumer_offsets` unless it exists, with its full replication factor
/// ([`offsets_topic_rf`]: at most the quorum's voters, so a broker alone uses 1), answering the
/// retriable `COORDINATOR_NOT_AVAILABLE` while too few brokers are alive for it.
pub(crate) async fn ensure_offsets_topic(shared: &Arc<Shared>) -> Result<(), WireError> {
    ensure_internal_topic(shared, OFFSETS_TOPIC).await
}

/// Creates the internal topic `topic` (`__consumer_offsets` or `__transaction_state`) unless it
/// exists, as [`ensure_offsets_topic`] describes; both have the same partitions, replication
/// and overrides (`offsets_topic_*`).
pub(crate) async fn ensure_internal_topic(
    shared: &Arc<Shared>,
    topic: &str,
) -> Result<(), WireError> {
    let v = view(shared);
    if v.topics.contains_key(topic) {
        return Ok(());
    }
    let c = &shared.config;
    let rf = offsets_topic_rf(
        c.offsets_topic_replication_factor,
        shared.cluster.node.voters().len(),
        v.brokers.len(),
        v.brokers.iter().filter(|b| b.alive).count(),
    )
    .map_err(|w| not_available(w.to_string()))?;
    let overrides = offsets_topic_overrides(rf, c.offsets_topic_segment_bytes);
    crate::service::AdminService::new(shared.clone())
        .create_internal(topic, c.offsets_topic_partitions, rf, overrides)
        .await
        .map_err(|e| not_available(format!("creating {topic}: {}", e.message)))
}

/// The subscribable topics (every topic but the internal ones) with their partition counts.
pub(crate) fn subscribable_topics(v: &View) -> BTreeMap<String, u32> {
    v.topics
        .iter()
        .filter(|(name, _)| !name.starts_with("__"))
        .map(|(name, t)| (name.clone(), t.partitions.len() as u32))
        .collect()
}

/// A slot this broker coordinates, locked and loaded, with the partition's worker.
pub(crate) struct Coordinated {
    pub slot: OwnedMutexGuard<Slot>,
    pub handle: PartitionHandle,
    /// The `__consumer_offsets` partition and the leader epoch it is coordinated in.
    pub partition: u32,
    pub leader_epoch: u32,
}

/// Locks `group`'s slot after checking this broker coordinates it (loading it if leadership
/// is new).
pub(crate) async fn coordinate(
    shared: &Shared,
    v: &View,
    group: &str,
) -> Result<Coordinated, WireError> {
    let loc = locate(v, group)?;
    coordinate_location(shared, loc).await
}

/// Like [`coordinate`] for a partition.
pub(crate) async fn coordinate_partition(
    shared: &Shared,
    v: &View,
    partition: u32,
) -> Result<Coordinated, WireError> {
    let loc = locate_partition(v, partition)?;
    coordinate_location(shared, loc).await
}

/// The local handle of the coordinator partition `loc` of `topic`, or NOT_COORDINATOR when this
/// broker does not lead it (`what` names the key's kind in the message: "group", ...).
pub(crate) fn led_here(
    shared: &Shared,
    topic: &str,
    loc: &Location,
    what: &str,
) -> Result<PartitionHandle, WireError> {
    let me = shared.config.node_id;
    if loc.leader != Some(me) {
        return Err(WireError::new(
            ErrorCode::NotCoordinator,
            match loc.leader {
                Some(l) => format!("broker {l} coordinates this {what}, not broker {me}"),
                None => format!("the {what}'s coordinator partition has no leader"),
            },
        ));
    }
    // Just elected (the internal topic was just created, or leadership just moved): the image
    // names this broker before its replica has opened. That is a load in progress, as Kafka
    // says of a coordinator not ready yet — a code every client retries (librdkafka gives up an
    // OffsetFetch answered COORDINATOR_NOT_AVAILABLE and waits forever).
    shared.replicas.partition(topic, loc.partition).ok_or_else(|| {
        WireError::new(
            ErrorCode::CoordinatorLoadInProgress,
            "the coordinator partition is still opening here",
        )
    })
}

async fn coordinate_location(shared: &Shared, loc: Location) -> Result<Coordinated, WireError> {
    let handle = led_here(shared, OFFSETS_TOPIC, &loc, "group")?;
    let mut slot = shared.coordinator.slot(loc.partition).lock_owned().await;
    if slot.loaded != Some(loc.leader_epoch) {
        load(shared, &handle, &mut slot, loc.partition).await?;
        slot.loaded = Some(loc.leader_epoch);
    }
    Ok(Coordinated { slot, handle, partition: loc.partition, leader_epoch: loc.leader_epoch })
}

/// Rebuilds the slot from its partition: waits until every record in the log is committed,
/// then applies them in order.
async fn load(
    shared: &Shared,
    handle: &PartitionHandle,
    slot: &mut Slot,
    partition: u32,
) -> Result<(), WireError> {
    slot.loaded = None;
    slot.groups.clear();
    slot.pending.clear();
    let started = Instant::now();
    let now = shared.coordinator.now_ms();
    let records = replay(handle, OFFSETS_TOPIC, partition, |item| match item {
        Replayed::Record { key, value, offset, txn_producer: None } => {
            apply(slot, records::decode(key, value)?, offset, now);
            Some(())
        }
        Replayed::Record { key, value, offset, txn_producer: Some(producer) } => {
            txn_offsets::replayed(slot, producer, records::decode(key, value)?, offset)
        }
        Replayed::Marker { producer_id, commit, .. } => {
            txn_offsets::ended(slot, producer_id, commit);
            Some(())
        }
    })
    .await?;
    slot.groups.retain(|_, g| !g.members.is_empty() || !g.offsets.is_empty());
    tracing::info!(
        partition,
        groups = slot.groups.len(),
        records,
        ms = started.elapsed().as_millis() as u64,
        "loaded consumer groups"
    );
    Ok(())
}

/// One item of a replayed internal partition, in log order.
#[derive(Debug)]
pub(crate) enum Replayed<'a> {
    /// A record; `txn_producer` is the producer id of a transactional batch's record.
    Record {
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        offset: u64,
        txn_producer: Option<i64>,
    },
    /// A transaction marker ending `producer_id`'s transaction in this partition.
    Marker { producer_id: i64, commit: bool },
}

/// Replays partition `partition` of the internal topic `topic` from its log start: waits until
/// every record in the log is committed (`COORDINATOR_LOAD_IN_PROGRESS` after [`LOAD_WAIT`]),
/// then gives each record and marker to `apply` in order. Returns how many items `apply`
/// understood (answered `Some`).
pub(crate) async fn replay(
    handle: &PartitionHandle,
    topic: &str,
    partition: u32,
    mut apply: impl FnMut(Replayed<'_>) -> Option<()>,
) -> Result<u64, WireError> {
    let end = handle.state().log_end;
    let mut watch = handle.watch();
    let deadline = tokio::time::Instant::now() + LOAD_WAIT;
    while watch.borrow_and_update().high_watermark < end {
        if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
            return Err(WireError::new(
                ErrorCode::CoordinatorLoadInProgress,
                format!("{topic}/{partition} is not yet committed up to its log end"),
            ));
        }
    }
    let state = handle.state();
    let mut pos = state.log_start;
    let mut records = 0u64;
    while pos < state.high_watermark {
        let r = handle.read(pos, LOAD_READ_BYTES).await.map_err(append_error)?;
        if r.data.is_empty() || r.next_offset <= pos {
            break;
        }
        for batch in BatchIter::new(r.data) {
            let Ok(batch) = batch else { break };
            let Some(h) = BatchHeader::parse(&batch) else { break };
            if h.attributes & CONTROL_FLAG != 0 {
                if h.base_offset >= pos
                    && let Some(m) = Marker::decode(batch)
                {
                    let (producer_id, commit) = (m.producer_id, m.commit);
                    let item = Replayed::Marker { producer_id, commit };
                    records += u64::from(apply(item).is_some());
                }
                continue;
            }
            let txn_producer = (h.attributes & TRANSACTIONAL_FLAG != 0).then_some(h.producer_id);
            let Ok(iter) = RecordIter::new(batch) else { continue };
            for rec in iter.flatten() {
                if rec.offset < pos {
                    continue;
                }
                let item = Replayed::Record {
                    key: rec.key.as_deref(),
                    value: rec.value.as_deref(),
                    offset: rec.offset.0,
                    txn_producer,
                };
                records += u64::from(apply(item).is_some());
            }
        }
        pos = r.next_offset;
    }
    Ok(records)
}

/// Applies one record of `__consumer_offsets` found at `offset`.
fn apply(slot: &mut Slot, e: Entry, offset: u64, now_ms: u64) {
    match e {
        Entry::Offset { group, topic, partition, value } => {
            let c = value.map(|v| Committed::from_record(v, offset));
            slot.groups.entry(group).or_default().apply_offset((topic, partition), c, offset);
        }
        Entry::Group { group, value: None } => {
            slot.groups.remove(&group);
        }
        Entry::Group { group, value: Some(r) } => {
            slot.groups.entry(group).or_default().restore(r, now_ms);
        }
    }
}

/// A failed coordinator append as the client sees it.
pub(crate) fn append_error(e: PartitionError) -> WireError {
    let w = WireError::from(e);
    let code = match w.code {
        ErrorCode::NotLeader | ErrorCode::FencedLeaderEpoch | ErrorCode::UnknownTopic => {
            ErrorCode::NotCoordinator
        }
        ErrorCode::NotEnoughReplicas
        | ErrorCode::UnknownLeaderEpoch
        | ErrorCode::BrokerNotAvailable => ErrorCode::CoordinatorNotAvailable,
        other => other,
    };
    WireError::new(code, w.message)
}

/// Queues `entries` as one batch (in the order of the caller's lock); the receiver answers
/// once they are committed.
pub(crate) async fn append_queued(
    handle: &PartitionHandle,
    entries: &[Entry],
) -> Result<tokio::sync::oneshot::Receiver<Result<Appended, PartitionError>>, WireError> {
    let batch = records::encode(entries, crate::service::now_ms());
    handle.append_queued(vec![batch], WaitFor::Commit).await.map_err(append_error)
}

/// Waits for a queued append (bounded by the request timeout).
pub(crate) async fn committed(
    shared: &Shared,
    rx: tokio::sync::oneshot::Receiver<Result<Appended, PartitionError>>,
) -> Result<Appended, WireError> {
    let timeout = Duration::from_millis(shared.config.request_timeout_ms);
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(WireError::new(ErrorCode::RequestTimedOut, "commit not confirmed in time")),
        Ok(Err(_)) => Err(append_error(PartitionError::Closed)),
        Ok(Ok(r)) => r.map_err(append_error),
    }
}

/// Appends `entries` and waits for the commit (the caller keeps its lock meanwhile); on failure
/// the slot is marked for a reload, since memory may now be ahead of the log.
pub(crate) async fn write(
    shared: &Shared,
    c: &mut Coordinated,
    entries: &[Entry],
) -> Result<Appended, WireError> {
    let r = match append_queued(&c.handle, entries).await {
        Ok(rx) => committed(shared, rx).await,
        Err(e) => Err(e),
    };
    if r.is_err() {
        c.slot.loaded = None;
    }
    r
}

/// The membership record of `group` as it is now.
pub(crate) fn group_entry(slot: &Slot, group: &str) -> Entry {
    Entry::Group { group: group.to_string(), value: slot.groups.get(group).map(Group::record) }
}

/// Ends expired sessions and follows topic changes in every loaded slot this broker still
/// leads; writes the changed memberships.
pub(crate) async fn expiry_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(EXPIRY_TICK).await;
        let slots = shared.coordinator.slots();
        if slots.is_empty() {
            continue;
        }
        let v = view(&shared);
        let topics = subscribable_topics(&v);
        for (p, slot) in slots {
            let Ok(guard) = slot.clone().try_lock_owned() else { continue };
            if guard.loaded.is_none() {
                continue;
            }
            let current = locate_partition(&v, p).ok().filter(|l| {
                l.leader == Some(shared.config.node_id) && Some(l.leader_epoch) == guard.loaded
            });
            let Some(loc) = current else {
                // Leadership moved: forget the groups (the new coordinator has them).
                let mut guard = guard;
                guard.loaded = None;
                guard.groups.clear();
                guard.pending.clear();
                continue;
            };
            let Some(handle) = shared.replicas.partition(OFFSETS_TOPIC, p) else { continue };
            let mut c =
                Coordinated { slot: guard, handle, partition: p, leader_epoch: loc.leader_epoch };
            let now = shared.coordinator.now_ms();
            let rebalance = shared.config.group_rebalance_timeout_ms;
            let mut changed = Vec::new();
            for (name, g) in c.slot.groups.iter_mut() {
                let gone = g.expire(now, rebalance, &topics);
                for id in &gone {
                    tracing::info!(group = %name, member = %id, "member removed: session or rebalance timeout");
                }
                let moved = g.topics_changed(&topics);
                if !gone.is_empty() || moved {
                    changed.push(name.clone());
                }
            }
            if !changed.is_empty() {
                let entries: Vec<Entry> = changed.iter().map(|g| group_entry(&c.slot, g)).collect();
                if let Err(e) = write(&shared, &mut c, &entries).await {
                    tracing::warn!(partition = p, error = %e.message, "writing expired memberships failed");
                    continue;
                }
            }
            if let Err(e) = maybe_snapshot(&shared, &mut c, p).await {
                tracing::warn!(partition = p, error = %e.message, "snapshot of the groups failed");
            }
        }
    }
}

/// Whether an internal partition in `state` holding `live` live records is due for a rewrite
/// of them (more than two segments, and at least twice as many records as are live). Never for
/// an internal topic that is compacted (every one created since log compaction exists): the
/// cleaner keeps it bounded. The rewrite remains for internal topics created before, whose
/// stored config says `delete`.
pub(crate) fn rewrite_due(
    shared: &Shared,
    topic: &str,
    state: &crate::partition::PartitionState,
    live: u64,
) -> bool {
    if shared.topic_config(topic).is_none_or(|c| c.cleanup_compact) {
        return false;
    }
    let records = state.log_end.0.saturating_sub(state.log_start.0);
    state.size_bytes > 2 * shared.config.offsets_topic_segment_bytes
        && records >= 2 * live + SNAPSHOT_MIN_GARBAGE
}

/// Keeps a `__consumer_offsets` created before log compaction existed bounded (see
/// [`rewrite_due`]; a compacted one is the cleaner's): once a partition holds more
/// than two segments and at least twice as many records as are live, the coordinator rewrites
/// every live record (memberships and committed offsets) at the end of the log, then deletes the
/// segments wholly below the rewrite. Replaying from the new log start gives the same state: the
/// records before the rewrite are superseded by it. Runs under the slot lock with no commit in
/// flight, so the rewrite includes everything committed before it.
async fn maybe_snapshot(
    shared: &Shared,
    c: &mut Coordinated,
    partition: u32,
) -> Result<(), WireError> {
    // Not while a transaction holds offsets here: the rewrite would delete their records
    // before the marker that decides them.
    if c.slot.in_flight.load(Ordering::SeqCst) > 0 || !c.slot.pending.is_empty() {
        return Ok(());
    }
    let state = c.handle.state();
    let live: u64 = c.slot.groups.values().map(|g| g.offsets.len() as u64 + 1).sum();
    let records = state.log_end.0.saturating_sub(state.log_start.0);
    if !rewrite_due(shared, OFFSETS_TOPIC, &state, live) {
        return Ok(());
    }
    let mut entries = Vec::new();
    for (name, g) in &c.slot.groups {
        // Every group, members or not: a membership record left in the kept segment must not
        // outlive the rewrite.
        entries.push(Entry::Group { group: name.clone(), value: Some(g.record()) });
        for ((topic, p), o) in &g.offsets {
            entries.push(Entry::Offset {
                group: name.clone(),
                topic: topic.clone(),
                partition: *p,
                value: Some(o.to_record()),
            });
        }
    }
    let mut start = None;
    for chunk in entries.chunks(SNAPSHOT_BATCH) {
        let appended = write(shared, c, chunk).await?;
        start.get_or_insert(appended.base_offset);
    }
    // Nothing live (every group deleted): everything up to the log end is superseded.
    let start = start.unwrap_or(state.log_end);
    let new_start = c.handle.delete_before(start).await.map_err(append_error)?;
    tracing::info!(
        partition,
        live,
        superseded = records,
        from = state.log_start.0,
        to = new_start.0,
        "rewrote the live group records and deleted older segments"
    );
    Ok(())
}

/// Offsets of a partition as known here, for lag: the high watermark of a hosted replica.
pub(crate) fn local_high_watermark(shared: &Shared, topic: &str, partition: u32) -> Option<i64> {
    shared.replicas.partition(topic, partition).map(|h| h.state().high_watermark.0 as i64)
}

/// One coordinated group as the metrics show it.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    pub group: String,
    pub members: usize,
    /// (topic, partition, committed offset, lag where this broker hosts the partition).
    pub offsets: Vec<(String, u32, i64, Option<i64>)>,
}

/// The groups this broker coordinates now (slots busy at this instant are skipped).
pub(crate) fn metrics(shared: &Shared) -> Vec<GroupMetrics> {
    let mut out = Vec::new();
    for (_, slot) in shared.coordinator.slots() {
        let Ok(slot) = slot.try_lock() else { continue };
        if slot.loaded.is_none() {
            continue;
        }
        for (name, g) in &slot.groups {
            let offsets = g
                .offsets
                .iter()
                .map(|((t, p), c)| {
                    let lag = local_high_watermark(shared, t, *p).map(|hw| (hw - c.offset).max(0));
                    (t.clone(), *p, c.offset, lag)
                })
                .collect();
            out.push(GroupMetrics { group: name.clone(), members: g.members.len(), offsets });
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out
}
