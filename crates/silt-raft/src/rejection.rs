//! `Rejection`: why the image refused a command (the image is then unchanged). Typed so callers
//! decide by variant — the admin service maps them to wire codes — never by the message text.
//!
//! Rejections travel only in answers (`CommandResponse::Rejected`, also inside a forwarded
//! proposal's answer between brokers); they are never stored in the Raft log or a snapshot.

use serde::{Deserialize, Serialize};

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// `CreateTopic` for a name the image already holds.
    #[error("topic {topic} already exists")]
    TopicExists { topic: String },
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },
    #[error("unknown partition {topic}/{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("unknown broker {id}")]
    UnknownBroker { id: u64 },
    /// A command carrying a broker epoch the broker has since replaced (it re-registered).
    #[error("broker {id} epoch {epoch} is stale (current {current})")]
    StaleBrokerEpoch { id: u64, epoch: u64, current: u64 },
    /// `AlterPartition` from a leader that is no longer current (a zombie, or a request
    /// overtaken by another change of the partition).
    #[error(
        "stale request for {topic}/{partition}: leader {leader} epochs \
         {leader_epoch}/{partition_epoch}, current {current_leader:?} \
         {current_leader_epoch}/{current_partition_epoch}"
    )]
    StaleEpochs {
        topic: String,
        partition: u32,
        leader: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        current_leader: Option<u64>,
        current_leader_epoch: u32,
        current_partition_epoch: u32,
    },
    /// A `CreateTopic` assignment with no partitions, or a partition without distinct replicas.
    #[error("topic {topic}: every partition needs distinct replicas")]
    InvalidAssignment { topic: String },
    /// An ISR without its leader, or naming a broker that is not a replica.
    #[error("{topic}/{partition}: the ISR {isr:?} must hold the leader and only replicas")]
    InvalidIsr { topic: String, partition: u32, isr: Vec<u64> },
    /// KIP-841: a fenced, stopping or unknown broker may not join an ISR; KIP-903: nor one whose
    /// registration changed since the leader saw it fetch.
    #[error("broker {broker} is fenced, shutting down or re-registered: it cannot join an ISR")]
    IneligibleReplica { broker: u64 },
    /// `AllocateProducerIds` asking for no ids.
    #[error("cannot allocate 0 producer ids to broker {broker}")]
    EmptyProducerIdBlock { broker: u64 },
    /// `DeleteUser` for a name without a credential.
    #[error("unknown user {name}")]
    UnknownUser { name: String },
    /// A reassignment naming no replicas, a broker twice, or an unregistered broker.
    #[error("{topic}/{partition}: invalid replicas: {reason}")]
    InvalidReplicas { topic: String, partition: u32, reason: String },
    /// A reassignment of a partition that is already moving (cancel that first).
    #[error("{topic}/{partition} is already being reassigned; cancel that move first")]
    ReassignmentInProgress { topic: String, partition: u32 },
    /// A cancel of a partition that is not moving.
    #[error("{topic}/{partition} is not being reassigned")]
    NoReassignmentInProgress { topic: String, partition: u32 },
    /// A cancel when no original replica is in sync: only completing the move keeps the data.
    #[error("{topic}/{partition}: no original replica is in sync, so the move cannot be cancelled")]
    CannotCancel { topic: String, partition: u32 },
    /// A decommission with a replica that no other live broker can take.
    #[error(
        "broker {broker} cannot be decommissioned: no other live broker can take its replica \
         of {topic}/{partition}"
    )]
    NoReplacement { broker: u64, topic: String, partition: u32 },
    /// A move onto a broker being decommissioned.
    #[error("broker {broker} is being decommissioned; it takes no new replicas")]
    BrokerDecommissioning { broker: u64 },
    /// `CreatePartitions` computed for another partition count than the topic has now.
    #[error("topic {topic} has {current} partitions, not {expected}: look again and retry")]
    PartitionCountChanged { topic: String, expected: u32, current: u32 },
}
