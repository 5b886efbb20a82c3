//! Code generated from `proto/` (the gRPC contract) and conversions to `silt-core` types.
//!
//! `v1` is the client contract (`silt.v1`): the `Metadata`, `Data` (produce, fetch, list
//! offsets) and `Admin` services. Every proto `bytes` field is a `bytes::Bytes`, so record
//! batches travel from the log to the wire without a copy in Silt's code.

pub mod codec;
mod convert;

pub use convert::{ConvertError, decoded_to_fetched, record_from_proto, record_to_proto};

/// Request metadata keys of a password login (binary values: tonic encodes them in base64).
/// Sent with every request over TLS; the broker verifies them once per connection.
pub const USER_METADATA: &str = "silt-user-bin";
pub const PASSWORD_METADATA: &str = "silt-password-bin";

/// The client services and messages (`package silt.v1`).
#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("silt.v1");
}

/// Broker-to-broker services (`package silt.internal.v1`): the Raft transport today;
/// replication and heartbeats join with their milestones.
#[allow(missing_debug_implementations, clippy::all)]
pub mod internal {
    tonic::include_proto!("silt.internal.v1");
}
