//! The partition worker: one thread per partition owns its `Log` and serves commands from a
//! channel, in order. As leader it appends produce batches (group-committed: one sync covers every
//! append of a round), serves its followers' `ReplicaFetch` reads, tracks their positions and
//! advances the high watermark to the smallest position over the ISR; `acks=all` waiters are
//! answered when the HW passes their last offset. As follower it truncates by leader epoch and
//! appends what its fetcher copied (synced first for `fsync` topics). The offsets are published on
//! a `watch` channel so long polls wake when they move. A broker alone leads with an ISR of
//! itself.

mod leader;
pub(crate) mod long_poll;
mod producer_snapshot;
pub mod producers;
mod truncation;
mod worker;

use std::path::PathBuf;

use bytes::Bytes;
use silt_core::{LeaderEpoch, Offset};
use silt_storage::{ReadResult, StorageError};
use tokio::sync::{mpsc, oneshot, watch};

pub use leader::{IsrAnswer, IsrChange, LeaderView};

use crate::topic_config::TopicConfig;

/// Commands queued per partition before senders wait.
const QUEUE_DEPTH: usize = 1024;

/// The log cleaner's view of a partition: the dirty ratio of its cleanable part, and a plan with
/// the aborted transactions it covers when a cleaning is due.
pub type CleanOutlook =
    (f64, Option<(silt_storage::CleanPlan, Vec<silt_core::stable::AbortedTxn>)>);

/// Offsets a partition publishes after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    pub log_start: Offset,
    pub high_watermark: Offset,
    pub log_end: Offset,
    /// Bytes of the log's segments.
    pub size_bytes: u64,
    /// A sync of the log failed: it takes no writes until the broker restarts (the replica is
    /// reported damaged, leaves the ISR and stops fetching).
    pub offline: bool,
    /// Reads of this replica that found corrupt bytes since it was opened.
    pub corruptions: u64,
    /// A read found this leader's log damaged from this offset on: it is reported damaged (so
    /// leadership moves to another in-sync replica) and cut here once it follows.
    pub damaged_at: Option<Offset>,
    /// The last stable offset (below it every transaction is decided), once the producers'
    /// state is built here (`None`: not known yet; a `read_committed` read builds it).
    pub last_stable: Option<Offset>,
    /// Transactions open in this partition (0 while not known).
    pub open_transactions: usize,
}

/// A `read_committed` read: whole batches below the last stable offset, with the aborted
/// transactions that have records in the range read.
#[derive(Debug, Clone)]
pub struct CommittedRead {
    pub read: ReadResult,
    pub last_stable: Offset,
    pub aborted: Vec<silt_core::stable::AbortedTxn>,
}

/// When an append is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// After the leader's append (acks=0/1).
    Append,
    /// After the high watermark passed the records (acks=all).
    Commit,
}

/// What an append reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_start: Offset,
    /// The records are committed on every in-sync replica's disk (`fsync` topics).
    pub synced: bool,
}

/// The role the cluster image gives this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSpec {
    Leader(LeaderView),
    /// Follows the leader of `leader_epoch` (or waits, when the partition has no leader).
    Follower {
        leader_epoch: LeaderEpoch,
    },
}

/// Records a leader serves to one follower, with the offsets it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRead {
    pub data: Bytes,
    pub high_watermark: Offset,
    pub log_start: Offset,
    pub log_end: Offset,
}

/// The leader's answer to `OffsetForLeaderEpoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch <= the asked one, and where it ended (None: no such epoch here).
    pub found: Option<(LeaderEpoch, Offset)>,
    pub log_start: Offset,
}

/// What one truncation round left (KIP-279).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// The new log end, where fetching starts once `converged`.
    pub log_end: Offset,
    /// The follower's latest epoch now is the one the leader answered (or nothing is left to
    /// compare): the logs agree up to `log_end`. False: the follower never had the leader's
    /// epoch, so it must ask `OffsetForLeaderEpoch` again with its new (strictly lower) latest
    /// epoch before it fetches.
    pub converged: bool,
}

