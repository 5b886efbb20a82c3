//! The partition worker: one thread per partition owns its `Log` and serves commands from a
//! channel, in order. Appends that arrive together are written, then covered by one sync (the
//! group commit) before any `acks=all` waiter is answered. The high watermark — the offset below
//! which consumers may read — is published on a `watch` channel so long-polling fetches wake when
//! it moves. On a single broker the HW is the synced offset for `durability=fsync` topics and the
//! log end for `durability=replicated` ones.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use silt_core::{LeaderEpoch, Offset};
use silt_storage::{Log, ReadResult, StorageError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::topic_config::{Durability, TopicConfig};

/// Commands queued per partition before senders wait.
const QUEUE_DEPTH: usize = 1024;
/// Most commands handled between two syncs (bounds the latency of the first waiter).
const GROUP_COMMIT_MAX: usize = 256;

/// Offsets a partition publishes after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    pub log_start: Offset,
    pub high_watermark: Offset,
    pub log_end: Offset,
}

/// When an append is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// After the leader's append (acks=0/1).
    Append,
    /// After the records are committed: synced for `fsync` topics (acks=all).
    Commit,
}

/// What an append reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_start: Offset,
    /// The records are on disk (fdatasync'd).
    pub synced: bool,
}

type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

enum Command {
    /// The leader epoch to stamp on appended batches (from the cluster image).
    SetLeaderEpoch(LeaderEpoch),
    Append {
        batches: Vec<Vec<u8>>,
        wait: WaitFor,
        reply: Reply<Appended>,
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
    /// Retention (and the background flush of `replicated` topics).
    Tick {
        retention: bool,
    },
    Close {
        delete: bool,
        reply: Reply<()>,
    },
}

/// Why a command could not be served.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The worker has stopped (topic deleted, broker shutting down).
    #[error("partition is closed")]
    Closed,
}

