//! The cluster harness for multi-node and fault tests: `siltd` processes with a fault-injecting
//! proxy on every broker-to-broker link ([`cluster`], [`proxy`]), a load of `acks=all` producers
//! and assign-mode consumers recording a history ([`workload`]), and the checker
//! ([`history`]).

pub mod cluster;
pub mod history;
pub mod proxy;
pub mod workload;
