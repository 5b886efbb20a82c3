//! The Silt broker library: configuration, topic metadata, partition workers, and the gRPC
//! services (`Broker::bind(config)` / `run(shutdown)`). `siltd` is a thin main around it, and
//! tests start brokers in-process on port 0.

pub mod config;
pub mod partition;
pub mod topic_config;
pub mod topic_store;

pub use config::BrokerConfig;
