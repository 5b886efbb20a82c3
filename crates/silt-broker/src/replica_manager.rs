//! `ReplicaManager`: the partitions this broker hosts, by topic and index, each a worker handle.
//! It opens a topic's partition logs (`<data_dir>/<topic>-<partition>/`), closes or deletes them,
//! and removes directories that no topic claims (left by an interrupted delete, or by a delete
//! while this broker was down).
//!
//! Each partition directory holds `partition.metadata` (`version: 0`, `topic_id: <32 hex>`,
//! written and fsync'd when the directory is first opened; KIP-516). A directory whose topic id
//! is not the one the topic has now belongs to an earlier topic of the same name: it is a
//! **stray**, renamed to `<topic>-<partition>.<old id>-stray` and deleted in the background,
//! never opened as a replica. A directory without the file (made before topic ids) is adopted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use silt_storage::StorageError;

use silt_core::LeaderEpoch;

use crate::partition::{PartitionHandle, RoleSpec};
use crate::topic_config::TopicConfig;

/// The hosted partitions.
#[derive(Debug)]
pub struct ReplicaManager {
    data_dir: PathBuf,
    topics: RwLock<HashMap<String, BTreeMap<u32, PartitionHandle>>>,
}

/// The directory of one partition.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The file naming the topic (by id) a partition directory belongs to.
pub const PARTITION_METADATA: &str = "partition.metadata";

/// Longest `partition.metadata` read (it holds two short lines).
const PARTITION_METADATA_MAX_BYTES: u64 = 4096;

/// The topic id stamped in `dir`, if the directory has `partition.metadata`.
fn stamped_topic_id(dir: &Path) -> Result<Option<String>, StorageError> {
    use std::io::Read;
    let path = dir.join(PARTITION_METADATA);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StorageError::Io { path, source }),
    };
    let mut text = String::new();
    file.take(PARTITION_METADATA_MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|source| StorageError::Io { path: path.clone(), source })?;
    // Unreadable content counts as another topic's: the directory is not trusted.
    Ok(Some(
        text.lines()
            .find_map(|l| l.strip_prefix("topic_id:"))
            .map_or_else(|| "unreadable".to_string(), |id| id.trim().to_string()),
    ))
}

/// Writes `partition.metadata` durably (temporary file, fsync, rename, fsync of the directory).
fn stamp_topic_id(dir: &Path, topic_id: &str) -> Result<(), StorageError> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, source }
    };
    let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(format!("version: 0\ntopic_id: {topic_id}\n").as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    let path = dir.join(PARTITION_METADATA);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Moves a stray directory aside (so a fresh one can be made at once) and deletes it in the
/// background.
fn discard_stray(dir: &Path, stamped: &str) -> Result<(), StorageError> {
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".{stamped}-stray"));
    let aside = PathBuf::from(aside);
    std::fs::rename(dir, &aside)
        .map_err(|source| StorageError::Io { path: aside.clone(), source })?;
    tracing::warn!(dir = %dir.display(), stray = %aside.display(), "partition directory of an earlier topic with this name; deleting it");
    std::thread::spawn(move || {
        if let Err(e) = std::fs::remove_dir_all(&aside) {
            tracing::warn!(dir = %aside.display(), error = %e, "cannot delete a stray partition directory");
        }
    });
    Ok(())
}

