//! `ReplicaManager`: the partitions this broker hosts, by topic and index, each a worker handle.
//! It opens a topic's partition logs (`<data_dir>/<topic>-<partition>/`), closes or deletes them,
//! and removes directories that no topic claims (left by an interrupted delete).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use silt_storage::StorageError;

use silt_core::LeaderEpoch;

use crate::partition::{LeaderView, PartitionHandle, RoleSpec};
use crate::topic_config::TopicConfig;

/// The hosted partitions.
#[derive(Debug)]
pub struct ReplicaManager {
    data_dir: PathBuf,
    /// Cluster mode: partitions start as followers with the HW from their checkpoint, and wait
    /// for the image to give them a role.
    clustered: bool,
    topics: RwLock<HashMap<String, BTreeMap<u32, PartitionHandle>>>,
}

/// The directory of one partition.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl ReplicaManager {
    pub fn new(data_dir: &Path, clustered: bool) -> ReplicaManager {
        ReplicaManager {
            data_dir: data_dir.to_owned(),
            clustered,
            topics: RwLock::new(HashMap::new()),
        }
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
        partitions: &[u32],
        config: &TopicConfig,
    ) -> Result<Vec<u32>, StorageError> {
        let role = if self.clustered {
            RoleSpec::Follower { leader_epoch: LeaderEpoch(0) }
        } else {
            RoleSpec::Leader(LeaderView::single())
        };
        let mut damaged = Vec::new();
        let mut opened = BTreeMap::new();
        for &p in partitions {
            if self.partition(topic, p).is_some() {
                continue;
            }
            let dir = partition_dir(&self.data_dir, topic, p);
            let name = format!("{topic}-{p}");
            match PartitionHandle::open(name, dir, config.clone(), role.clone(), self.clustered)
                .await
            {
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

    /// Deletes partition directories of topics not in `known` (name -> partition count).
    pub fn remove_orphans(&self, known: &BTreeMap<String, u32>) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else { return };
        for e in entries.flatten() {
            if !e.path().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((topic, p)) = name.rsplit_once('-') else { continue };
            let Ok(p) = p.parse::<u32>() else { continue };
            if known.get(topic).is_none_or(|&n| p >= n) {
                tracing::warn!(dir = %e.path().display(), "removing the directory of a deleted partition");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
