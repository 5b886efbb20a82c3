//! The one place broker failures become wire error codes.

use silt_proto::v1::ErrorCode;
use silt_storage::StorageError;

use crate::partition::PartitionError;

/// A per-partition or per-topic failure, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    /// With `NOT_LEADER`: where the leader is, so the client retries there at once.
    pub leader: Option<silt_proto::v1::LeaderHint>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError { code, message: message.into(), leader: None }
    }
}

impl From<&StorageError> for WireError {
    fn from(e: &StorageError) -> WireError {
        let code = match e {
            StorageError::InvalidBatch(_) => ErrorCode::CorruptMessage,
            StorageError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            StorageError::DiskFull { .. }
            | StorageError::Offline { .. }
            | StorageError::Io { .. }
            | StorageError::Corrupt { .. } => ErrorCode::StorageError,
            StorageError::NonContiguous { .. }
            | StorageError::StaleEpoch { .. }
            | StorageError::InvalidConfig(_) => ErrorCode::UnknownServerError,
        };
        WireError::new(code, e.to_string())
    }
}

impl From<PartitionError> for WireError {
    fn from(e: PartitionError) -> WireError {
        match e {
            PartitionError::Storage(s) => WireError::from(&s),
            PartitionError::Closed => WireError::new(
                ErrorCode::UnknownTopic,
                "the partition was deleted or the broker is stopping",
            ),
            e @ (PartitionError::NotLeader | PartitionError::NotFollower(_)) => {
                WireError::new(ErrorCode::NotLeader, e.to_string())
            }
            e @ PartitionError::FencedEpoch { .. } => {
                WireError::new(ErrorCode::FencedLeaderEpoch, e.to_string())
            }
            e @ PartitionError::UnknownEpoch { .. } => {
                WireError::new(ErrorCode::UnknownLeaderEpoch, e.to_string())
            }
            e @ PartitionError::NotEnoughReplicas { .. } => {
                WireError::new(ErrorCode::NotEnoughReplicas, e.to_string())
            }
            e @ PartitionError::NotEnoughReplicasAfterAppend { .. } => {
                WireError::new(ErrorCode::NotEnoughReplicasAfterAppend, e.to_string())
            }
            PartitionError::Sequence(s) => {
                use crate::partition::producers::SequenceError;
                let code = match s {
                    SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequenceNumber,
                    SequenceError::InvalidEpoch { .. } => ErrorCode::InvalidProducerEpoch,
                    SequenceError::UnknownProducer { .. } => ErrorCode::UnknownProducerId,
                };
                WireError::new(code, s.to_string())
            }
            // Unknown outcome: the records may or may not survive under the new leader.
            e @ PartitionError::LeadershipLost => {
                WireError::new(ErrorCode::RequestTimedOut, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use silt_core::Offset;
    use silt_core::batch::BatchError;

    use super::*;

    #[test]
    fn storage_errors_map_to_their_codes() {
        let code = |e: StorageError| WireError::from(&e).code;
        assert_eq!(
            code(StorageError::InvalidBatch(BatchError::TooShort { len: 1 })),
            ErrorCode::CorruptMessage
        );
        assert_eq!(
            code(StorageError::BatchTooLarge { size: 2, max: 1 }),
            ErrorCode::MessageTooLarge
        );
        assert_eq!(
            code(StorageError::DiskFull { path: PathBuf::from("x") }),
            ErrorCode::StorageError
        );
        assert_eq!(
            code(StorageError::OffsetOutOfRange {
                offset: Offset(9),
                log_start: Offset(0),
                log_end: Offset(1)
            }),
            ErrorCode::OffsetOutOfRange
        );
        assert_eq!(WireError::from(PartitionError::Closed).code, ErrorCode::UnknownTopic);
    }
}
