//! The transaction coordinator: for each `__transaction_state` partition this broker leads, the
//! transactional ids hashed to it ([`silt_core::txn::Txn`] each), loaded by replaying the
//! partition when leadership arrives and written back with `acks=all` before anything is acted
//! on or answered. A decided transaction (PrepareCommit / PrepareAbort) gets its markers from a
//! completion task; the maintenance loop aborts transactions past their timeout and restarts
//! the completion of any decided one that has none running (after a coordinator failover: the
//! new coordinator finishes what its predecessor decided).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silt_core::batch::Marker;
use silt_core::txn::{Action, Init, Tp, Txn, TxnError, TxnState};
use silt_proto::v1::ErrorCode;
use tokio::sync::OwnedMutexGuard;

use super::records::{self, TXN_TOPIC, TxnRecord};
use crate::broker::Shared;
use crate::error::WireError;
use crate::groups::coordinator::{
    Location, Replayed, SNAPSHOT_BATCH, append_error, committed, ensure_internal_topic, led_here,
    locate_in, not_available, partition_of, replay, rewrite_due,
};
use crate::partition::{PartitionHandle, WaitFor};
use crate::service::metadata::{View, view};
use crate::service::now_ms;

/// How often timeouts and unfinished completions are checked.
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);
/// Pause between two attempts at a marker.
const MARKER_RETRY: Duration = Duration::from_millis(200);
/// Verified (partition, producer) pairs remembered before the cache starts afresh.
const VERIFIED_MAX: usize = 100_000;

/// A partition and a producer id the coordinator verified (for the transactional id and
/// epoch kept with it).
type Verified = (String, u32, i64);

/// The transactional ids of one `__transaction_state` partition.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The leader epoch the ids were loaded in (None: not loaded).
    pub loaded: Option<u32>,
    pub txns: BTreeMap<String, Txn>,
    /// Ids whose markers a completion task is writing now.
    completing: HashSet<String>,
}

/// Every slot of this broker, the verification cache of the partitions it leads, and counters.
#[derive(Debug, Default)]
pub(crate) struct TxnCoordinator {
    slots: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<Slot>>>>,
    /// (topic, partition, producer id) -> the epoch whose transaction the coordinator confirmed
    /// this partition joined: later batches of that transaction skip the round trip.
    verified: Mutex<HashMap<Verified, (String, i16)>>,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub timed_out: AtomicU64,
}

impl TxnCoordinator {
    fn slot(&self, partition: u32) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(partition).or_default().clone()
    }

    /// Every slot (for the maintenance loop, listings and metrics).
    pub fn slots(&self) -> Vec<(u32, Arc<tokio::sync::Mutex<Slot>>)> {
        let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(p, s)| (*p, s.clone())).collect()
    }

    /// Whether this partition already joined `producer_id`'s transaction at `epoch`.
    /// Whether the coordinator of transactional id `id` has added `tp` to the transaction of
    /// `producer_id` at `epoch` (the id is part of the key: a principal allowed to write its
    /// own id cannot ride on another id's verification).
    pub fn is_verified(&self, id: &str, tp: &Tp, producer_id: i64, epoch: i16) -> bool {
        let m = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(tp.0.clone(), tp.1, producer_id)).is_some_and(|(i, e)| i == id && *e == epoch)
    }

    pub fn set_verified(&self, id: &str, tp: &Tp, producer_id: i64, epoch: i16) {
        let mut m = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= VERIFIED_MAX {
            m.clear();
        }
        m.insert((tp.0.clone(), tp.1, producer_id), (id.to_string(), epoch));
    }
}

/// A transaction state error as the client sees it.
pub(crate) fn txn_error(e: TxnError) -> WireError {
    let code = match e {
        TxnError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
        TxnError::ConcurrentTransactions => ErrorCode::ConcurrentTransactions,
        TxnError::InvalidTxnState(..) => ErrorCode::InvalidTxnState,
        TxnError::InvalidTransactionTimeout(_) => ErrorCode::InvalidTransactionTimeout,
    };
    WireError::new(code, e.to_string())
}

/// Where transactional id `id` is coordinated.
pub(crate) fn locate(v: &View, id: &str) -> Result<Location, WireError> {
    let n = v
        .topics
        .get(TXN_TOPIC)
        .map(|t| t.partitions.len() as u32)
        .ok_or_else(|| not_available(format!("{TXN_TOPIC} does not exist yet")))?;
    locate_in(v, TXN_TOPIC, partition_of(id, n))
}