type Reply<T> = oneshot::Sender<Result<T, PartitionError>>;

enum Command {
    SetRole(RoleSpec),
    Append {
        batches: Vec<Vec<u8>>,
        wait: WaitFor,
        reply: Reply<Appended>,
        /// The request's share of the produce budget, given back once the data is appended.
        held: Option<crate::service::produce_budget::Held>,
    },
    Read {
        from: Offset,
        max_bytes: usize,
        reply: Reply<ReadResult>,
    },
    ReadCommitted {
        from: Offset,
        max_bytes: usize,
        reply: Reply<CommittedRead>,
    },
    OffsetForTime {
        timestamp_ms: i64,
        reply: Reply<Option<(Offset, i64)>>,
    },
    SetConfig {
        config: TopicConfig,
        reply: Reply<()>,
    },
    /// Deletes whole segments below the offset (capped at the HW); answers the new log start.
    DeleteBefore {
        offset: Offset,
        reply: Reply<Offset>,
    },
    /// Leader: a follower's fetch (records its position, reads from it).
    ReplicaFetch {
        replica: u64,
        /// The follower's registration (0: not said).
        broker_epoch: u64,
        leader_epoch: LeaderEpoch,
        fetch_offset: Offset,
        max_bytes: usize,
        reply: Reply<ReplicaRead>,
    },
    /// Leader: `OffsetForLeaderEpoch`.
    EpochEnd {
        current_leader_epoch: LeaderEpoch,
        epoch: LeaderEpoch,
        reply: Reply<EpochEnd>,
    },
    /// Follower: the latest epoch in the log (None: empty log) and the log end.
    LatestEpoch {
        reply: Reply<(Option<LeaderEpoch>, Offset)>,
    },
    /// Follower: drop the suffix that diverges from the leader's log; answers the new log end
    /// and whether the epochs now agree there (see [`Truncated`]).
    TruncateByEpoch {
        leader_epoch: LeaderEpoch,
        leader: EpochEnd,
        reply: Reply<Truncated>,
    },
    /// Follower: append copied batches; answers the new (synced, for fsync topics) log end.
    AppendReplicated {
        leader_epoch: LeaderEpoch,
        data: Bytes,
        leader_hw: Offset,
        reply: Reply<Offset>,
    },
    /// Leader: the ISR change to propose now, if any.
    IsrCheck {
        lag_max: std::time::Duration,
        reply: Reply<Option<IsrChange>>,
    },
    /// Leader: each follower's last seen log end and the bytes of the log from there to the
    /// end (all of it when not seen yet).
    ReplicaProgress {
        reply: Reply<Vec<(u64, Option<Offset>, u64)>>,
    },
    /// Leader: the controller did not accept a change `IsrCheck` gave.
    IsrAnswered {
        change: IsrChange,
        answer: IsrAnswer,
    },
    /// The log cleaner: the dirty ratio of the cleanable part, and a plan (with the aborted
    /// transactions it covers) if the log is compacted and due.
    CleanPlan {
        now_ms: i64,
        reply: Reply<CleanOutlook>,
    },
    /// The log cleaner: swap cleaned segments in; answers the bytes freed.
    InstallCleaned {
        cleaned: silt_storage::Cleaned,
        reply: Reply<u64>,
    },
    /// Retention (and the expiry of producers silent longer than `producer_expiry_ms`), the
    /// background flush of `replicated` topics, the HW checkpoint.
    Tick {
        retention: bool,
        producer_expiry_ms: i64,
    },
    Close {
        delete: bool,
        reply: Reply<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::SetRole(_) => "SetRole",
            Command::Append { .. } => "Append",
            Command::Read { .. } => "Read",
            Command::ReadCommitted { .. } => "ReadCommitted",
            Command::OffsetForTime { .. } => "OffsetForTime",
            Command::SetConfig { .. } => "SetConfig",
            Command::DeleteBefore { .. } => "DeleteBefore",
            Command::ReplicaFetch { .. } => "ReplicaFetch",
            Command::EpochEnd { .. } => "EpochEnd",
            Command::LatestEpoch { .. } => "LatestEpoch",
            Command::TruncateByEpoch { .. } => "TruncateByEpoch",
            Command::AppendReplicated { .. } => "AppendReplicated",
            Command::IsrCheck { .. } => "IsrCheck",
            Command::IsrAnswered { .. } => "IsrAnswered",
            Command::ReplicaProgress { .. } => "ReplicaProgress",
            Command::Tick { .. } => "Tick",
            Command::CleanPlan { .. } => "CleanPlan",
            Command::InstallCleaned { .. } => "InstallCleaned",
            Command::Close { .. } => "Close",
        })
    }
}

