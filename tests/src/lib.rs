//! The cluster harness for multi-node and fault tests: `siltd` processes with a fault-injecting
//! proxy on every broker-to-broker link ([`cluster`], [`proxy`]), a load of `acks=all` producers
//! and assign-mode consumers recording a history ([`workload`]), the checker ([`history`]), and
//! the compose cluster as a fault target ([`containers`]).

pub mod cluster;
pub mod containers;
pub mod faults;
pub mod group_load;
pub mod history;
pub mod proxy;
pub mod tls;
pub mod workload;
