//! Topic metadata on a single broker: the small interface the broker uses (`TopicStore`) and
//! its file implementation, a JSON document replaced atomically at `<data_dir>/topics.json`.
//! The metadata-quorum milestone replaces the file with the Raft cluster image.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One topic as stored: identity, shape and the config keys set explicitly (overrides).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicRecord {
    pub name: String,
    /// Distinguishes a re-created topic from a deleted one of the same name.
    pub id: u64,
    pub partitions: u32,
    pub replication_factor: u32,
    pub overrides: BTreeMap<String, String>,
}

/// Why a metadata change failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicStoreError {
    #[error("topic {0} already exists")]
    Exists(String),
    #[error("topic {0} does not exist")]
    Unknown(String),
    #[error("cannot persist topic metadata at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("topic metadata at {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Where topic metadata lives. Every change is durable when the call returns.
pub trait TopicStore: Send + Sync + std::fmt::Debug {
    fn list(&self) -> Vec<TopicRecord>;
    fn get(&self, name: &str) -> Option<TopicRecord>;
    fn create(&self, topic: TopicRecord) -> Result<(), TopicStoreError>;
    fn delete(&self, name: &str) -> Result<TopicRecord, TopicStoreError>;
    fn set_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), TopicStoreError>;
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Document {
    version: u32,
    next_id: u64,
    topics: BTreeMap<String, TopicRecord>,
}

/// `TopicStore` in one JSON file.
#[derive(Debug)]
pub struct FileTopicStore {
    path: PathBuf,
    doc: Mutex<Document>,
}

const FILE_NAME: &str = "topics.json";
/// Refuse to read a metadata file larger than this (it holds names and small maps).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

impl FileTopicStore {
    /// Loads `<data_dir>/topics.json`, or starts empty if there is none.
    pub fn open(data_dir: &Path) -> Result<FileTopicStore, TopicStoreError> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| TopicStoreError::Io { path: path.clone(), source };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let doc = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                return Err(TopicStoreError::Corrupt {
                    path,
                    reason: format!("{} bytes is implausibly large", m.len()),
                });
            }
            Ok(_) => {
                let text = std::fs::read_to_string(&path).map_err(io)?;
                serde_json::from_str(&text).map_err(|e| TopicStoreError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Document { version: 1, next_id: 1, ..Default::default() }
            }
            Err(e) => return Err(io(e)),
        };
        Ok(FileTopicStore { path, doc: Mutex::new(doc) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Document> {
        self.doc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `doc` durably (temp file, fsync, rename, fsync dir).
    fn persist(&self, doc: &Document) -> Result<(), TopicStoreError> {
        let io = |source| TopicStoreError::Io { path: self.path.clone(), source };
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(doc).expect("invariant: the document serializes");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Applies `change` to a copy, persists it, and only then makes it current.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Document) -> Result<T, TopicStoreError>,
    ) -> Result<T, TopicStoreError> {
        let mut doc = self.lock();
        let mut next =
            Document { version: doc.version, next_id: doc.next_id, topics: doc.topics.clone() };
        let out = change(&mut next)?;
        self.persist(&next)?;
        *doc = next;
        Ok(out)
    }

    /// A fresh topic id.
    pub fn next_id(&self) -> u64 {
        self.lock().next_id
    }
}

impl TopicStore for FileTopicStore {
    fn list(&self) -> Vec<TopicRecord> {
        self.lock().topics.values().cloned().collect()
    }

    fn get(&self, name: &str) -> Option<TopicRecord> {
        self.lock().topics.get(name).cloned()
    }

    fn create(&self, mut topic: TopicRecord) -> Result<(), TopicStoreError> {
        self.update(|d| {
            if d.topics.contains_key(&topic.name) {
                return Err(TopicStoreError::Exists(topic.name.clone()));
            }
            topic.id = d.next_id;
            d.next_id += 1;
            d.topics.insert(topic.name.clone(), topic);
            Ok(())
        })
    }

    fn delete(&self, name: &str) -> Result<TopicRecord, TopicStoreError> {
        self.update(|d| {
            d.topics.remove(name).ok_or_else(|| TopicStoreError::Unknown(name.to_string()))
        })
    }

    fn set_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), TopicStoreError> {
        self.update(|d| {
            let t =
                d.topics.get_mut(name).ok_or_else(|| TopicStoreError::Unknown(name.to_string()))?;
            t.overrides = overrides;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: 0,
            partitions: 3,
            replication_factor: 1,
            overrides: BTreeMap::new(),
        }
    }

    #[test]
    fn changes_survive_reopen_and_ids_are_never_reused() {
        let d = tempfile::tempdir().unwrap();
        let s = FileTopicStore::open(d.path()).unwrap();
        s.create(topic("a")).unwrap();
        s.create(topic("b")).unwrap();
        assert!(matches!(s.create(topic("a")), Err(TopicStoreError::Exists(_))));
        s.set_overrides("b", BTreeMap::from([("retention.ms".into(), "1000".into())])).unwrap();
        let a_id = s.delete("a").unwrap().id;
        assert!(matches!(s.delete("a"), Err(TopicStoreError::Unknown(_))));
        let s = FileTopicStore::open(d.path()).unwrap();
        assert_eq!(s.list().len(), 1);
        assert_eq!(s.get("b").unwrap().overrides["retention.ms"], "1000");
        s.create(topic("a")).unwrap();
        assert!(s.get("a").unwrap().id > a_id);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_cluster() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE_NAME), "{not json").unwrap();
        assert!(matches!(FileTopicStore::open(d.path()), Err(TopicStoreError::Corrupt { .. })));
    }
}
