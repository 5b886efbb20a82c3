//! The Silt client library: a [`Client`] that knows the cluster (bootstrap, metadata cache, one
//! gRPC channel per broker), a batching [`Producer`], an assign/seek [`Consumer`], a consumer-group member ([`GroupConsumer`]) and an
//! [`Admin`] client. Depends only on `silt-core` and `silt-proto`.

mod admin;
mod client;
mod consumer;
mod error;
mod group;
mod producer;
pub mod rpc;
mod security;
mod share;
mod transactional;

pub use admin::Admin;
pub use client::{Client, ConnectOptions, Credentials, TlsOptions};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, Isolation, Seek, TopicPartition};
pub use error::{ClientError, ProduceError};
pub use group::{
    BoxFuture, CommitMode, Committer, Delivery, GroupConfig, GroupConsumer, GroupListing,
    GroupMetadata, RebalanceListener, ResetPlan, ResetTo,
};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use share::{
    AckFailure, AckKind, AckMode, ShareConfig, ShareConsumer, ShareGroupListing, ShareRecord,
    ShareStart,
};
pub use silt_core::batch::Compression;
pub use transactional::{TransactionalConfig, TransactionalProducer};
