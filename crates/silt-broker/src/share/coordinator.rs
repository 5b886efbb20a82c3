//! The share coordinator: for each `__share_group_state` partition this broker leads, the share
//! groups hashed to it, loaded by replaying the partition when leadership arrives (every
//! share-partition's persisted state survives a failover; memberships and locks do not), and
//! written back with `acks=all` before any answer depends on it. A background task releases
//! expired locks and ends silent members.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use super::group::{ShareGroup, Tp};
use super::records::{self, Entry, Key, SHARE_STATE_TOPIC};
use super::state::{Archived, Limits, SharePartition};
use crate::broker::Shared;
use crate::error::WireError;
use crate::groups::coordinator::{
    Replayed, committed, ensure_internal_topic, led_here, locate_in, not_available, partition_of,
    replay,
};
use crate::partition::{Appended, PartitionError, PartitionHandle, WaitFor};
use crate::service::metadata::{View, view};

/// How often locks and sessions are checked.
const EXPIRY_TICK: Duration = Duration::from_millis(100);
/// Snapshots per batch written to `__share_group_state`.
const WRITE_BATCH: usize = 100;

/// The share groups of one `__share_group_state` partition.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The leader epoch the groups were loaded in (None: not loaded, or memory may be ahead of
    /// the log after a failed write: reload before use).
    pub loaded: Option<u32>,
    pub groups: BTreeMap<String, ShareGroup>,
}

/// Every slot of this broker.
#[derive(Debug)]
pub(crate) struct ShareCoordinator {
    slots: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<Slot>>>>,
    clock: Instant,
    next_member: AtomicU64,
}

impl Default for ShareCoordinator {
    fn default() -> Self {
        ShareCoordinator {
            slots: Mutex::default(),
            clock: Instant::now(),
            next_member: AtomicU64::new(0),
        }
    }
}

impl ShareCoordinator {
    /// Milliseconds on the coordinator's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// A member id no other member has had.
    pub fn new_member_id(&self, node: u64) -> String {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        format!("share-{node}-{:x}-{n}", crate::service::now_ms())
    }

    pub(crate) fn slot(&self, partition: u32) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(partition).or_default().clone()
    }

    pub fn slots(&self) -> Vec<(u32, Arc<tokio::sync::Mutex<Slot>>)> {
        let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(p, s)| (*p, s.clone())).collect()
    }
}

/// The share-partition limits of this broker's config.
pub(crate) fn limits(shared: &Shared) -> Limits {
    let c = &shared.config;
    Limits {
        lock_ms: c.share_record_lock_duration_ms,
        delivery_limit: c.share_delivery_count_limit,
        max_locks: c.share_partition_max_record_locks as usize,
    }
}

/// The number of `__share_group_state` partitions, if the topic exists.
pub(crate) fn state_partitions(v: &View) -> Option<u32> {
    v.topics.get(SHARE_STATE_TOPIC).map(|t| t.partitions.len() as u32)
}

/// Where `group` is coordinated.
pub(crate) fn locate(
    v: &View,
    group: &str,
) -> Result<crate::groups::coordinator::Location, WireError> {
    let n = state_partitions(v)
        .ok_or_else(|| not_available(format!("{SHARE_STATE_TOPIC} does not exist yet")))?;
    locate_in(v, SHARE_STATE_TOPIC, partition_of(group, n))
}

/// Creates `__share_group_state` unless it exists (as `__consumer_offsets`: compacted, RF 3
/// capped at the cluster's size, min ISR 2).
pub(crate) async fn ensure_state_topic(shared: &Arc<Shared>) -> Result<(), WireError> {
    ensure_internal_topic(shared, SHARE_STATE_TOPIC).await
}

/// A slot this broker coordinates, locked and loaded, with the partition's worker.
pub(crate) struct Coordinated {
    pub slot: OwnedMutexGuard<Slot>,
    pub handle: PartitionHandle,
    /// The `__share_group_state` partition.
    pub partition: u32,
}

/// Locks `group`'s slot after checking this broker coordinates it (loading it if leadership
/// is new).
pub(crate) async fn coordinate(
    shared: &Shared,
    v: &View,
    group: &str,
) -> Result<Coordinated, WireError> {
    let loc = locate(v, group)?;
    coordinate_partition(shared, loc).await
}

