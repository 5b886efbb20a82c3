//! Share groups (KIP-932, docs/share-groups.md): the coordinator of the share groups hashed to
//! the `__share_group_state` partitions this broker leads, the pure state machine of a
//! share-partition, the records it is persisted as, the `Share` gRPC service and the internal
//! calls it makes to partition leaders.

pub(crate) mod coordinator;
mod fetch;
pub(crate) mod forward;
pub(crate) mod group;
mod peer;
pub(crate) mod records;
mod service;
pub(crate) mod state;

pub(crate) use coordinator::{ShareCoordinator, expiry_loop};
pub(crate) use peer::ShareBrokerService;
pub(crate) use service::ShareService;
