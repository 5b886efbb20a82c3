//! The openraft type configuration and the aliases the rest of this crate uses. Nothing outside
//! `silt-raft` names these.

use std::io::Cursor;

use crate::image::{Command, CommandResponse};

/// Node ids are broker ids.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Silt's metadata-quorum types: commands on the cluster image, answered with responses.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StorageIOError = openraft::StorageIOError<NodeId>;
pub type LogState = openraft::LogState<TypeConfig>;
pub type Snapshot = openraft::storage::Snapshot<TypeConfig>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type LogFlushed = openraft::storage::LogFlushed<TypeConfig>;