/// A slot this broker coordinates, locked and loaded, with its partition's worker.
pub(crate) struct Coordinated {
    pub slot: OwnedMutexGuard<Slot>,
    pub handle: PartitionHandle,
    pub partition: u32,
    pub leader_epoch: u32,
}

/// Creates `__transaction_state` if needed (retriable `COORDINATOR_NOT_AVAILABLE` meanwhile).
pub(crate) async fn ensure_topic(shared: &Arc<Shared>) -> Result<(), WireError> {
    ensure_internal_topic(shared, TXN_TOPIC).await
}

/// Locks `id`'s slot after checking this broker coordinates it (loading it if leadership is
/// new).
pub(crate) async fn coordinate(shared: &Shared, id: &str) -> Result<Coordinated, WireError> {
    let loc = locate(&view(shared), id)?;
    coordinate_location(shared, loc).await
}

async fn coordinate_partition(shared: &Shared, partition: u32) -> Result<Coordinated, WireError> {
    let loc = locate_in(&view(shared), TXN_TOPIC, partition)?;
    coordinate_location(shared, loc).await
}

async fn coordinate_location(shared: &Shared, loc: Location) -> Result<Coordinated, WireError> {
    let handle = led_here(shared, TXN_TOPIC, &loc, "transactional id")?;
    let mut slot = shared.txn.slot(loc.partition).lock_owned().await;
    if slot.loaded != Some(loc.leader_epoch) {
        slot.loaded = None;
        slot.txns.clear();
        let started = std::time::Instant::now();
        let txns = &mut slot.txns;
        let records = replay(&handle, TXN_TOPIC, loc.partition, |item| {
            let Replayed::Record { key, value, .. } = item else { return None };
            match records::decode(key, value)? {
                (id, Some(t)) => txns.insert(id, t),
                (id, None) => txns.remove(&id),
            };
            Some(())
        })
        .await?;
        tracing::info!(
            partition = loc.partition,
            ids = slot.txns.len(),
            records,
            ms = started.elapsed().as_millis() as u64,
            "loaded transaction state"
        );
        slot.loaded = Some(loc.leader_epoch);
    }
    Ok(Coordinated { slot, handle, partition: loc.partition, leader_epoch: loc.leader_epoch })
}

/// Writes the current state of `ids` and waits for the commit (the caller keeps the lock); on
/// failure the slot is reloaded on next use, since memory may be ahead of the log. Answers
/// where the batch went.
async fn write(
    shared: &Shared,
    c: &mut Coordinated,
    ids: &[&str],
) -> Result<silt_core::Offset, WireError> {
    let entries: Vec<(&str, Option<TxnRecord>)> =
        ids.iter().map(|id| (*id, c.slot.txns.get(*id).map(TxnRecord::of))).collect();
    let batch = records::encode(&entries, now_ms());
    let r = match c.handle.append_queued(vec![batch], WaitFor::Commit).await {
        Ok(rx) => committed(shared, rx).await.map(|a| a.base_offset),
        Err(e) => Err(append_error(e)),
    };
    if r.is_err() {
        c.slot.loaded = None;
    }
    r
}

fn clock() -> u64 {
    now_ms().max(0) as u64
}

/// A new producer id when `t`'s next bump may need one (the epoch at its top), else none.
async fn fresh_if_needed(shared: &Shared, t: Option<&Txn>) -> Result<Option<i64>, WireError> {
    match t {
        Some(t) if t.epoch < i16::MAX - 1 => Ok(None),
        _ => crate::cluster::next_producer_id(shared).await.map(Some),
    }
}

fn fresh_from(fresh: Option<i64>) -> impl FnOnce() -> i64 {
    move || fresh.expect("invariant: fetched whenever the epoch is at its top")
}

/// InitProducerId with a transactional id: the id's producer id and a bumped epoch (fencing
/// every older incarnation). A transaction the previous incarnation left open is aborted first
/// (`CONCURRENT_TRANSACTIONS` until its markers are written: the client retries).
pub(crate) async fn init_producer_id(
    shared: &Arc<Shared>,
    id: &str,
    timeout_ms: u64,
) -> Result<(i64, i16), WireError> {
    ensure_topic(shared).await?;
    let mut c = coordinate(shared, id).await?;
    let fresh = fresh_if_needed(shared, c.slot.txns.get(id)).await?;
    let now = clock();
    let init = match c.slot.txns.get_mut(id) {
        Some(t) => t.init(timeout_ms, now, fresh_from(fresh)).map_err(txn_error)?,
        None => {
            let producer_id = fresh.expect("invariant: fetched for a new id");
            let t = Txn::new(producer_id, timeout_ms, now).map_err(txn_error)?;
            c.slot.txns.insert(id.to_string(), t);
            Init::Ready { producer_id, epoch: 0 }
        }
    };
    write(shared, &mut c, &[id]).await?;
    match init {
        Init::Ready { producer_id, epoch } => {
            tracing::info!(transactional_id = %id, producer_id, epoch, "producer initialized");
            Ok((producer_id, epoch))
        }
        Init::AbortFirst(_) => {
            shared.txn.aborts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(transactional_id = %id, "a new incarnation aborts the open transaction of the previous one");
            start_completion(shared, &mut c, id);
            Err(WireError::new(
                ErrorCode::ConcurrentTransactions,
                "the previous incarnation's open transaction is being aborted; retry",
            ))
        }
    }
}

