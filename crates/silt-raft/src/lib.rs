//! The metadata quorum on openraft: the cluster image (brokers, topics, partitions, ISR, leader
//! epochs) as a Raft state machine, a durable log store, the gRPC transport, and
//! `MetadataNode`, the facade a broker runs. The only crate
//! that names openraft; its generics stay in `typ`.

// openraft's `StorageError` is large and its traits return it; boxing it here would only add
// conversions at every trait boundary.
#![allow(clippy::result_large_err)]

mod files;
pub mod image;
mod log_store;
mod network;
mod node;
mod rejection;
mod service;
mod state_machine;
pub mod typ;

pub use image::{
    AclBinding, AclFilter, AclOperation, AclPermission, BrokerRecord, CLUSTER_RESOURCE,
    ClusterImage, Command, CommandResponse, ElectionOutcome, PartitionImage, PatternType,
    Reassignment, Rejection, ResourceType, ScramCredential, TopicImage, WILDCARD, elect_leader,
};
pub use log_store::{LogStore, MAX_ENTRY_BYTES};
pub use network::{MAX_RAFT_MESSAGE_BYTES, Network};
pub use node::{MetadataNode, NodeConfig, NodeError};
pub use service::RaftService;
pub use state_machine::{MAX_SNAPSHOT_BYTES, StateMachineStore};