/// Why a command could not be served.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The worker has stopped (topic deleted, broker shutting down).
    #[error("partition is closed")]
    Closed,
    /// This replica does not lead the partition (nothing was appended).
    #[error("this replica is not the partition leader")]
    NotLeader,
    /// This replica is not a follower of the asking leader epoch.
    #[error("this replica does not follow leader epoch {0}")]
    NotFollower(u32),
    /// The asker's leader epoch is older than this replica's.
    #[error("leader epoch {asked} is fenced; the current one is {current}")]
    FencedEpoch { asked: u32, current: u32 },
    /// The asker's leader epoch is newer than this replica knows.
    #[error("leader epoch {asked} is not known here yet (current {current})")]
    UnknownEpoch { asked: u32, current: u32 },
    /// The ISR fell below `min.insync.replicas` after the records were appended.
    #[error(
        "the ISR shrank to {isr} below min.insync.replicas = {min} after the append; outcome unknown"
    )]
    NotEnoughReplicasAfterAppend { isr: usize, min: u32 },
    /// Fewer in-sync replicas are caught up than `min.insync.replicas` (nothing was appended).
    #[error(
        "only {live} in-sync replica(s) caught up, min.insync.replicas is {min}; nothing was appended"
    )]
    NotEnoughReplicas { live: usize, min: u32 },
    /// An idempotent producer's batch out of sequence, from a fenced epoch, or from a producer
    /// with no state here (nothing of the request was appended).
    #[error(transparent)]
    Sequence(#[from] producers::SequenceError),
    /// Leadership moved before the records were committed.
    #[error("leadership moved before the records were committed; outcome unknown")]
    LeadershipLost,
}

/// A cheap, cloneable handle to a partition worker.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    tx: mpsc::Sender<Command>,
    state: watch::Receiver<PartitionState>,
}