/// A partition leader's verification of a producer's transactional batch: adds the partition
/// to the ongoing transaction (starting one), durably, unless it is in already.
pub(crate) async fn add_partition(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    tp: Tp,
) -> Result<(), WireError> {
    let mut c = coordinate(shared, id).await?;
    let t = c.slot.txns.get_mut(id).ok_or_else(|| {
        WireError::new(
            ErrorCode::InvalidTxnState,
            format!("transactional id {id} has no state: call InitProducerId first"),
        )
    })?;
    if t.state == TxnState::Ongoing
        && (t.producer_id, t.epoch) == (producer_id, epoch)
        && t.partitions.contains(&tp)
    {
        return Ok(());
    }
    t.add_partition(producer_id, epoch, tp, clock()).map_err(txn_error)?;
    write(shared, &mut c, &[id]).await.map(drop)
}

/// EndTxn: commits or aborts the ongoing transaction. Once the decision is durable the markers
/// are written (waited for here up to the request timeout, then left to the completion task);
/// answers the producer id and epoch for the next transaction.
pub(crate) async fn end_txn(
    shared: &Arc<Shared>,
    id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<(i64, i16), WireError> {
    let mut c = coordinate(shared, id).await?;
    let fresh = fresh_if_needed(shared, c.slot.txns.get(id)).await?;
    let t = c.slot.txns.get_mut(id).ok_or_else(|| {
        WireError::new(ErrorCode::TransactionalIdNotFound, format!("no transactional id {id}"))
    })?;
    let before = t.clone();
    let action =
        t.end(producer_id, epoch, commit, clock(), fresh_from(fresh)).map_err(txn_error)?;
    let next = (t.producer_id, t.epoch);
    if *t == before {
        return Ok(next); // a retried EndTxn: already decided
    }
    write(shared, &mut c, &[id]).await?;
    #[cfg(feature = "fault-injection")]
    crash_after_prepare(shared, commit);
    if let Action::WriteMarkers { .. } = action {
        let counter = if commit { &shared.txn.commits } else { &shared.txn.aborts };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(done) = start_completion(shared, &mut c, id) {
            drop(c);
            let wait = Duration::from_millis(shared.config.request_timeout_ms);
            let _ = tokio::time::timeout(wait, done).await;
        }
    }
    Ok(next)
}

/// With the `fault-injection` feature (fault tests only): a file of this name in the broker's
/// data directory makes the coordinator abort right after a PrepareCommit is durable, before
/// any marker is written (the next coordinator must finish the commit).
#[cfg(feature = "fault-injection")]
pub const CRASH_AFTER_PREPARE_COMMIT_FILE: &str = "CRASH_AFTER_PREPARE_COMMIT";

#[cfg(feature = "fault-injection")]
fn crash_after_prepare(shared: &Shared, commit: bool) {
    if commit && shared.config.data_dir.join(CRASH_AFTER_PREPARE_COMMIT_FILE).exists() {
        eprintln!("fault injection: aborting after PrepareCommit, before the markers");
        std::process::abort();
    }
}

/// Starts the task that writes a decided transaction's markers (unless one runs already);
/// the receiver fires when it ends, whether it finished the transaction or not.
fn start_completion(
    shared: &Arc<Shared>,
    c: &mut Coordinated,
    id: &str,
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    if !c.slot.completing.insert(id.to_string()) {
        return None;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (shared, id, partition) = (shared.clone(), id.to_string(), c.partition);
    tokio::spawn(async move {
        if let Err(e) = complete(&shared, partition, &id).await {
            tracing::warn!(transactional_id = %id, error = %e.message, "transaction markers not all written yet; retried");
        }
        shared.txn.slot(partition).lock().await.completing.remove(&id);
        let _ = tx.send(());
    });
    Some(rx)
}

/// Writes the markers of `id`'s decided transaction to every partition in it, then records the
/// transaction complete.
async fn complete(shared: &Arc<Shared>, partition: u32, id: &str) -> Result<(), WireError> {
    let (marker, partitions, leader_epoch) = {
        let c = coordinate_partition(shared, partition).await?;
        let Some(t) = c.slot.txns.get(id) else { return Ok(()) };
        let commit = match t.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        let (producer_id, producer_epoch) = t.marker_identity();
        let marker = Marker {
            commit,
            producer_id,
            producer_epoch,
            coordinator_epoch: c.leader_epoch as i32,
        };
        (marker, t.partitions.clone(), c.leader_epoch)
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(shared.config.request_timeout_ms);
    let writes = partitions
        .iter()
        .map(|tp| write_marker_until(shared, tp, marker, (partition, leader_epoch), deadline));
    for r in futures_util::future::join_all(writes).await {
        r?;
    }
    let mut c = coordinate_partition(shared, partition).await?;
    let Some(t) = c.slot.txns.get_mut(id) else { return Ok(()) };
    let same = c.leader_epoch == leader_epoch
        && t.marker_identity() == (marker.producer_id, marker.producer_epoch);
    if !same || !matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
        return Ok(());
    }
    t.markers_written(clock()).map_err(txn_error)?;
    write(shared, &mut c, &[id]).await?;
    tracing::debug!(transactional_id = %id, commit = marker.commit, partitions = partitions.len(), "transaction complete");
    Ok(())
}

/// Writes one marker, retrying while the partition's leader moves or is unreachable, until
/// `deadline`, and only while this broker still coordinates (`coordinating`: the
/// `__transaction_state` partition and the leader epoch the decision was read in); a deposed
/// coordinator's late marker could otherwise land after its successor finished. A deleted
/// topic needs no marker.
async fn write_marker_until(
    shared: &Shared,
    tp: &Tp,
    marker: Marker,
    coordinating: (u32, u32),
    deadline: tokio::time::Instant,
) -> Result<(), WireError> {
    loop {
        let (partition, epoch) = coordinating;
        let me = Some(shared.config.node_id);
        let leading = locate_in(&view(shared), TXN_TOPIC, partition)
            .is_ok_and(|l| l.leader == me && l.leader_epoch == epoch);
        if !leading {
            return Err(WireError::new(
                ErrorCode::NotCoordinator,
                "no longer the coordinator: the successor writes the markers",
            ));
        }
        let r = super::markers::write_marker(shared, tp, marker).await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() + MARKER_RETRY >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!(topic = %tp.0, partition = tp.1, error = %e.message, "marker not written yet; retrying");
                tokio::time::sleep(MARKER_RETRY).await;
            }
        }
    }
}

