//! Silt's domain types, the record batch codec and pure decision logic.
//!
//! This crate does no I/O and knows nothing of async runtimes or gRPC: it is the vocabulary every
//! other crate shares. The record batch layout it encodes is drawn byte by byte in `docs/format.md`.

pub mod assignor;
pub mod batch;
mod ids;
pub mod liveness;
mod offset;
pub mod partitioner;
pub mod placement;
pub mod rng;
pub mod scram;
pub mod scram_server;
pub mod stable;
mod topic_name;
pub mod txn;

pub use ids::{LeaderEpoch, NodeId, PartitionId, random_id128, random_u64};
pub use offset::Offset;
pub use topic_name::{TopicName, TopicNameError};
