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
    /// Leader: the controller did not accept a change `IsrCheck` gave.
    IsrAnswered {
        change: IsrChange,
        answer: IsrAnswer,
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
            Command::Tick { .. } => "Tick",
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
mod tests {
    use silt_core::batch::{BatchBuilder, Record};

    /// Longer than the worker's `PARK_FOR`.
    const PARK_FOR_TEST: std::time::Duration = std::time::Duration::from_millis(600);

    use super::*;

    fn batch(v: &str) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(&Record::value(v.to_string(), 0));
        b.build_vec().expect("one record")
    }

    fn leader(epoch: u32) -> RoleSpec {
        RoleSpec::Leader(LeaderView {
            me: 1,
            leader_epoch: LeaderEpoch(epoch),
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            lag_max: std::time::Duration::from_secs(10),
        })
    }

    /// A log with epoch 0 at offsets 0..10 and epoch 1 at 10..15, now following epoch 2.
    async fn follower_with_two_epochs(dir: &std::path::Path) -> PartitionHandle {
        let (h, _) =
            PartitionHandle::open("t-0".into(), dir.to_owned(), TopicConfig::default(), leader(0))
                .await
                .expect("opens");
        for i in 0..10 {
            h.append(vec![batch(&format!("a{i}"))], WaitFor::Append).await.expect("appends");
        }
        h.set_role(leader(1)).await.expect("role");
        for i in 0..5 {
            h.append(vec![batch(&format!("b{i}"))], WaitFor::Append).await.expect("appends");
        }
        h.set_role(RoleSpec::Follower { leader_epoch: LeaderEpoch(2) }).await.expect("role");
        h
    }

    #[tokio::test]
    async fn a_follower_keeps_what_the_leader_has_of_its_latest_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let h = follower_with_two_epochs(tmp.path()).await;
        assert_eq!(h.latest_epoch().await.unwrap(), (Some(LeaderEpoch(1)), Offset(15)));
        let leader_answer =
            EpochEnd { found: Some((LeaderEpoch(1), Offset(12))), log_start: Offset(0) };
        assert_eq!(
            h.truncate_by_epoch(LeaderEpoch(2), leader_answer).await.unwrap().log_end,
            Offset(12)
        );
        // A leader epoch other than the one followed is refused, and nothing changes.
        assert!(matches!(
            h.truncate_by_epoch(LeaderEpoch(3), leader_answer).await,
            Err(PartitionError::NotFollower(3))
        ));
        assert_eq!(h.state().log_end, Offset(12), "{:?} {:?}", h.state(), h.latest_epoch().await);
    }

    #[tokio::test]
    async fn a_follower_drops_an_epoch_the_leader_never_saw() {
        let tmp = tempfile::tempdir().unwrap();
        let h = follower_with_two_epochs(tmp.path()).await;
        // The leader's latest epoch <= 1 is 0, ending at 10: all of epoch 1 here diverges.
        let answer = EpochEnd { found: Some((LeaderEpoch(0), Offset(10))), log_start: Offset(0) };
        assert_eq!(h.truncate_by_epoch(LeaderEpoch(2), answer).await.unwrap().log_end, Offset(10));
        assert_eq!(h.latest_epoch().await.unwrap(), (Some(LeaderEpoch(0)), Offset(10)));
    }

    #[tokio::test]
    async fn a_follower_restarts_at_the_leaders_log_start_when_nothing_is_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let h = follower_with_two_epochs(tmp.path()).await;
        let answer = EpochEnd { found: None, log_start: Offset(40) };
        assert_eq!(h.truncate_by_epoch(LeaderEpoch(2), answer).await.unwrap().log_end, Offset(40));
        assert_eq!(h.state().log_start, Offset(40));
    }

    /// Issue 15: the leader writes a producer snapshot at each segment roll (keeping the newest
    /// few); a truncation drops those above the cut; after a reopen the state is rebuilt from
    /// the snapshot and the log after it, and a retry is still recognised.
    #[tokio::test]
    async fn producer_snapshots_follow_rolls_and_truncations() {
        let tmp = tempfile::tempdir().unwrap();
        let config =
            TopicConfig { segment_bytes: 1024, max_message_bytes: 1024, ..TopicConfig::default() };
        let open =
            |role| PartitionHandle::open("t-0".into(), tmp.path().to_owned(), config.clone(), role);
        let (h, _) = open(leader(0)).await.expect("opens");
        let idempotent = |seq: i32| {
            let mut b = BatchBuilder::new();
            b.push(&Record::value(vec![b'x'; 300], 0));
            let mut data = b.build_vec().expect("one record");
            assert!(silt_core::batch::stamp_producer(&mut data, 42, 0, seq));
            data
        };
        for seq in 0..12 {
            h.append(vec![idempotent(seq)], WaitFor::Append).await.expect("appends");
        }
        let snapshots = producer_snapshot::list(tmp.path());
        assert!(!snapshots.is_empty() && snapshots.len() <= producer_snapshot::KEEP);
        let newest = snapshots.last().unwrap().0;
        h.set_role(RoleSpec::Follower { leader_epoch: LeaderEpoch(1) }).await.expect("role");
        let cut = Offset(newest.0 - 1);
        let answer = EpochEnd { found: Some((LeaderEpoch(0), cut)), log_start: Offset(0) };
        assert_eq!(h.truncate_by_epoch(LeaderEpoch(1), answer).await.unwrap().log_end, cut);
        assert!(producer_snapshot::list(tmp.path()).iter().all(|(o, _)| *o <= cut));
        h.close(false).await.expect("closes");
        let (h, _) = open(leader(2)).await.expect("reopens");
        let last = (cut.0 - 1) as i32;
        let retry = h.append(vec![idempotent(last)], WaitFor::Append).await.expect("answered");
        assert_eq!(retry.base_offset, Offset(cut.0 - 1), "the retry is answered from the log");
        assert_eq!(h.state().log_end, cut, "nothing appended");
    }

    /// gRPC handles pipelined produce requests concurrently, so a producer's batch can reach
    /// the partition before its predecessor: it waits for it (and is appended after it, in
    /// sequence order) instead of being refused; one whose predecessor never comes is refused
    /// with `OUT_OF_ORDER_SEQUENCE_NUMBER` after a while, nothing appended.
    #[tokio::test]
    async fn a_batch_that_overtook_its_predecessor_waits_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (h, _) = PartitionHandle::open(
            "t-0".into(),
            tmp.path().to_owned(),
            TopicConfig::default(),
            leader(0),
        )
        .await
        .expect("opens");
        let idempotent = |seq: i32| {
            let mut data = batch(&format!("s{seq}"));
            assert!(silt_core::batch::stamp_producer(&mut data, 9, 0, seq));
            data
        };
        let second = tokio::spawn({
            let h = h.clone();
            async move { h.append(vec![idempotent(1)], WaitFor::Append).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the overtaking batch waits");
        let first = h.append(vec![idempotent(0)], WaitFor::Append).await.expect("appended");
        let second = second.await.unwrap().expect("appended after its predecessor");
        assert_eq!((first.base_offset, second.base_offset), (Offset(0), Offset(1)));

        let gap = tokio::spawn({
            let h = h.clone();
            async move { h.append(vec![idempotent(5)], WaitFor::Append).await }
        });
        tokio::time::sleep(PARK_FOR_TEST).await;
        h.tick(false, i64::MAX);
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), gap).await;
        assert!(matches!(
            refused.expect("answered").unwrap(),
            Err(PartitionError::Sequence(producers::SequenceError::OutOfOrder { .. }))
        ));
        assert_eq!(h.state().log_end, Offset(2), "nothing appended");
    }

    /// A replica whose log holds `runs`: each `(epoch, end)` writes records as leader of
    /// `epoch` up to offset `end`. It is left leading `now`.
    async fn log_with_epochs(
        dir: &std::path::Path,
        runs: &[(u32, u64)],
        now: u32,
    ) -> PartitionHandle {
        let (h, _) =
            PartitionHandle::open("t-0".into(), dir.to_owned(), TopicConfig::default(), leader(0))
                .await
                .expect("opens");
        let mut at = 0;
        for &(epoch, end) in runs {
            h.set_role(leader(epoch)).await.expect("role");
            for i in at..end {
                h.append(vec![batch(&format!("e{epoch}-{i}"))], WaitFor::Append)
                    .await
                    .expect("appends");
            }
            at = end;
        }
        h.set_role(leader(now)).await.expect("role");
        h
    }

    /// The follower's side of KIP-279 as its fetcher runs it: ask the leader where the latest
    /// epoch here ended, truncate, and ask again until the epochs agree (at most 10 rounds).
    /// Answers the log end after each round.
    async fn converge(
        follower: &PartitionHandle,
        leader: &PartitionHandle,
        epoch: u32,
    ) -> Vec<u64> {
        let epoch = LeaderEpoch(epoch);
        let mut ends = Vec::new();
        for _ in 0..10 {
            let (Some(latest), _) = follower.latest_epoch().await.expect("latest epoch") else {
                break;
            };
            let answer = leader.epoch_end(epoch, latest).await.expect("leader answers");
            let t = follower.truncate_by_epoch(epoch, answer).await.expect("truncates");
            ends.push(t.log_end.0);
            if t.converged {
                break;
            }
        }
        ends
    }

    /// Opens a follower and a leader of epoch 5 from their epoch histories, runs the KIP-279
    /// loop, and answers the log end after each round and the follower's final latest epoch.
    async fn diverged(
        follower: &[(u32, u64)],
        leader: &[(u32, u64)],
    ) -> (Vec<u64>, (Option<u32>, u64)) {
        let (fd, ld) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = log_with_epochs(fd.path(), follower, follower.last().unwrap().0).await;
        f.set_role(RoleSpec::Follower { leader_epoch: LeaderEpoch(5) }).await.unwrap();
        let l = log_with_epochs(ld.path(), leader, 5).await;
        let ends = converge(&f, &l, 5).await;
        let (latest, end) = f.latest_epoch().await.unwrap();
        assert_eq!(f.state().log_end, end);
        (ends, (latest.map(|e| e.0), end.0))
    }

    #[tokio::test]
    async fn a_follower_lacking_the_leaders_epoch_asks_again_until_the_epochs_agree() {
        // KIP-279's case: the leader has epoch 1, which the follower never had. Asked for 2, the
        // leader answers (1, 20); the follower's epoch 0 runs to 10, but the leader's epoch 0
        // ended at 8, so offsets 8..10 diverge too and only a second round (asking 0) finds it.
        let (ends, last) = diverged(&[(0, 10), (2, 15)], &[(0, 8), (1, 20)]).await;
        assert_eq!(ends, [10, 8], "log end after each round");
        assert_eq!(last, (Some(0), 8));
    }

    #[tokio::test]
    async fn a_follower_ahead_of_the_leader_in_the_same_epoch_cuts_to_the_leaders_end() {
        let (ends, last) = diverged(&[(0, 10), (1, 15)], &[(0, 10), (1, 12), (2, 18)]).await;
        assert_eq!(ends, [12], "one round: the follower has the epoch the leader answered");
        assert_eq!(last, (Some(1), 12));
    }

    #[tokio::test]
    async fn twice_diverged_logs_converge_to_their_last_common_offset() {
        // Only epoch 0 is shared, and the leader's ends at 4: every later epoch differs.
        let (ends, last) = diverged(&[(0, 6), (2, 10), (4, 14)], &[(0, 4), (1, 8), (3, 20)]).await;
        assert_eq!(ends, [10, 6, 4], "log end after each round");
        assert_eq!(last, (Some(0), 4));
    }

    #[tokio::test]
    async fn acks_all_waits_for_the_followers_position() {
        let tmp = tempfile::tempdir().unwrap();
        let view = LeaderView {
            me: 1,
            leader_epoch: LeaderEpoch(4),
            partition_epoch: 0,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            lag_max: std::time::Duration::from_secs(10),
        };
        let (h, _) = PartitionHandle::open(
            "t-0".into(),
            tmp.path().to_owned(),
            TopicConfig::default(),
            RoleSpec::Leader(view),
        )
        .await
        .unwrap();
        let waiting = {
            let h = h.clone();
            tokio::spawn(async move { h.append(vec![batch("x")], WaitFor::Commit).await })
        };
        // The follower has not fetched: the HW cannot pass the record.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        assert_eq!(h.state().high_watermark, Offset(0));
        // A fetch at 0 reads the record; the next at 1 reports it copied.
        let r = h.replica_fetch(2, 0, LeaderEpoch(4), Offset(0), 1 << 20).await.unwrap();
        assert!(!r.data.is_empty());
        assert!(matches!(
            h.replica_fetch(2, 0, LeaderEpoch(3), Offset(1), 1 << 20).await,
            Err(PartitionError::FencedEpoch { asked: 3, current: 4 })
        ));
        let r = h.replica_fetch(2, 0, LeaderEpoch(4), Offset(1), 1 << 20).await.unwrap();
        assert_eq!(r.high_watermark, Offset(1));
        let appended = waiting.await.unwrap().unwrap();
        assert_eq!((appended.base_offset, appended.synced), (Offset(0), true));
    }
}
