//! Data directories of the old single-broker mode. Before one metadata path, `siltd` without
//! `--peers` kept its topics in `<data_dir>/topics.json` (a JSON document: `version`, `next_id`,
//! and each topic's name, store id, partition count and config overrides) instead of a metadata
//! quorum. A broker that finds that file migrates it once into its one-voter quorum: each topic
//! is created in the image with the id its partition directories are stamped with (the store id
//! as 32 hex digits), one replica on this broker, and its overrides; the file is then renamed
//! `topics.json.migrated`. A data directory of a multi-voter quorum that holds the file is
//! refused at start (see [`LegacyTopics::read`]): its topics have no replicas elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use silt_raft::Command;

const FILE_NAME: &str = "topics.json";
const MIGRATED: &str = "topics.json.migrated";
/// Refuse to read a metadata file larger than this (it holds names and small maps).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One topic of the old store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LegacyTopic {
    pub name: String,
    /// The store id; partition directories are stamped with it as 32 hex digits.
    pub id: u64,
    pub partitions: u32,
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

#[derive(Debug, serde::Deserialize)]
struct Document {
    #[serde(default)]
    topics: BTreeMap<String, LegacyTopic>,
}

/// Why the old topic file cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} (from the old single-broker mode) is unreadable: {reason}; move it away to start \
         without its topics"
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// The topics of an old single-broker data directory, to migrate.
#[derive(Debug)]
pub struct LegacyTopics {
    path: PathBuf,
    pub topics: Vec<LegacyTopic>,
}

impl LegacyTopics {
    /// The old topic file of `data_dir`, if it has one (`None` for a new or migrated directory).
    pub fn read(data_dir: &Path) -> Result<Option<LegacyTopics>, LegacyError> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| LegacyError::Io { path: path.clone(), source };
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE_BYTES => Err(LegacyError::Corrupt {
                reason: format!("{} bytes is implausibly large", m.len()),
                path,
            }),
            Ok(_) => {
                let text = std::fs::read_to_string(&path).map_err(io)?;
                let doc: Document = serde_json::from_str(&text).map_err(|e| {
                    LegacyError::Corrupt { path: path.clone(), reason: e.to_string() }
                })?;
                Ok(Some(LegacyTopics { path, topics: doc.topics.into_values().collect() }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// The commands that create the topics on broker `me` alone, keeping their ids.
    pub fn commands(&self, me: u64) -> Vec<Command> {
        self.topics
            .iter()
            .map(|t| Command::CreateTopic {
                name: t.name.clone(),
                assignment: vec![vec![me]; t.partitions as usize],
                configs: t.overrides.clone(),
                uuid: topic_id(t.id),
            })
            .collect()
    }

    /// Renames the file once its topics are in the image, so it is never migrated again.
    pub fn retire(&self) -> std::io::Result<()> {
        std::fs::rename(&self.path, self.path.with_file_name(MIGRATED))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The topic id the old mode stamped on a topic's partition directories.
pub fn topic_id(store_id: u64) -> String {
    format!("{store_id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_file_becomes_create_commands_that_keep_ids_and_overrides() {
        let d = tempfile::tempdir().unwrap();
        assert!(LegacyTopics::read(d.path()).unwrap().is_none());
        std::fs::write(
            d.path().join(FILE_NAME),
            r#"{"version":1,"next_id":3,"topics":{"ev":{"name":"ev","id":2,"partitions":2,
               "replication_factor":1,"overrides":{"retention.ms":"1000"}}}}"#,
        )
        .unwrap();
        let legacy = LegacyTopics::read(d.path()).unwrap().unwrap();
        let cmds = legacy.commands(7);
        assert_eq!(cmds.len(), 1);
        match &cmds[0] {
            Command::CreateTopic { name, assignment, configs, uuid } => {
                assert_eq!(name, "ev");
                assert_eq!(assignment, &vec![vec![7], vec![7]]);
                assert_eq!(configs["retention.ms"], "1000");
                assert_eq!(uuid, &format!("{:032x}", 2));
            }
            other => panic!("{other:?}"),
        }
        legacy.retire().unwrap();
        assert!(LegacyTopics::read(d.path()).unwrap().is_none());
        assert!(d.path().join(MIGRATED).exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_broker() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE_NAME), "{not json").unwrap();
        assert!(matches!(LegacyTopics::read(d.path()), Err(LegacyError::Corrupt { .. })));
    }
}
