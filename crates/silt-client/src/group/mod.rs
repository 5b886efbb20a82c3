//! Consumer groups: a [`GroupConsumer`] (subscribe, poll, commit, rebalance listener), a
//! [`Committer`] handle, and group administration on `Admin`.

mod admin;
mod committer;
mod consumer;
pub(crate) mod link;

pub use admin::{GroupListing, ResetPlan, ResetTo};
pub use committer::Committer;
pub use consumer::{
    BoxFuture, CommitMode, Delivery, GroupConfig, GroupConsumer, GroupMetadata, RebalanceListener,
};