/// Like [`coordinate`] for a located `__share_group_state` partition.
pub(crate) async fn coordinate_partition(
    shared: &Shared,
    loc: crate::groups::coordinator::Location,
) -> Result<Coordinated, WireError> {
    let handle = led_here(shared, SHARE_STATE_TOPIC, &loc, "share group")?;
    let mut slot = shared.share.slot(loc.partition).lock_owned().await;
    if slot.loaded != Some(loc.leader_epoch) {
        load(&handle, &mut slot, loc.partition).await?;
        slot.loaded = Some(loc.leader_epoch);
    }
    Ok(Coordinated { slot, handle, partition: loc.partition })
}

/// Rebuilds the slot from its partition: the latest snapshot of every share-partition.
async fn load(handle: &PartitionHandle, slot: &mut Slot, partition: u32) -> Result<(), WireError> {
    slot.loaded = None;
    slot.groups.clear();
    let started = Instant::now();
    let records = replay(handle, SHARE_STATE_TOPIC, partition, |item| match item {
        Replayed::Record { key, value, .. } => {
            let e = records::decode(key, value)?;
            let tp = (e.key.topic, e.key.partition);
            match e.value {
                Some(s) => {
                    let g = slot.groups.entry(e.key.group).or_default();
                    g.partitions.insert(tp, SharePartition::restore(&s));
                }
                None => {
                    if let Some(g) = slot.groups.get_mut(&e.key.group) {
                        g.partitions.remove(&tp);
                    }
                }
            }
            Some(())
        }
        Replayed::Marker { .. } => None,
    })
    .await?;
    slot.groups.retain(|_, g| !g.partitions.is_empty());
    tracing::info!(
        partition,
        groups = slot.groups.len(),
        records,
        ms = started.elapsed().as_millis() as u64,
        "loaded share groups"
    );
    Ok(())
}

/// The state records of `group`'s partitions `tps` as they are now (a tombstone for one the
/// group no longer has).
pub(crate) fn entries(slot: &Slot, group: &str, tps: &[Tp]) -> Vec<Entry> {
    let g = slot.groups.get(group);
    tps.iter()
        .map(|(t, p)| Entry {
            key: Key { group: group.to_string(), topic: t.clone(), partition: *p },
            value: g.and_then(|g| g.partitions.get(&(t.clone(), *p))).map(SharePartition::snapshot),
        })
        .collect()
}

/// State writes queued to a slot's partition, not yet committed.
#[must_use = "answer only once the writes are committed"]
pub(crate) struct Queued {
    partition: u32,
    writes: Vec<tokio::sync::oneshot::Receiver<Result<Appended, PartitionError>>>,
}

/// Queues the state of `group`'s partitions `tps` (in the order of the slot lock). Wait for them
/// with [`committed_all`], which may run after the lock is released: the writes are ordered by
/// the queue, and each carries the whole window of its share-partition, so a later one
/// includes every change before it.
pub(crate) async fn queue(
    c: &mut Coordinated,
    group: &str,
    tps: &[Tp],
) -> Result<Queued, WireError> {
    let mut q = Queued { partition: c.partition, writes: Vec::new() };
    let all = entries(&c.slot, group, tps);
    for chunk in all.chunks(WRITE_BATCH) {
        let batch = records::encode(chunk, crate::service::now_ms());
        match c.handle.append_queued(vec![batch], WaitFor::Commit).await {
            Ok(rx) => q.writes.push(rx),
            Err(e) => {
                c.slot.loaded = None;
                return Err(crate::groups::coordinator::append_error(e));
            }
        }
    }
    Ok(q)
}

/// Waits until the queued writes are committed (acks=all). On failure the slot is marked for a
/// reload: memory may be ahead of the log.
pub(crate) async fn committed_all(shared: &Shared, q: Queued) -> Result<(), WireError> {
    for rx in q.writes {
        if let Err(e) = committed(shared, rx).await {
            shared.share.slot(q.partition).lock().await.loaded = None;
            return Err(e);
        }
    }
    Ok(())
}