impl ReplicaManager {
    pub fn new(data_dir: &Path) -> ReplicaManager {
        ReplicaManager { data_dir: data_dir.to_owned(), topics: RwLock::new(HashMap::new()) }
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, BTreeMap<u32, PartitionHandle>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, BTreeMap<u32, PartitionHandle>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (recovering) the given partitions of `topic` that are not open yet; returns those
    /// whose recovery cut damaged or torn data. On failure the partitions opened by this call are
    /// closed again.
    pub async fn open_topic(
        &self,
        topic: &str,
        topic_id: &str,
        partitions: &[u32],
        config: &TopicConfig,
    ) -> Result<Vec<u32>, StorageError> {
        // Partitions start as followers with the HW from their checkpoint, and wait for the
        // image to give them a role.
        let role = RoleSpec::Follower { leader_epoch: LeaderEpoch(0) };
        let mut damaged = Vec::new();
        let mut opened = BTreeMap::new();
        for &p in partitions {
            if self.partition(topic, p).is_some() {
                continue;
            }
            let dir = partition_dir(&self.data_dir, topic, p);
            let stamped = stamped_topic_id(&dir)?;
            if let Some(old) = stamped.as_deref()
                && old != topic_id
            {
                discard_stray(&dir, old)?;
            }
            let name = format!("{topic}-{p}");
            let opened_now =
                PartitionHandle::open(name, dir.clone(), config.clone(), role.clone()).await;
            let opened_now = match opened_now {
                Ok(h) if stamped.as_deref() != Some(topic_id) => {
                    stamp_topic_id(&dir, topic_id).map(|()| h)
                }
                other => other,
            };
            match opened_now {
                Ok((h, was_damaged)) => {
                    if was_damaged {
                        damaged.push(p);
                    }
                    opened.insert(p, h);
                }
                Err(e) => {
                    for h in opened.values() {
                        let _ = h.close(false).await;
                    }
                    return Err(e);
                }
            }
        }
        self.write().entry(topic.to_string()).or_default().extend(opened);
        Ok(damaged)
    }

    /// Names of the topics with at least one hosted partition.
    pub fn topics(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The worker of one partition.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<PartitionHandle> {
        self.read().get(topic)?.get(&partition).cloned()
    }

    /// The hosted workers of a topic, by partition.
    pub fn partitions(&self, topic: &str) -> Option<BTreeMap<u32, PartitionHandle>> {
        self.read().get(topic).cloned()
    }

    /// The hosted partitions whose log is offline (a sync failed).
    pub fn offline(&self) -> Vec<(String, u32)> {
        let topics = self.read();
        let mut out = Vec::new();
        for (t, parts) in topics.iter() {
            for (p, h) in parts {
                if h.state().offline {
                    out.push((t.clone(), *p));
                }
            }
        }
        out
    }

    /// The hosted partitions a read found damaged (their leader asks to hand over), with the
    /// offset the damage begins at.
    pub fn damaged(&self) -> Vec<(String, u32, silt_core::Offset)> {
        let topics = self.read();
        let mut out = Vec::new();
        for (t, parts) in topics.iter() {
            for (p, h) in parts {
                if let Some(at) = h.state().damaged_at {
                    out.push((t.clone(), *p, at));
                }
            }
        }
        out
    }

    /// Every hosted partition, with its topic and index.
    pub fn all_named(&self) -> Vec<(String, u32, PartitionHandle)> {
        self.read()
            .iter()
            .flat_map(|(t, m)| m.iter().map(|(p, h)| (t.clone(), *p, h.clone())))
            .collect()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<PartitionHandle> {
        self.read().values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Stops a topic's workers and deletes its directories.
    pub async fn delete_topic(&self, topic: &str) {
        let handles = self.write().remove(topic).unwrap_or_default();
        for (p, h) in &handles {
            if let Err(e) = h.close(true).await {
                tracing::warn!(topic, partition = p, error = %e, "deleting partition failed");
            }
        }
    }

    /// Stops one partition's worker and deletes its directory (a replica moved off this broker).
    pub async fn delete_partition(&self, topic: &str, partition: u32) {
        let handle = {
            let mut topics = self.write();
            let h = topics.get_mut(topic).and_then(|m| m.remove(&partition));
            if topics.get(topic).is_some_and(|m| m.is_empty()) {
                topics.remove(topic);
            }
            h
        };
        if let Some(h) = handle
            && let Err(e) = h.close(true).await
        {
            tracing::warn!(topic, partition, error = %e, "deleting partition failed");
        }
    }

    /// Applies a changed config to every partition of `topic`.
    pub async fn set_config(&self, topic: &str, config: &TopicConfig) -> Result<(), String> {
        for h in self.partitions(topic).unwrap_or_default().into_values() {
            h.set_config(config.clone()).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Closes every log cleanly (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<_> = self.write().drain().collect();
        for (topic, handles) in all {
            for (p, h) in &handles {
                if let Err(e) = h.close(false).await {
                    tracing::warn!(topic, partition = p, error = %e, "closing partition failed");
                }
            }
        }
    }

    /// Deletes the partition directories `claimed` does not keep, and leftover strays.
    pub fn remove_unclaimed(&self, claimed: impl Fn(&str, u32) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else { return };
        for e in entries.flatten() {
            if !e.path().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with("-stray") {
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            let Some((topic, p)) = name.rsplit_once('-') else { continue };
            let Ok(p) = p.parse::<u32>() else { continue };
            if !claimed(topic, p) {
                tracing::warn!(dir = %e.path().display(), "removing the directory of a deleted partition");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(dir: &Path) -> Option<String> {
        stamped_topic_id(dir).unwrap()
    }

    #[tokio::test]
    async fn a_directory_of_an_earlier_topic_with_the_same_name_is_never_opened() {
        let data = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(data.path());
        let config = TopicConfig::default();
        rm.open_topic("t", "aaaa", &[0], &config).await.unwrap();
        let dir = partition_dir(data.path(), "t", 0);
        assert_eq!(stamped(&dir).as_deref(), Some("aaaa"));
        std::fs::write(dir.join("old-topic-marker"), b"x").unwrap();
        rm.close_all().await;

        // The topic was deleted and created again while this broker was away: another id.
        let rm = ReplicaManager::new(data.path());
        rm.open_topic("t", "bbbb", &[0], &config).await.unwrap();
        assert_eq!(stamped(&dir).as_deref(), Some("bbbb"));
        assert!(!dir.join("old-topic-marker").exists(), "the old data is not the new replica");
        rm.close_all().await;
        // The stray goes (in the background, or at the next sweep).
        rm.remove_unclaimed(|_, _| true);
        let left: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["t-0"], "{left:?}");
    }

    #[tokio::test]
    async fn a_directory_from_before_topic_ids_is_adopted_and_stamped() {
        let data = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(data.path());
        let config = TopicConfig::default();
        rm.open_topic("t", "aaaa", &[0], &config).await.unwrap();
        rm.close_all().await;
        let dir = partition_dir(data.path(), "t", 0);
        std::fs::remove_file(dir.join(PARTITION_METADATA)).unwrap();
        std::fs::write(dir.join("kept"), b"x").unwrap();
        let rm = ReplicaManager::new(data.path());
        rm.open_topic("t", "cccc", &[0], &config).await.unwrap();
        assert!(dir.join("kept").exists());
        assert_eq!(stamped(&dir).as_deref(), Some("cccc"));
        rm.close_all().await;
    }

    #[test]
    fn unclaimed_directories_go_and_claimed_ones_stay() {
        let data = tempfile::tempdir().unwrap();
        for d in ["keep-0", "gone-1", "other", "x-3.abc-stray"] {
            std::fs::create_dir(data.path().join(d)).unwrap();
        }
        let rm = ReplicaManager::new(data.path());
        rm.remove_unclaimed(|topic, p| topic == "keep" && p == 0);
        let mut left: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["keep-0", "other"]);
    }
}
