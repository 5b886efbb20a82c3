//! The worker thread behind a [`PartitionHandle`](super::PartitionHandle): the run loop with its
//! group commit, the leader's HW and `acks=all` waiters, and the follower's truncation and
//! replicated appends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use silt_core::batch::{BatchHeader, BatchIter};
use silt_core::{LeaderEpoch, Offset};
use silt_storage::{Log, StorageError};
use tokio::sync::{mpsc, oneshot, watch};

mod producing;

use super::leader::LeaderState;
use super::producer_snapshot;
use super::producers::{Decision, Producers};
use super::truncation;
use super::{
    Appended, Command, CommittedRead, EpochEnd, PartitionError, PartitionState, ReplicaRead, Reply,
    RoleSpec, Truncated, WaitFor,
};
use crate::topic_config::{Durability, TopicConfig};
use producing::Parked;

/// Most commands handled between two syncs (bounds the latency of the first waiter).
const GROUP_COMMIT_MAX: usize = 256;
/// The high-watermark checkpoint, written lazily (on ticks) in the partition directory.
const HW_CHECKPOINT_FILE: &str = "high-watermark";

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

type Opened = Result<(watch::Receiver<PartitionState>, bool), StorageError>;

/// The thread body: opens the log, reports, then serves commands until closed.
pub(super) fn run(
    dir: PathBuf,
    config: TopicConfig,
    role: RoleSpec,
    rx: mpsc::Receiver<Command>,
    opened: oneshot::Sender<Opened>,
) {
    match Log::open(&dir, config.log_config(), now_ms()) {
        Ok(log) => {
            let damaged = log.damaged_on_open();
            let mut w = Worker::new(log, config);
            w.set_role(role);
            let (state_tx, state_rx) = watch::channel(w.state());
            if opened.send(Ok((state_rx, damaged))).is_ok() {
                w.run(rx, state_tx);
            }
        }
        Err(e) => {
            let _ = opened.send(Err(e));
        }
    }
}

enum Role {
    Leader(LeaderState),
    Follower { leader_epoch: LeaderEpoch },
}

/// An `acks=all` append waiting for the HW to pass `appended.last_offset`.
struct Waiter {
    appended: Appended,
    reply: Reply<Appended>,
}

/// The state owned by the worker thread.
struct Worker {
    log: Option<Log>,
    config: TopicConfig,
    role: Role,
    high_watermark: Offset,
    hw_checkpointed: Offset,
    /// In offset order (appends are).
    waiters: VecDeque<Waiter>,
    /// Waiters the HW has passed, answered at the end of the round, after the new offsets are
    /// published (so a client that got its ack and then asks for the latest offset sees it).
    released: Vec<(Reply<Appended>, Result<Appended, PartitionError>)>,
    /// Reads that found corrupt bytes (a batch failing its CRC or framing) since the open.
    corruptions: u64,
    /// Where a read found this leader's log damaged: it asks to give up leadership, and cuts its
    /// log here once it follows (then re-fetches the rest from the new leader).
    damaged_at: Option<Offset>,
    /// Idempotent producers' state; `None` until needed, and again after a truncation (it is
    /// rebuilt from the log before the next idempotent append as leader).
    producers: Option<Producers>,
    /// Produces whose idempotent batch came before its predecessor (gRPC handles a
    /// connection's requests concurrently, so pipelined requests can reach the worker out of
    /// order): appended once the predecessor is, refused after [`PARK_FOR`].
    parked: Vec<Parked>,
}

fn read_hw_checkpoint(dir: &Path) -> Option<Offset> {
    let s = std::fs::read_to_string(dir.join(HW_CHECKPOINT_FILE)).ok()?;
    s.trim().parse().ok().map(Offset)
}

