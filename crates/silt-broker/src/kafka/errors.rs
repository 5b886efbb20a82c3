//! Silt's error codes as Kafka's: one to one where the meaning is the same (`docs/kafka.md`
//! lists the table).

use kafka_protocol::error::ResponseError as K;
use silt_proto::v1::ErrorCode;

/// The Kafka error code for a Silt one (`0` for none).
pub(crate) fn kafka_code(code: ErrorCode) -> i16 {
    use ErrorCode as S;
    let k = match code {
        S::None => return 0,
        S::NotLeader => K::NotLeaderOrFollower,
        S::UnknownTopic | S::UnknownPartition => K::UnknownTopicOrPartition,
        S::OffsetOutOfRange => K::OffsetOutOfRange,
        S::CorruptMessage => K::CorruptMessage,
        S::MessageTooLarge => K::MessageTooLarge,
        S::NotEnoughReplicas => K::NotEnoughReplicas,
        S::NotEnoughReplicasAfterAppend => K::NotEnoughReplicasAfterAppend,
        S::InvalidConfig => K::InvalidConfig,
        S::InvalidTopic => K::InvalidTopicException,
        S::TopicAlreadyExists => K::TopicAlreadyExists,
        S::InvalidPartitions => K::InvalidPartitions,
        S::InvalidReplicationFactor => K::InvalidReplicationFactor,
        S::RequestTimedOut => K::RequestTimedOut,
        S::StorageError => K::KafkaStorageError,
        S::FencedLeaderEpoch => K::FencedLeaderEpoch,
        S::UnknownLeaderEpoch => K::UnknownLeaderEpoch,
        // Silt's meaning is "not yet, retry" (a replica still opening, an image older than this
        // broker's registration); Kafka's BROKER_NOT_AVAILABLE is not retriable, so the nearest
        // retriable code.
        S::BrokerNotAvailable => K::LeaderNotAvailable,
        S::InvalidRequest => K::InvalidRequest,
        S::UnknownServerError => K::UnknownServerError,
        S::StaleBrokerEpoch => K::StaleBrokerEpoch,
        S::InconsistentTopicId => K::InconsistentTopicId,
        S::InvalidReplicaAssignment => K::InvalidReplicaAssignment,
        S::NoReassignmentInProgress => K::NoReassignmentInProgress,
        S::ReassignmentInProgress => K::ReassignmentInProgress,
        S::PreferredLeaderNotAvailable => K::PreferredLeaderNotAvailable,
        S::ElectionNotNeeded => K::ElectionNotNeeded,
        S::TopicAuthorizationFailed => K::TopicAuthorizationFailed,
        S::GroupAuthorizationFailed => K::GroupAuthorizationFailed,
        S::ClusterAuthorizationFailed => K::ClusterAuthorizationFailed,
        S::ResourceNotFound => K::ResourceNotFound,
        S::CoordinatorNotAvailable => K::CoordinatorNotAvailable,
        S::NotCoordinator => K::NotCoordinator,
        S::CoordinatorLoadInProgress => K::CoordinatorLoadInProgress,
        S::UnknownMemberId => K::UnknownMemberId,
        S::FencedMemberEpoch => K::FencedMemberEpoch,
        S::GroupNotEmpty => K::NonEmptyGroup,
        S::GroupIdNotFound => K::GroupIdNotFound,
        S::InvalidGroupId => K::InvalidGroupId,
        S::UnreleasedInstanceId => K::UnreleasedInstanceId,
        S::StaleMemberEpoch => K::StaleMemberEpoch,
        S::InconsistentGroupProtocol => K::InconsistentGroupProtocol,
        S::InvalidRecordState => K::InvalidRecordState,
        S::OutOfOrderSequenceNumber => K::OutOfOrderSequenceNumber,
        S::InvalidProducerEpoch => K::InvalidProducerEpoch,
        S::UnknownProducerId => K::UnknownProducerId,
        S::TransactionalIdAuthorizationFailed => K::TransactionalIdAuthorizationFailed,
        S::ProducerFenced => K::ProducerFenced,
        S::ConcurrentTransactions => K::ConcurrentTransactions,
        S::UnstableOffsetCommit => K::UnstableOffsetCommit,
        S::InvalidTxnState => K::InvalidTxnState,
        S::InvalidTransactionTimeout => K::InvalidTransactionTimeout,
        S::TransactionalIdNotFound => K::TransactionalIdNotFound,
    };
    k.code()
}

/// The Kafka error code for a Silt error code carried as `i32` in a response.
pub(crate) fn kafka_code_i32(code: i32) -> i16 {
    ErrorCode::try_from(code).map_or(K::UnknownServerError.code(), kafka_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_silt_code_maps_and_common_ones_match_kafka_numbers() {
        // Kafka's numbers, from its protocol guide.
        assert_eq!(kafka_code(ErrorCode::None), 0);
        assert_eq!(kafka_code(ErrorCode::NotLeader), 6);
        assert_eq!(kafka_code(ErrorCode::UnknownTopic), 3);
        assert_eq!(kafka_code(ErrorCode::OffsetOutOfRange), 1);
        assert_eq!(kafka_code(ErrorCode::NotEnoughReplicas), 19);
        assert_eq!(kafka_code(ErrorCode::TopicAlreadyExists), 36);
        assert_eq!(kafka_code(ErrorCode::StorageError), 56);
        assert_eq!(kafka_code(ErrorCode::NotCoordinator), 16);
        assert_eq!(kafka_code(ErrorCode::StaleMemberEpoch), 113);
        assert_eq!(kafka_code(ErrorCode::OutOfOrderSequenceNumber), 45);
        assert_eq!(kafka_code_i32(9999), -1);
        for c in 1..200 {
            if let Ok(code) = ErrorCode::try_from(c) {
                assert_ne!(kafka_code(code), 0, "{code:?} maps to no error");
            }
        }
    }
}
