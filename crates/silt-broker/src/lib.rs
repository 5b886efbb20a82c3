//! The Silt broker library: configuration, the metadata quorum member, partition workers, and the gRPC
//! services (`Broker::bind(config)` / `run(shutdown)`). `siltd` is a thin main around it, and
//! tests start brokers in-process on port 0.

pub mod auth;
mod balance;
mod broker;
mod cleaner;
mod cluster;
pub mod config;
mod error;
mod groups;
mod health;
mod kafka;
pub mod legacy;
mod metrics;
pub mod partition;
mod peers;
pub mod replica_manager;
mod replication;
mod service;
mod share;
pub mod tls;
pub mod topic_config;
mod txn;

pub use broker::{Broker, StartError};
pub use config::BrokerConfig;
#[cfg(feature = "fault-injection")]
pub use service::CRASH_BEFORE_ANSWER_FILE;
#[cfg(feature = "fault-injection")]
pub use txn::coordinator::CRASH_AFTER_PREPARE_COMMIT_FILE;