/// Written whole to a temporary file, synced, renamed over the old one, and the directory
/// synced: a crash leaves the old or the new value, never an empty file.
fn write_hw_checkpoint(dir: &Path, hw: Offset) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{HW_CHECKPOINT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(hw.0.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, dir.join(HW_CHECKPOINT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

impl Worker {
    fn new(log: Log, config: TopicConfig) -> Worker {
        let end = log.log_end_offset();
        // Recovery may have cut a tail some snapshot describes; the log would grow past it.
        producer_snapshot::delete_above(log.dir(), Some(end));
        // A replica only knows what the HW checkpoint says (the leader advances it from its
        // followers; a sole replica once it leads).
        let hw = read_hw_checkpoint(log.dir())
            .unwrap_or(Offset::ZERO)
            .min(end)
            .max(log.log_start_offset());
        Worker {
            log: Some(log),
            config,
            role: Role::Follower { leader_epoch: LeaderEpoch(0) },
            high_watermark: hw,
            hw_checkpointed: hw,
            waiters: VecDeque::new(),
            released: Vec::new(),
            corruptions: 0,
            damaged_at: None,
            producers: None,
            parked: Vec::new(),
        }
    }

    /// Counts (and logs, naming segment and position) a read from `from` that found corrupt
    /// bytes, and marks the replica damaged where the damage begins: a follower cuts its log
    /// there at once (and re-fetches); a leader keeps serving what is good below it until the
    /// controller has moved leadership away (see [`repair`](Self::repair)).
    fn note_read<T>(
        &mut self,
        r: Result<T, StorageError>,
        from: Offset,
    ) -> Result<T, StorageError> {
        if let Err(e @ StorageError::Corrupt { .. }) = &r {
            self.corruptions += 1;
            tracing::error!(error = %e, "corrupt data found while serving a read; the batch is not served");
            if let Some(at) = self.log_ref().damage_point(from) {
                self.damaged_at = Some(self.damaged_at.map_or(at, |d| d.min(at)));
                if matches!(self.role, Role::Follower { .. }) {
                    self.repair();
                }
            }
        }
        r
    }

    /// Cuts a damaged log at the first bad batch; the fetcher then copies the rest again from
    /// the leader. Only a follower does this: a leader would throw away records only it may
    /// hold.
    fn repair(&mut self) {
        let Some(at) = self.damaged_at.take() else { return };
        let log = self.log();
        tracing::warn!(dir = %log.dir().display(), offset = at.0, "cutting the damaged log; the rest is copied again from the leader");
        self.forget_producers(Some(at));
        let cut = self.log().truncate_to(at);
        let log = self.log();
        match cut {
            Ok(end) => {
                let start = log.log_start_offset();
                self.high_watermark = self.high_watermark.min(end).max(start);
            }
            Err(e) => tracing::error!(error = %e, "cannot cut the damaged log"),
        }
    }

    fn log(&mut self) -> &mut Log {
        self.log.as_mut().expect("invariant: the log lives until Close")
    }

    fn log_ref(&self) -> &Log {
        self.log.as_ref().expect("invariant: the log lives until Close")
    }

    fn state(&self) -> PartitionState {
        let log = self.log_ref();
        PartitionState {
            log_start: log.log_start_offset(),
            high_watermark: self.high_watermark,
            log_end: log.log_end_offset(),
            size_bytes: log.size_bytes(),
            offline: log.offline().is_some(),
            corruptions: self.corruptions,
            damaged_at: self.damaged_at,
            last_stable: self
                .producers
                .as_ref()
                .map(|p| Offset(p.txns.last_stable_offset(self.high_watermark.0))),
            open_transactions: self.producers.as_ref().map_or(0, |p| p.txns.open_count()),
        }
    }

    fn current_epoch(&self) -> LeaderEpoch {
        match &self.role {
            Role::Leader(s) => s.view.leader_epoch,
            Role::Follower { leader_epoch } => *leader_epoch,
        }
    }

    fn set_role(&mut self, spec: RoleSpec) {
        let now = Instant::now();
        let current = self.current_epoch();
        match (spec, &mut self.role) {
            (RoleSpec::Leader(view), Role::Leader(s))
                if view.leader_epoch == s.view.leader_epoch =>
            {
                s.update_view(view, now);
            }
            (RoleSpec::Leader(view), _) if view.leader_epoch >= current => {
                let end = self.log_ref().log_end_offset();
                tracing::info!(dir = %self.log_ref().dir().display(), epoch = view.leader_epoch.0, isr = ?view.isr, log_end = end.0, "became leader");
                self.role = Role::Leader(LeaderState::new(view, end, now));
            }
            (RoleSpec::Follower { leader_epoch }, _) if leader_epoch >= current => {
                if matches!(self.role, Role::Leader(_)) {
                    tracing::info!(dir = %self.log_ref().dir().display(), epoch = leader_epoch.0, "became follower");
                }
                self.role = Role::Follower { leader_epoch };
                for w in self.waiters.drain(..) {
                    let _ = w.reply.send(Err(PartitionError::LeadershipLost));
                }
                self.refuse_parked(|| PartitionError::NotLeader);
                self.repair();
            }
            (spec, _) => {
                tracing::debug!(?spec, current = current.0, "stale role ignored");
            }
        }
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Command>, state: watch::Sender<PartitionState>) {
        while let Some(first) = rx.blocking_recv() {
            let mut appended = false;
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(cmd) = next.take() {
                handled += 1;
                match cmd {
                    Command::Append { batches, wait, reply, held } => {
                        let p = Parked { batches, wait, reply, held, since: Instant::now() };
                        if self.append_or_park(p) {
                            appended = true;
                            self.retry_parked();
                        }
                    }
                    Command::Close { delete, reply } => {
                        self.commit(appended, &state);
                        for w in self.waiters.drain(..) {
                            let _ = w.reply.send(Err(PartitionError::LeadershipLost));
                        }
                        self.refuse_parked(|| PartitionError::Closed);
                        let _ = reply.send(self.close(delete));
                        return;
                    }
                    other => self.handle(other, &state),
                }
                if handled < GROUP_COMMIT_MAX {
                    next = rx.try_recv().ok();
                }
            }
            self.expire_parked();
            self.commit(appended, &state);
        }
        // All handles dropped without Close (broker torn down): close cleanly anyway.
        let _ = self.close(false);
    }

    fn append(
        &mut self,
        batches: &mut [Vec<u8>],
        wait: WaitFor,
    ) -> Result<Appended, PartitionError> {
        let Role::Leader(s) = &self.role else { return Err(PartitionError::NotLeader) };
        let min = self.config.min_insync_replicas;
        if wait == WaitFor::Commit {
            let live = s.live_isr(Instant::now());
            if live < min as usize {
                return Err(PartitionError::NotEnoughReplicas { live, min });
            }
        }
        let epoch = s.view.leader_epoch;
        let now = now_ms();
        let plan = self.plan_producers(batches)?;
        let log = self.log.as_mut().expect("invariant: the log lives until Close");
        let segment = log.active_base_offset();
        let mut first = None;
        let mut last = Offset::ZERO;
        for (i, b) in batches.iter_mut().enumerate() {
            let (base, end) = match plan.as_ref().map(|p| p[i]) {
                Some(Decision::Duplicate { base_offset, last_offset }) => {
                    if let Some(h) = BatchHeader::parse(b) {
                        tracing::info!(
                            dir = %log.dir().display(),
                            producer_id = h.producer_id,
                            sequence = h.base_sequence,
                            base_offset = base_offset.0,
                            "a retried batch is in the log already: answered with its offsets, not appended again"
                        );
                    }
                    (base_offset, last_offset)
                }
                _ => {
                    let info = log.append(b, epoch, now)?;
                    if let (Some(p), Some(h)) = (self.producers.as_mut(), BatchHeader::parse(b)) {
                        p.record_batch(&h, b);
                    }
                    (info.base_offset, info.last_offset)
                }
            };
            first.get_or_insert(base);
            last = last.max(end);
        }
        if self.log_ref().active_base_offset() != segment {
            self.snapshot_producers();
        }
        let log = self.log_ref();
        let base_offset = first.unwrap_or(log.log_end_offset());
        Ok(Appended {
            base_offset,
            last_offset: last,
            log_start: log.log_start_offset(),
            synced: false,
        })
    }

    /// The end of a round: the group commit (one sync for everything appended in it, leaders of
    /// `fsync` topics), then the HW, the waiters and the published offsets.
    fn commit(&mut self, appended: bool, state: &watch::Sender<PartitionState>) {
        if appended
            && self.config.durability == Durability::Fsync
            && let Err(e) = self.log().sync()
        {
            tracing::error!(dir = %self.log_ref().dir().display(), error = %e, "sync failed; records stay uncommitted");
        }
        self.advance_hw();
        self.drop_abandoned_waiters();
        self.publish(state);
        for (reply, r) in self.released.drain(..) {
            let _ = reply.send(r);
        }
    }

    /// What this replica counts of its own log towards the HW: synced data for `fsync` topics.
    fn own_countable_end(&self) -> Offset {
        let log = self.log_ref();
        match self.config.durability {
            Durability::Fsync => log.synced_offset().min(log.log_end_offset()),
            Durability::Replicated => log.log_end_offset(),
        }
    }

    /// Leader: HW = the smallest position over the ISR (never moving back), then answers the
    /// `acks=all` waiters it passed — with an error if the ISR is below `min.insync.replicas`.
    fn advance_hw(&mut self) {
        let own = self.own_countable_end();
        let Role::Leader(s) = &self.role else { return };
        let candidate = s.isr_min(own);
        let isr = s.view.isr.len();
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
        }
        let min = self.config.min_insync_replicas;
        let synced = self.config.durability == Durability::Fsync;
        while self.waiters.front().is_some_and(|w| w.appended.last_offset < self.high_watermark) {
            let w = self.waiters.pop_front().expect("invariant: front exists");
            let r = if isr >= min as usize {
                Ok(Appended { synced, ..w.appended })
            } else {
                Err(PartitionError::NotEnoughReplicasAfterAppend { isr, min })
            };
            self.released.push((w.reply, r));
        }
    }

    /// Forgets waiters whose producer gave up (timed out), so a stalled HW cannot pile them up.
    fn drop_abandoned_waiters(&mut self) {
        if self.waiters.len() > 64 {
            self.waiters.retain(|w| !w.reply.is_closed());
        }
    }

    fn check_epoch(&self, asked: LeaderEpoch) -> Result<(), PartitionError> {
        let current = self.current_epoch();
        if asked < current {
            Err(PartitionError::FencedEpoch { asked: asked.0, current: current.0 })
        } else if asked > current {
            Err(PartitionError::UnknownEpoch { asked: asked.0, current: current.0 })
        } else {
            Ok(())
        }
    }

    /// Publishes the current offsets (if they changed).
    fn publish(&self, state: &watch::Sender<PartitionState>) {
        let now = self.state();
        state.send_if_modified(|s| std::mem::replace(s, now) != now);
    }

    fn handle(&mut self, cmd: Command, state: &watch::Sender<PartitionState>) {
        match cmd {
            Command::SetRole(spec) => {
                self.set_role(spec);
                self.advance_hw();
            }
            Command::Read { from, max_bytes, reply } => {
                let hw = self.high_watermark;
                let r = self.log().read_upto(from, max_bytes, hw);
                let _ = reply.send(self.note_read(r, from).map_err(Into::into));
            }
            Command::ReadCommitted { from, max_bytes, reply } => {
                let r = self.read_committed(from, max_bytes);
                let _ = reply.send(r);
                // Building the producers' state made the LSO known.
                self.publish(state);
            }
            Command::OffsetForTime { timestamp_ms, reply } => {
                let hw = self.high_watermark;
                let r = self
                    .log()
                    .offset_for_timestamp(timestamp_ms)
                    .map(|o| o.filter(|(off, _)| *off < hw))
                    .map_err(Into::into);
                let _ = reply.send(r);
            }
            Command::DeleteBefore { offset, reply } => {
                // Never past what every in-sync replica has.
                let upto = offset.min(self.high_watermark);
                let r = self.log().delete_segments_before(upto).map(|o| o.log_start);
                self.trim_transactions();
                self.publish(state);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::SetConfig { config, reply } => {
                let r = self.log().set_config(config.log_config());
                if r.is_ok() {
                    self.config = config;
                }
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::ReplicaFetch {
                replica,
                broker_epoch,
                leader_epoch,
                fetch_offset,
                max_bytes,
                reply,
            } => {
                let r = self.replica_fetch(
                    replica,
                    broker_epoch,
                    leader_epoch,
                    fetch_offset,
                    max_bytes,
                );
                let _ = reply.send(r);
            }
            Command::EpochEnd { current_leader_epoch, epoch, reply } => {
                let r = self.check_epoch(current_leader_epoch).and_then(|()| {
                    if !matches!(self.role, Role::Leader(_)) {
                        return Err(PartitionError::NotLeader);
                    }
                    let log = self.log_ref();
                    Ok(EpochEnd {
                        found: log.end_offset_for_epoch(epoch),
                        log_start: log.log_start_offset(),
                    })
                });
                let _ = reply.send(r);
            }
            Command::LatestEpoch { reply } => {
                let log = self.log_ref();
                let _ = reply.send(Ok((log.epochs().latest_epoch(), log.log_end_offset())));
            }
            Command::TruncateByEpoch { leader_epoch, leader, reply } => {
                let r =
                    self.follower_check(leader_epoch).and_then(|()| self.truncate_by_epoch(leader));
                // Offsets first, then the answer: the caller may read them at once.
                self.publish(state);
                let _ = reply.send(r);
            }
            Command::AppendReplicated { leader_epoch, data, leader_hw, reply } => {
                let r = self
                    .follower_check(leader_epoch)
                    .and_then(|()| self.append_replicated(data, leader_hw));
                self.publish(state);
                let _ = reply.send(r);
            }
            Command::IsrCheck { lag_max, reply } => {
                let hw = self.high_watermark;
                let r = match &mut self.role {
                    Role::Leader(s) => Ok(s.isr_change(hw, Instant::now(), lag_max)),
                    Role::Follower { .. } => Err(PartitionError::NotLeader),
                };
                let _ = reply.send(r);
            }
            Command::ReplicaProgress { reply } => {
                let r = match &self.role {
                    Role::Leader(s) => Ok(s
                        .follower_positions()
                        .into_iter()
                        .map(|(r, leo)| {
                            let from = leo.unwrap_or(Offset::ZERO);
                            (r, leo, self.log_ref().bytes_from(from))
                        })
                        .collect()),
                    Role::Follower { .. } => Err(PartitionError::NotLeader),
                };
                let _ = reply.send(r);
            }
            Command::IsrAnswered { change, answer } => {
                // A different leadership has its own state; the answer is not for it.
                if let Role::Leader(s) = &mut self.role
                    && s.view.leader_epoch == change.leader_epoch
                {
                    s.isr_answered(&change, answer);
                }
            }
            Command::Tick { retention, producer_expiry_ms } => {
                if self.config.durability == Durability::Replicated
                    && let Err(e) = self.log().sync()
                {
                    tracing::error!(error = %e, "background flush failed");
                }
                if retention && let Some(p) = &mut self.producers {
                    p.expire(now_ms(), producer_expiry_ms);
                }
                if retention && let Err(e) = self.log().apply_retention(now_ms()) {
                    tracing::warn!(error = %e, "retention pass failed");
                }
                self.trim_transactions();
                self.checkpoint_hw();
            }
            Command::CleanPlan { now_ms, reply } => {
                let _ = reply.send(self.clean_plan(now_ms));
            }
            Command::InstallCleaned { cleaned, reply } => {
                let r = self.log().install_cleaned(cleaned);
                self.publish(state);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Append { .. } | Command::Close { .. } => unreachable!("handled by run"),
        }
    }

    /// The cleanable part's dirty ratio and, if due, a cleaning plan bounded by the high
    /// watermark and the last stable offset (open transactions are never cleaned), with the
    /// aborted transactions whose records it may drop.
    #[allow(clippy::type_complexity)]
    fn clean_plan(
        &mut self,
        now_ms: i64,
    ) -> Result<
        (f64, Option<(silt_storage::CleanPlan, Vec<silt_core::stable::AbortedTxn>)>),
        PartitionError,
    > {
        if !self.log_ref().config().cleanup_compact {
            return Ok((0.0, None));
        }
        let hw = self.high_watermark;
        let upper = Offset(self.ensure_producers()?.txns.last_stable_offset(hw.0));
        let log = self.log_ref();
        let ratio = log.dirty_ratio(upper, now_ms);
        let Some(plan) = log.clean_plan(upper, now_ms) else { return Ok((ratio, None)) };
        let txns = &self.producers.as_ref().expect("invariant: built above").txns;
        let aborted = txns.aborted_in(log.log_start_offset().0, upper.0);
        Ok((ratio, Some((plan, aborted))))
    }

    fn checkpoint_hw(&mut self) {
        if self.high_watermark != self.hw_checkpointed {
            let hw = self.high_watermark;
            match write_hw_checkpoint(self.log_ref().dir(), hw) {
                Ok(()) => self.hw_checkpointed = hw,
                Err(e) => tracing::warn!(error = %e, "cannot write the high-watermark checkpoint"),
            }
        }
    }

    fn replica_fetch(
        &mut self,
        replica: u64,
        broker_epoch: u64,
        leader_epoch: LeaderEpoch,
        fetch_offset: Offset,
        max_bytes: usize,
    ) -> Result<ReplicaRead, PartitionError> {
        self.check_epoch(leader_epoch)?;
        let (start, end) = {
            let log = self.log_ref();
            (log.log_start_offset(), log.log_end_offset())
        };
        let Role::Leader(s) = &mut self.role else { return Err(PartitionError::NotLeader) };
        if !s.is_follower(replica) {
            return Err(PartitionError::NotLeader);
        }
        if fetch_offset < start || fetch_offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start: start,
                log_end: end,
            }
            .into());
        }
        s.on_registration(replica, broker_epoch);
        s.on_fetch(replica, fetch_offset, end, Instant::now());
        self.advance_hw();
        let read = self.log_ref().read(fetch_offset, max_bytes);
        let data = self.note_read(read, fetch_offset)?.data;
        Ok(ReplicaRead {
            data,
            high_watermark: self.high_watermark,
            log_start: start,
            log_end: end,
        })
    }

    fn follower_check(&self, leader_epoch: LeaderEpoch) -> Result<(), PartitionError> {
        match self.role {
            Role::Follower { leader_epoch: e } if e == leader_epoch => Ok(()),
            _ => Err(PartitionError::NotFollower(leader_epoch.0)),
        }
    }

    /// Kafka's KIP-101/279 rule: keep what the leader has of our latest epoch, never more; one
    /// round of the loop (see [`truncation`](super::truncation)).
    fn truncate_by_epoch(&mut self, leader: EpochEnd) -> Result<Truncated, PartitionError> {
        let log = self.log();
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let cut = truncation::cut(log.epochs().entries(), start, end, &leader);
        let kept = cut.to.min(end);
        let fully =
            (cut.to < end && (cut.to < start || leader.found.is_none())) || kept < leader.log_start;
        if cut.to < end || fully {
            self.forget_producers(if fully { None } else { Some(kept) });
        }
        let log = self.log();
        if cut.to < end {
            tracing::info!(dir = %log.dir().display(), from = end.0, to = cut.to.0, converged = cut.converged, "truncating the divergent suffix");
            if cut.to < start || leader.found.is_none() {
                log.truncate_fully_and_start_at(cut.to.max(leader.log_start))?;
            } else {
                log.truncate_to(cut.to)?;
            }
        }
        let log = self.log();
        if log.log_end_offset() < leader.log_start {
            // The leader no longer has our position (retention): restart where it starts.
            tracing::warn!(dir = %log.dir().display(), offset = leader.log_start.0, "the leader's log starts past this replica's end; restarting the log there");
            log.truncate_fully_and_start_at(leader.log_start)?;
        }
        let (new_end, start) = (log.log_end_offset(), log.log_start_offset());
        self.high_watermark = self.high_watermark.min(new_end).max(start);
        Ok(Truncated { log_end: new_end, converged: cut.converged })
    }

    fn append_replicated(
        &mut self,
        data: Bytes,
        leader_hw: Offset,
    ) -> Result<Offset, PartitionError> {
        let now = now_ms();
        let fsync = self.config.durability == Durability::Fsync;
        let log = self.log.as_mut().expect("invariant: the log lives until Close");
        let segment = log.active_base_offset();
        let mut wrote = false;
        for b in BatchIter::new(data) {
            let b = b.map_err(StorageError::InvalidBatch)?;
            let end = log.log_end_offset();
            if silt_core::batch::BatchHeader::parse(&b).is_some_and(|h| h.last_offset() < end) {
                continue; // already have it (a repeated read)
            }
            log.append_replicated(&b, now)?;
            if let (Some(p), Some(h)) = (self.producers.as_mut(), BatchHeader::parse(&b)) {
                p.record_batch(&h, &b);
            }
            wrote = true;
        }
        if wrote && fsync {
            // Synced before the next fetch reports this position: the leader counts it as on disk.
            log.sync()?;
        }
        if log.active_base_offset() != segment {
            self.snapshot_producers();
        }
        let log = self.log_ref();
        let end = log.log_end_offset();
        let hw = leader_hw.min(end);
        if hw > self.high_watermark {
            self.high_watermark = hw;
        }
        Ok(end)
    }

    fn close(&mut self, delete: bool) -> Result<(), PartitionError> {
        self.checkpoint_hw();
        let log = self.log.take().expect("invariant: closed once");
        Ok(if delete { log.delete() } else { log.close() }?)
    }
}