/// A cheap, cloneable handle to a partition worker.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    tx: mpsc::Sender<Command>,
    state: watch::Receiver<PartitionState>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Append { .. } => "Append",
            Command::Read { .. } => "Read",
            Command::OffsetForTime { .. } => "OffsetForTime",
            Command::SetConfig { .. } => "SetConfig",
            Command::SetLeaderEpoch(_) => "SetLeaderEpoch",
            Command::Tick { .. } => "Tick",
            Command::Close { .. } => "Close",
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl PartitionHandle {
    /// Opens (recovering if needed) the log in `dir` on a new worker thread.
    pub async fn open(
        name: String,
        dir: PathBuf,
        config: TopicConfig,
    ) -> Result<PartitionHandle, StorageError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (opened_tx, opened_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("part-{name}"))
            .spawn(move || match Log::open(&dir, config.log_config(), now_ms()) {
                Ok(log) => {
                    let mut w = Worker::new(log, config);
                    let (state_tx, state_rx) = watch::channel(w.state());
                    if opened_tx.send(Ok(state_rx)).is_ok() {
                        w.run(rx, state_tx);
                    }
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| StorageError::io("worker thread", e))?;
        let state = opened_rx.await.map_err(|_| {
            StorageError::io("worker thread", std::io::Error::other("worker died"))
        })??;
        Ok(PartitionHandle { tx, state })
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
        Ok(rx.await.map_err(|_| PartitionError::Closed)??)
    }

    /// Appends already-validated batches as leader; answers per `wait`.
    pub async fn append(
        &self,
        batches: Vec<Vec<u8>>,
        wait: WaitFor,
    ) -> Result<Appended, PartitionError> {
        self.call(|reply| Command::Append { batches, wait, reply }).await
    }

    /// Queues an append without waiting for any answer (acks=0). `false` if the partition is
    /// closed or its queue is full.
    pub fn append_no_wait(&self, batches: Vec<Vec<u8>>) -> bool {
        let (reply, _) = oneshot::channel();
        self.tx.try_send(Command::Append { batches, wait: WaitFor::Append, reply }).is_ok()
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

    /// Applies a changed topic configuration.
    pub async fn set_config(&self, config: TopicConfig) -> Result<(), PartitionError> {
        self.call(|reply| Command::SetConfig { config, reply }).await
    }

    /// Sets the leader epoch stamped on appended batches; does not wait.
    pub fn set_leader_epoch(&self, epoch: LeaderEpoch) {
        let _ = self.tx.try_send(Command::SetLeaderEpoch(epoch));
    }

    /// Asks for a retention pass (and a flush); does not wait.
    pub fn tick(&self, retention: bool) {
        let _ = self.tx.try_send(Command::Tick { retention });
    }

    /// Closes the log cleanly (`delete`: and removes its directory); the worker then exits.
    pub async fn close(&self, delete: bool) -> Result<(), PartitionError> {
        self.call(|reply| Command::Close { delete, reply }).await
    }
}

/// The state owned by the worker thread.
struct Worker {
    log: Option<Log>,
    config: TopicConfig,
    epoch: LeaderEpoch,
    high_watermark: Offset,
}

impl Worker {
    fn new(log: Log, config: TopicConfig) -> Worker {
        // Everything recovered on open is on disk, so it is committed.
        let high_watermark = log.log_end_offset();
        Worker { log: Some(log), config, epoch: LeaderEpoch(0), high_watermark }
    }

    fn log(&mut self) -> &mut Log {
        self.log.as_mut().expect("invariant: the log lives until Close")
    }

    fn state(&self) -> PartitionState {
        let log = self.log.as_ref().expect("invariant: the log lives until Close");
        PartitionState {
            log_start: log.log_start_offset(),
            high_watermark: self.high_watermark,
            log_end: log.log_end_offset(),
        }
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Command>, state: watch::Sender<PartitionState>) {
        while let Some(first) = rx.blocking_recv() {
            let mut waiting: Vec<(Reply<Appended>, Appended)> = Vec::new();
            let mut appended = false;
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(cmd) = next.take() {
                handled += 1;
                match cmd {
                    Command::Append { batches, wait, reply } => match self.append(batches) {
                        Ok(a) => {
                            appended = true;
                            if wait == WaitFor::Commit
                                && self.config.durability == Durability::Fsync
                            {
                                waiting.push((reply, a));
                            } else {
                                let _ = reply.send(Ok(a));
                            }
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    },
                    Command::Close { delete, reply } => {
                        self.commit(&mut waiting, appended, &state);
                        let _ = reply.send(self.close(delete));
                        return;
                    }
                    other => self.handle(other, &state),
                }
                if handled < GROUP_COMMIT_MAX {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut waiting, appended, &state);
        }
        // All handles dropped without Close (broker torn down): close cleanly anyway.
        let _ = self.close(false);
    }

    fn append(&mut self, batches: Vec<Vec<u8>>) -> Result<Appended, StorageError> {
        let epoch = self.epoch;
        let now = now_ms();
        let log = self.log();
        let mut first = None;
        let mut last = Offset::ZERO;
        for mut b in batches {
            let info = log.append(&mut b, epoch, now)?;
            first.get_or_insert(info.base_offset);
            last = info.last_offset;
        }
        let base_offset = first.unwrap_or(log.log_end_offset());
        Ok(Appended {
            base_offset,
            last_offset: last,
            log_start: log.log_start_offset(),
            synced: false,
        })
    }

    /// The group commit: one sync for everything appended in this round, then the waiters.
    fn commit(
        &mut self,
        waiting: &mut Vec<(Reply<Appended>, Appended)>,
        appended: bool,
        state: &watch::Sender<PartitionState>,
    ) {
        if appended {
            match self.config.durability {
                Durability::Fsync => match self.log().sync() {
                    Ok(end) => self.high_watermark = end,
                    Err(e) => {
                        tracing::error!(dir = %self.log().dir().display(), error = %e, "sync failed; records stay uncommitted");
                        for (reply, _) in waiting.drain(..) {
                            let _ = reply.send(Err(StorageError::io(
                                self.log().dir(),
                                std::io::Error::other(e.to_string()),
                            )));
                        }
                    }
                },
                Durability::Replicated => self.high_watermark = self.log().log_end_offset(),
            }
        }
        for (reply, mut a) in waiting.drain(..) {
            a.synced = true;
            let _ = reply.send(Ok(a));
        }
        let now = self.state();
        state.send_if_modified(|s| std::mem::replace(s, now) != now);
    }

    fn handle(&mut self, cmd: Command, state: &watch::Sender<PartitionState>) {
        match cmd {
            Command::Read { from, max_bytes, reply } => {
                let hw = self.high_watermark;
                let _ = reply.send(self.log().read_upto(from, max_bytes, hw));
            }
            Command::OffsetForTime { timestamp_ms, reply } => {
                let hw = self.high_watermark;
                let r = self
                    .log()
                    .offset_for_timestamp(timestamp_ms)
                    .map(|o| o.filter(|(off, _)| *off < hw));
                let _ = reply.send(r);
            }
            Command::SetConfig { config, reply } => {
                let r = self.log().set_config(config.log_config());
                if r.is_ok() {
                    self.config = config;
                }
                let _ = reply.send(r);
            }
            Command::SetLeaderEpoch(epoch) => {
                if epoch > self.epoch {
                    self.epoch = epoch;
                }
            }
            Command::Tick { retention } => {
                if self.config.durability == Durability::Replicated
                    && let Err(e) = self.log().sync()
                {
                    tracing::error!(error = %e, "background flush failed");
                }
                if retention && let Err(e) = self.log().apply_retention(now_ms()) {
                    tracing::warn!(error = %e, "retention pass failed");
                }
                let now = self.state();
                state.send_if_modified(|s| std::mem::replace(s, now) != now);
            }
            Command::Append { .. } | Command::Close { .. } => unreachable!("handled by run"),
        }
    }

    fn close(&mut self, delete: bool) -> Result<(), StorageError> {
        let log = self.log.take().expect("invariant: closed once");
        if delete { log.delete() } else { log.close() }
    }
}
