//! `StateMachineStore`: the cluster image as a Raft state machine. Applying a committed entry
//! runs `ClusterImage::apply` and publishes the new image on a `watch` channel (brokers react to
//! it). Snapshots are the JSON of (last applied log id, membership, image), kept in the file
//! `snapshot` (replaced atomically, fsynced); a restart loads it and Raft re-applies the log after.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use crate::files::{read_optional, write_atomic};
use crate::image::{ClusterImage, CommandResponse};
use crate::typ::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    TypeConfig,
};

const SNAPSHOT_FILE: &str = "snapshot";
/// Refuse snapshot files (and received snapshots) larger than this.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: ClusterImage,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: State,
    snapshot_idx: u64,
    current: Option<(SnapshotMeta, Vec<u8>)>,
}

/// The state machine (cheap to clone; clones share it).
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
    image: Arc<watch::Sender<Arc<ClusterImage>>>,
}

fn sm_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(e).into()
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, restoring the last snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachineStore> {
        std::fs::create_dir_all(dir)?;
        let (state, current) = match read_optional(dir, SNAPSHOT_FILE, MAX_SNAPSHOT_BYTES)? {
            Some(bytes) => {
                let (meta, state): (SnapshotMeta, State) =
                    serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                let data = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
                (state, Some((meta, data)))
            }
            None => (State::default(), None),
        };
        let (tx, _) = watch::channel(Arc::new(state.image.clone()));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_owned(),
                state,
                snapshot_idx: 0,
                current,
            })),
            image: Arc::new(tx),
        })
    }

    /// A receiver of every new image, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterImage>> {
        self.image.subscribe()
    }

    /// The current image.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.borrow().clone()
    }

    fn publish(&self, image: &ClusterImage) {
        self.image.send_replace(Arc::new(image.clone()));
    }
}

fn persist(dir: &Path, meta: &SnapshotMeta, state: &State) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(&(meta, state)).map_err(|e| sm_err(&e))?;
    write_atomic(dir, SNAPSHOT_FILE, &bytes, true)
        .map_err(|e| StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e)))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mut inner = self.inner.lock().await;
        inner.snapshot_idx += 1;
        let last = inner.state.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, inner.snapshot_idx),
            None => format!("--{}", inner.snapshot_idx),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: inner.state.membership.clone(),
            snapshot_id,
        };
        let data = serde_json::to_vec(&inner.state).map_err(|e| sm_err(&e))?;
        persist(&inner.dir, &meta, &inner.state)?;
        inner.current = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.inner.lock().await;
        Ok((inner.state.last_applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        let mut inner = self.inner.lock().await;
        let mut out = Vec::new();
        let mut changed = false;
        for e in entries {
            inner.state.last_applied = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => CommandResponse::Done,
                EntryPayload::Normal(cmd) => {
                    changed = true;
                    inner.state.image.apply(&cmd)
                }
                EntryPayload::Membership(m) => {
                    inner.state.membership = StoredMembership::new(Some(e.log_id), m);
                    CommandResponse::Done
                }
            });
        }
        if changed {
            self.publish(&inner.state.image);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let read_err = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(e.to_string()),
            ))
        };
        if data.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(read_err(&format!(
                "snapshot of {} bytes exceeds {MAX_SNAPSHOT_BYTES}",
                data.len()
            )));
        }
        let mut state: State = serde_json::from_slice(&data).map_err(|e| read_err(&e))?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let mut inner = self.inner.lock().await;
        persist(&inner.dir, meta, &state)?;
        inner.state = state;
        inner.current = Some((meta.clone(), data));
        self.publish(&inner.state.image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let inner = self.inner.lock().await;
        Ok(inner.current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