/// Writes the state of `group`'s partitions `tps` and waits for the commit, holding the lock.
pub(crate) async fn persist(
    shared: &Shared,
    c: &mut Coordinated,
    group: &str,
    tps: &[Tp],
) -> Result<(), WireError> {
    if tps.is_empty() {
        return Ok(());
    }
    let q = queue(c, group, tps).await?;
    for rx in q.writes {
        if let Err(e) = committed(shared, rx).await {
            c.slot.loaded = None;
            return Err(e);
        }
    }
    Ok(())
}

/// Partitions of every topic but the internal ones, with their counts.
pub(crate) fn existing_topics(v: &View) -> BTreeMap<String, u32> {
    crate::groups::coordinator::subscribable_topics(v)
}

/// Releases expired locks, ends silent members and follows topic changes in every loaded slot
/// this broker still leads; dead-letters what that archives and writes the changed states.
pub(crate) async fn expiry_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(EXPIRY_TICK).await;
        let slots = shared.share.slots();
        if slots.is_empty() {
            continue;
        }
        let v = view(&shared);
        let existing = existing_topics(&v);
        for (p, slot) in slots {
            let Ok(guard) = slot.clone().try_lock_owned() else { continue };
            let Some(epoch) = guard.loaded else { continue };
            let current = locate_in(&v, SHARE_STATE_TOPIC, p)
                .ok()
                .filter(|l| l.leader == Some(shared.config.node_id) && l.leader_epoch == epoch);
            if current.is_none() {
                // Leadership moved: forget the groups (the new coordinator has them).
                let mut guard = guard;
                guard.loaded = None;
                guard.groups.clear();
                continue;
            }
            let Some(handle) = shared.replicas.partition(SHARE_STATE_TOPIC, p) else { continue };
            let mut c = Coordinated { slot: guard, handle, partition: p };
            if let Err(e) = expire_slot(&shared, &mut c, &existing).await {
                tracing::warn!(partition = p, error = %e.message, "share group expiry failed");
            }
        }
    }
}

async fn expire_slot(
    shared: &Shared,
    c: &mut Coordinated,
    existing: &BTreeMap<String, u32>,
) -> Result<(), WireError> {
    let now = shared.share.now_ms();
    let session = shared.config.share_session_timeout_ms;
    let limits = limits(shared);
    let names: Vec<String> = c.slot.groups.keys().cloned().collect();
    for name in names {
        let Some(g) = c.slot.groups.get_mut(&name) else { continue };
        let mut changed: Vec<Tp> = g.topics_changed(existing);
        let mut archived: Vec<(Tp, Archived)> = Vec::new();
        for id in g.expired_members(now, session) {
            tracing::info!(group = %name, member = %id, "share group member removed: session timeout");
            g.members.remove(&id);
            for (tp, sp) in g.partitions.iter_mut() {
                let (n, a) = sp.release_locks(now, Some(&id), &limits);
                if n > 0 {
                    changed.push(tp.clone());
                    archived.extend(a.into_iter().map(|a| (tp.clone(), a)));
                }
            }
        }
        for (tp, sp) in g.partitions.iter_mut() {
            let (n, a) = sp.release_locks(now, None, &limits);
            if n > 0 {
                changed.push(tp.clone());
                archived.extend(a.into_iter().map(|a| (tp.clone(), a)));
            }
        }
        changed.sort();
        changed.dedup();
        if changed.is_empty() {
            continue;
        }
        super::fetch::archive(shared, c, &name, &archived).await?;
        persist(shared, c, &name, &changed).await?;
    }
    Ok(())
}

/// One coordinated share group as the metrics show it.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    pub group: String,
    pub members: usize,
    pub in_flight: u64,
    pub counters: super::group::Counters,
}

/// The share groups this broker coordinates now (slots busy at this instant are skipped).
pub(crate) fn metrics(shared: &Shared) -> Vec<GroupMetrics> {
    let mut out = Vec::new();
    for (_, slot) in shared.share.slots() {
        let Ok(slot) = slot.try_lock() else { continue };
        if slot.loaded.is_none() {
            continue;
        }
        for (name, g) in &slot.groups {
            out.push(GroupMetrics {
                group: name.clone(),
                members: g.members.len(),
                in_flight: g.partitions.values().map(|p| p.acquired() as u64).sum(),
                counters: g.counters,
            });
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out
}