impl PartitionHandle {
    /// Opens (recovering if needed) the log in `dir` on a new worker thread, in `role`.
    /// `replicated`: the partition belongs to a cluster, so its high watermark starts from the
    /// checkpoint instead of the log end.
    pub async fn open(
        name: String,
        dir: PathBuf,
        config: TopicConfig,
        role: RoleSpec,
    ) -> Result<(PartitionHandle, bool), StorageError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (opened_tx, opened_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("part-{name}"))
            .spawn(move || worker::run(dir, config, role, rx, opened_tx))
            .map_err(|e| StorageError::io("worker thread", e))?;
        let (state, damaged) = opened_rx.await.map_err(|_| {
            StorageError::io("worker thread", std::io::Error::other("worker died"))
        })??;
        Ok((PartitionHandle { tx, state }, damaged))
    }

    /// The latest published offsets.
    pub fn state(&self) -> PartitionState {
        *self.state.borrow()
    }

    /// A receiver that sees every change of the offsets (for long polls).
    pub fn watch(&self) -> watch::Receiver<PartitionState> {
        self.state.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, PartitionError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| PartitionError::Closed)?;
        rx.await.map_err(|_| PartitionError::Closed)?
    }

    /// Appends already-validated batches as leader; answers per `wait`.
    pub async fn append(
        &self,
        batches: Vec<Vec<u8>>,
        wait: WaitFor,
    ) -> Result<Appended, PartitionError> {
        self.append_held(batches, wait, None).await
    }

    /// [`append`](Self::append), giving `held` (produce budget) back once the data is appended.
    pub async fn append_held(
        &self,
        batches: Vec<Vec<u8>>,
        wait: WaitFor,
        held: Option<crate::service::produce_budget::Held>,
    ) -> Result<Appended, PartitionError> {
        self.call(|reply| Command::Append { batches, wait, reply, held }).await
    }

    /// Queues an append and returns at once with the receiver of its answer, so a caller can
    /// fix the order of its appends under a lock and wait for them outside it.
    pub async fn append_queued(
        &self,
        batches: Vec<Vec<u8>>,
        wait: WaitFor,
    ) -> Result<oneshot::Receiver<Result<Appended, PartitionError>>, PartitionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append { batches, wait, reply, held: None })
            .await
            .map_err(|_| PartitionError::Closed)?;
        Ok(rx)
    }

    /// Queues an append without waiting for its answer (acks=0): waits only for room in the
    /// partition's queue (backpressure, never a silent drop); `held` is given back once the
    /// data is appended.
    pub async fn append_unanswered(
        &self,
        batches: Vec<Vec<u8>>,
        held: Option<crate::service::produce_budget::Held>,
    ) -> Result<(), PartitionError> {
        let (reply, _) = oneshot::channel();
        let cmd = Command::Append { batches, wait: WaitFor::Append, reply, held };
        self.tx.send(cmd).await.map_err(|_| PartitionError::Closed)
    }

    /// Reads committed batches (below the HW) from `from`.
    pub async fn read(&self, from: Offset, max_bytes: usize) -> Result<ReadResult, PartitionError> {
        self.call(|reply| Command::Read { from, max_bytes, reply }).await
    }

    /// Reads decided batches (below the last stable offset) from `from`, with the aborted
    /// transactions among them (`read_committed`).
    pub async fn read_committed(
        &self,
        from: Offset,
        max_bytes: usize,
    ) -> Result<CommittedRead, PartitionError> {
        self.call(|reply| Command::ReadCommitted { from, max_bytes, reply }).await
    }

    /// Leader: appends a transaction marker (a control batch the coordinator decided) and
    /// answers once it is committed.
    pub async fn write_marker(
        &self,
        marker: silt_core::batch::Marker,
    ) -> Result<Appended, PartitionError> {
        let batch = marker.encode(worker::now_ms());
        self.append(vec![batch], WaitFor::Commit).await
    }

    /// The first committed record at or after `timestamp_ms`.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, PartitionError> {
        self.call(|reply| Command::OffsetForTime { timestamp_ms, reply }).await
    }

    /// Deletes the segments wholly below `offset` (at most the HW); returns the new log start.
    pub async fn delete_before(&self, offset: Offset) -> Result<Offset, PartitionError> {
        self.call(|reply| Command::DeleteBefore { offset, reply }).await
    }

    /// The log cleaner's view: the dirty ratio, and what to clean now if anything (see
    /// `Command::CleanPlan`).
    pub async fn clean_plan(
        &self,
        now_ms: i64,
    ) -> Result<
        (f64, Option<(silt_storage::CleanPlan, Vec<silt_core::stable::AbortedTxn>)>),
        PartitionError,
    > {
        self.call(|reply| Command::CleanPlan { now_ms, reply }).await
    }

    /// Swaps cleaned segments in; the bytes freed.
    pub async fn install_cleaned(
        &self,
        cleaned: silt_storage::Cleaned,
    ) -> Result<u64, PartitionError> {
        self.call(|reply| Command::InstallCleaned { cleaned, reply }).await
    }

    /// Applies a changed topic configuration.
    pub async fn set_config(&self, config: TopicConfig) -> Result<(), PartitionError> {
        self.call(|reply| Command::SetConfig { config, reply }).await
    }

    /// Sets this replica's role (from the cluster image); waits until the worker has it.
    pub async fn set_role(&self, role: RoleSpec) -> Result<(), PartitionError> {
        self.tx.send(Command::SetRole(role)).await.map_err(|_| PartitionError::Closed)
    }

    /// Leader: serves a follower's fetch.
    pub async fn replica_fetch(
        &self,
        replica: u64,
        broker_epoch: u64,
        leader_epoch: LeaderEpoch,
        fetch_offset: Offset,
        max_bytes: usize,
    ) -> Result<ReplicaRead, PartitionError> {
        self.call(|reply| Command::ReplicaFetch {
            replica,
            broker_epoch,
            leader_epoch,
            fetch_offset,
            max_bytes,
            reply,
        })
        .await
    }

    /// Leader: `OffsetForLeaderEpoch`.
    pub async fn epoch_end(
        &self,
        current_leader_epoch: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> Result<EpochEnd, PartitionError> {
        self.call(|reply| Command::EpochEnd { current_leader_epoch, epoch, reply }).await
    }

    /// Follower: the latest epoch in the log and the log end.
    pub async fn latest_epoch(&self) -> Result<(Option<LeaderEpoch>, Offset), PartitionError> {
        self.call(|reply| Command::LatestEpoch { reply }).await
    }

    /// Follower: truncates the suffix that diverges from the leader's answer (one round of the
    /// KIP-279 loop; repeat while not `converged`).
    pub async fn truncate_by_epoch(
        &self,
        leader_epoch: LeaderEpoch,
        leader: EpochEnd,
    ) -> Result<Truncated, PartitionError> {
        self.call(|reply| Command::TruncateByEpoch { leader_epoch, leader, reply }).await
    }

    /// Follower: appends copied batches and learns the leader's HW.
    pub async fn append_replicated(
        &self,
        leader_epoch: LeaderEpoch,
        data: Bytes,
        leader_hw: Offset,
    ) -> Result<Offset, PartitionError> {
        self.call(|reply| Command::AppendReplicated { leader_epoch, data, leader_hw, reply }).await
    }

    /// Leader: the ISR change due now, if any.
    pub async fn isr_check(
        &self,
        lag_max: std::time::Duration,
    ) -> Result<Option<IsrChange>, PartitionError> {
        self.call(|reply| Command::IsrCheck { lag_max, reply }).await
    }

    /// Leader: each follower's last seen log end, and the bytes it is behind.
    pub async fn replica_progress(
        &self,
    ) -> Result<Vec<(u64, Option<Offset>, u64)>, PartitionError> {
        self.call(|reply| Command::ReplicaProgress { reply }).await
    }

    /// Leader: tells the worker how the controller answered a change `isr_check` gave, when it
    /// did not accept it; until then the change's new members count for the HW. Does not wait.
    pub async fn isr_answered(
        &self,
        change: IsrChange,
        answer: IsrAnswer,
    ) -> Result<(), PartitionError> {
        self.tx
            .send(Command::IsrAnswered { change, answer })
            .await
            .map_err(|_| PartitionError::Closed)
    }

    /// Asks for a flush and, with `retention`, a retention pass and the expiry of producers
    /// silent longer than `producer_expiry_ms`; does not wait.
    pub fn tick(&self, retention: bool, producer_expiry_ms: i64) {
        let _ = self.tx.try_send(Command::Tick { retention, producer_expiry_ms });
    }

    /// Closes the log cleanly (`delete`: and removes its directory); the worker then exits.
    pub async fn close(&self, delete: bool) -> Result<(), PartitionError> {
        self.call(|reply| Command::Close { delete, reply }).await
    }
}

#[cfg(test)]
mod tests;