/// Aborts transactions past their timeout and restarts the completion of decided ones with
/// none running, in every loaded slot this broker still leads.
pub(crate) async fn maintenance_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(MAINTENANCE_TICK).await;
        load_led_partitions(&shared).await;
        let slots = shared.txn.slots();
        if slots.is_empty() {
            continue;
        }
        let v = view(&shared);
        for (p, slot) in slots {
            let Ok(mut guard) = slot.clone().try_lock_owned() else { continue };
            if guard.loaded.is_none() {
                continue;
            }
            let current = locate_in(&v, TXN_TOPIC, p).ok().filter(|l| {
                l.leader == Some(shared.config.node_id) && Some(l.leader_epoch) == guard.loaded
            });
            let (Some(loc), Some(handle)) = (current, shared.replicas.partition(TXN_TOPIC, p))
            else {
                // Leadership moved: forget the ids (the new coordinator has them).
                guard.loaded = None;
                guard.txns.clear();
                continue;
            };
            let mut c =
                Coordinated { slot: guard, handle, partition: p, leader_epoch: loc.leader_epoch };
            if let Err(e) = maintain(&shared, &mut c).await {
                tracing::warn!(partition = p, error = %e.message, "transaction maintenance failed");
            }
        }
    }
}

/// Loads every `__transaction_state` partition this broker leads and has not loaded in the
/// current leader epoch, so that transactions nobody asks about any more (their producer gone)
/// still time out and decided ones still get their markers after a failover.
async fn load_led_partitions(shared: &Shared) {
    if shared.serving().is_err() {
        return; // a stale image must not place coordinators
    }
    let v = view(shared);
    let Some(n) = v.topics.get(TXN_TOPIC).map(|t| t.partitions.len() as u32) else { return };
    let me = Some(shared.config.node_id);
    for p in 0..n {
        let Ok(loc) = locate_in(&v, TXN_TOPIC, p) else { continue };
        if loc.leader != me {
            continue;
        }
        let loaded = shared.txn.slot(p).try_lock().map(|s| s.loaded);
        if matches!(loaded, Ok(l) if l != Some(loc.leader_epoch))
            && let Err(e) = coordinate_partition(shared, p).await
        {
            tracing::debug!(partition = p, error = %e.message, "transaction state not loaded yet");
        }
    }
}

