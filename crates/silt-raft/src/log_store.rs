//! `LogStore`: the Raft log on disk. One append-only file `raft-log` of records
//! `[len u32 BE][crc32 u32 BE][JSON entry]`, fsynced before an append is acknowledged; the vote
//! (`vote`, fsynced), the committed log id (`committed`, a hint, not fsynced) and the last purged
//! log id (`purged`, fsynced) in their own small files. Entries are also kept in memory (the
//! metadata log is small and purged after snapshots). On open a torn or corrupt tail is cut.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftLogReader, RaftLogStorage};
use tokio::sync::Mutex;

use crate::files::{read_optional, write_atomic};
use crate::typ::{
    Entry, LogFlushed, LogId, LogState, StorageError, StorageIOError, TypeConfig, Vote,
};

/// The largest entry accepted (and read back); larger lengths on disk are corruption.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;
const RECORD_HEADER: usize = 8;
const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const PURGED_FILE: &str = "purged";
/// Rewrite the log file once purged records take more than this many bytes.
const COMPACT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    len: u64,
    /// index -> (entry, position of its record in the file)
    entries: BTreeMap<u64, (Entry, u64)>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
    vote: Option<Vote>,
}

/// The durable Raft log store (cheap to clone; clones share the files).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io(e: std::io::Error) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn encode(entry: &Entry) -> Result<Vec<u8>, StorageError> {
    let payload = serde_json::to_vec(entry)
        .map_err(|e| StorageError::from(StorageIOError::write_logs(&e)))?;
    if payload.len() > MAX_ENTRY_BYTES {
        return Err(io(std::io::Error::other(format!(
            "entry of {} bytes exceeds {MAX_ENTRY_BYTES}",
            payload.len()
        ))));
    }
    let mut rec = Vec::with_capacity(RECORD_HEADER + payload.len());
    rec.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    rec.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    rec.extend_from_slice(&payload);
    Ok(rec)
}

/// Parses records from `data`; returns the entries with their positions and the length of the
/// valid prefix (a torn or corrupt tail ends the scan).
fn scan(data: &[u8]) -> (Vec<(Entry, u64)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= RECORD_HEADER {
        let len =
            u32::from_be_bytes(data[pos..pos + 4].try_into().expect("invariant: 4 bytes")) as usize;
        let crc =
            u32::from_be_bytes(data[pos + 4..pos + 8].try_into().expect("invariant: 4 bytes"));
        if len > MAX_ENTRY_BYTES || data.len() - pos - RECORD_HEADER < len {
            break;
        }
        let payload = &data[pos + RECORD_HEADER..pos + RECORD_HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(payload) else { break };
        out.push((entry, pos as u64));
        pos += RECORD_HEADER + len;
    }
    (out, pos as u64)
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> std::io::Result<Option<T>> {
    match read_optional(dir, name, 1 << 20)? {
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(std::io::Error::other),
        None => Ok(None),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let data = std::fs::read(&path)?;
        let (records, valid) = scan(&data);
        if valid < data.len() as u64 {
            tracing::warn!(file = %path.display(), valid, len = data.len(), "cutting a torn or corrupt Raft log tail");
            file.set_len(valid)?;
            file.sync_all()?;
        }
        file.flush()?;
        let last_purged: Option<LogId> = read_json(dir, PURGED_FILE)?;
        let entries = records
            .into_iter()
            .filter(|(e, _)| last_purged.is_none_or(|p| e.log_id.index > p.index))
            .map(|(e, pos)| (e.log_id.index, (e, pos)))
            .collect();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_owned(),
                file,
                len: valid,
                entries,
                last_purged,
                committed: read_json(dir, COMMITTED_FILE)?,
                vote: read_json(dir, VOTE_FILE)?,
            })),
        })
    }
}

impl Inner {
    /// Rewrites the file with only the live entries, once purged bytes pile up.
    fn maybe_compact(&mut self) -> std::io::Result<()> {
        let first = self.entries.values().next().map_or(self.len, |(_, pos)| *pos);
        if first < COMPACT_BYTES {
            return Ok(());
        }
        let mut data = Vec::new();
        let mut entries = BTreeMap::new();
        for (idx, (e, _)) in std::mem::take(&mut self.entries) {
            let pos = data.len() as u64;
            data.extend(encode(&e).map_err(std::io::Error::other)?);
            entries.insert(idx, (e, pos));
        }
        write_atomic(&self.dir, LOG_FILE, &data, true)?;
        self.file = OpenOptions::new().read(true).append(true).open(self.dir.join(LOG_FILE))?;
        self.len = data.len() as u64;
        self.entries = entries;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock().await;
        Ok(inner.entries.range(range).map(|(_, (e, _))| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        let inner = self.inner.lock().await;
        let last = inner.entries.values().next_back().map(|(e, _)| e.log_id).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        let data = serde_json::to_vec(vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        write_atomic(&inner.dir, VOTE_FILE, &data, true)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().await.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        let data = serde_json::to_vec(&committed)
            .map_err(|e| StorageError::from(StorageIOError::write(&e)))?;
        // A hint for re-applying after a restart: an older value on disk is safe.
        write_atomic(&inner.dir, COMMITTED_FILE, &data, false).map_err(io)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().await.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        let mut inner = self.inner.lock().await;
        let mut data = Vec::new();
        let mut added = Vec::new();
        for e in entries {
            let pos = inner.len + data.len() as u64;
            data.extend(encode(&e)?);
            added.push((e, pos));
        }
        let write = inner.file.write_all(&data).and_then(|()| inner.file.sync_data());
        if let Err(e) = write {
            // Cut whatever part of the write landed, so the file stays a sequence of records.
            let _ = inner.file.set_len(inner.len);
            let msg = e.to_string();
            callback.log_io_completed(Err(std::io::Error::other(msg)));
            return Err(io(e));
        }
        inner.len += data.len() as u64;
        for (e, pos) in added {
            inner.entries.insert(e.log_id.index, (e, pos));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        let Some(&(_, pos)) = inner.entries.get(&log_id.index) else {
            // Nothing stored at or after this index in memory; drop any later ones anyway.
            inner.entries.retain(|idx, _| *idx < log_id.index);
            return Ok(());
        };
        inner.file.set_len(pos).and_then(|()| inner.file.sync_all()).map_err(io)?;
        inner.len = pos;
        inner.entries.retain(|idx, _| *idx < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        let data = serde_json::to_vec(&log_id)
            .map_err(|e| StorageError::from(StorageIOError::write(&e)))?;
        write_atomic(&inner.dir, PURGED_FILE, &data, true).map_err(io)?;
        inner.last_purged = Some(log_id);
        inner.entries.retain(|idx, _| *idx > log_id.index);
        inner.maybe_compact().map_err(io)?;
        Ok(())
    }
}
