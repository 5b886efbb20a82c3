//! Consumer groups (ARCHITECTURE §2.5): the coordinator of the groups hashed to the
//! `__consumer_offsets` partitions this broker leads, their pure state machine, the records they
//! are persisted as, and the `Groups` gRPC service.

pub(crate) mod classic;
pub(crate) mod coordinator;
mod offsets_topic;
pub(crate) mod records;
mod service;
pub(crate) mod state;
pub(crate) mod txn_offsets;

pub(crate) use coordinator::{Coordinator, expiry_loop};
pub(crate) use service::GroupsService;