async fn maintain(shared: &Arc<Shared>, c: &mut Coordinated) -> Result<(), WireError> {
    let now = clock();
    let mut expired = Vec::new();
    let mut need_fresh = Vec::new();
    for (id, t) in &c.slot.txns {
        if t.state == TxnState::Ongoing && now.saturating_sub(t.started_ms) > t.timeout_ms {
            if t.epoch >= i16::MAX - 1 {
                need_fresh.push(id.clone());
            }
            expired.push(id.clone());
        }
    }
    let mut fresh = BTreeMap::new();
    for id in need_fresh {
        fresh.insert(id, crate::cluster::next_producer_id(shared).await?);
    }
    for id in &expired {
        let t = c.slot.txns.get_mut(id).expect("invariant: listed above");
        if t.expire(now, fresh_from(fresh.get(id).copied())).is_some() {
            tracing::info!(transactional_id = %id, timeout_ms = t.timeout_ms, "transaction timed out: aborting it");
            shared.txn.timed_out.fetch_add(1, Ordering::Relaxed);
            shared.txn.aborts.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !expired.is_empty() {
        let ids: Vec<&str> = expired.iter().map(String::as_str).collect();
        write(shared, c, &ids).await?;
    }
    let decided: Vec<String> = c
        .slot
        .txns
        .iter()
        .filter(|(id, t)| {
            matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
                && !c.slot.completing.contains(*id)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in decided {
        start_completion(shared, c, &id);
    }
    maybe_rewrite(shared, c).await
}

/// Keeps a `__transaction_state` created before log compaction existed bounded the way such a
/// `__consumer_offsets` is (a compacted one is the cleaner's; see `rewrite_due`): once the
/// partition is due, every id's current record is written again at
/// the end of the log and the segments wholly below the rewrite are deleted. Each record holds
/// an id's whole state, so replaying from the new log start gives the same ids.
async fn maybe_rewrite(shared: &Shared, c: &mut Coordinated) -> Result<(), WireError> {
    let state = c.handle.state();
    if !rewrite_due(shared, TXN_TOPIC, &state, c.slot.txns.len() as u64) {
        return Ok(());
    }
    let ids: Vec<String> = c.slot.txns.keys().cloned().collect();
    let mut start = None;
    for chunk in ids.chunks(SNAPSHOT_BATCH) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let appended = write(shared, c, &chunk).await?;
        start.get_or_insert(appended);
    }
    let start = start.unwrap_or(state.log_end);
    let new_start = c.handle.delete_before(start).await.map_err(append_error)?;
    tracing::info!(
        partition = c.partition,
        ids = ids.len(),
        from = state.log_start.0,
        to = new_start.0,
        "rewrote the transaction state and deleted older segments"
    );
    Ok(())
}

/// One transactional id as listed.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub id: String,
    pub txn: Txn,
}

/// The ids this broker coordinates now (slots busy at this instant are skipped).
pub(crate) fn listed(shared: &Shared) -> Vec<Listed> {
    let mut out = Vec::new();
    for (_, slot) in shared.txn.slots() {
        let Ok(slot) = slot.try_lock() else { continue };
        if slot.loaded.is_none() {
            continue;
        }
        out.extend(slot.txns.iter().map(|(id, t)| Listed { id: id.clone(), txn: t.clone() }));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `id`'s state, from its coordinator (this broker).
pub(crate) async fn describe(shared: &Shared, id: &str) -> Result<Txn, WireError> {
    let c = coordinate(shared, id).await?;
    c.slot.txns.get(id).cloned().ok_or_else(|| {
        WireError::new(ErrorCode::TransactionalIdNotFound, format!("no transactional id {id}"))
    })
}

/// The partitions of a transaction grouped by topic.
pub(crate) fn by_topic(partitions: &BTreeSet<Tp>) -> BTreeMap<&str, Vec<u32>> {
    let mut out: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in partitions {
        out.entry(t.as_str()).or_default().push(*p);
    }
    out
}
