//! Consumer groups: a [`GroupConsumer`] (subscribe, poll, commit, rebalance listener), a
//! [`Committer`] handle, and group administration on `Admin`.

mod admin;
mod consumer;
mod link;

pub use admin::{GroupListing, ResetPlan, ResetTo};
pub use consumer::{
    BoxFuture, CommitMode, Committer, Delivery, GroupConfig, GroupConsumer, RebalanceListener,
};
