//! The answer to a request of an API or version this listener does not serve (so does not
//! advertise): that API's response at the requested version with `UNSUPPORTED_VERSION` (35) —
//! in its top-level error code, or, for responses that have none, in every entry the request
//! named (Produce, ListOffsets, OffsetCommit, DescribeGroups) — and a log line; the connection
//! stays open. Only a request the protocol codec cannot encode an answer for (an API key it does
//! not know, or a version outside the schema's range) still closes the connection: there is no
//! response of a known shape to send.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::{UNSUPPORTED_VERSION, respond};

/// Responses with a top-level error code: their default with that code set.
macro_rules! with_error_code {
    ($key:expr, $version:expr, $cid:expr, { $($api:ident => $resp:ty),* $(,)? }) => {
        match $key {
            $(ApiKey::$api => {
                let body = <$resp>::default().with_error_code(UNSUPPORTED_VERSION);
                return respond($key, $version, $cid, &body);
            })*
            _ => {}
        }
    };
}

/// Responses whose errors are per entry and that echo nothing Silt could name: their default.
macro_rules! empty {
    ($key:expr, $version:expr, $cid:expr, { $($api:ident => $resp:ty),* $(,)? }) => {
        match $key {
            $(ApiKey::$api => return respond($key, $version, $cid, &<$resp>::default()),)*
            _ => {}
        }
    };
}

/// Why a request body did not decode.
fn bad(key: ApiKey, version: i16, e: impl std::fmt::Display) -> String {
    format!("{key:?} v{version}: {e}")
}

/// The answer frame, or `Err` when there is no shape to answer in (the connection closes).
pub(super) fn answer(
    key: ApiKey,
    version: i16,
    cid: i32,
    mut body: Bytes,
) -> Result<Bytes, String> {
    let range = key.valid_versions();
    if version < range.min || version > range.max {
        return Err(format!("{key:?} v{version} is outside its schema: no answer can be encoded"));
    }
    tracing::warn!(api = ?key, version, "Kafka API not served by this listener: UNSUPPORTED_VERSION");
    match key {
        ApiKey::Produce => {
            let req =
                ProduceRequest::decode(&mut body, version).map_err(|e| bad(key, version, e))?;
            let topics = req
                .topic_data
                .into_iter()
                .map(|t| {
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|p| {
                                    PartitionProduceResponse::default()
                                        .with_index(p.index)
                                        .with_error_code(UNSUPPORTED_VERSION)
                                        .with_base_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            return respond(key, version, cid, &ProduceResponse::default().with_responses(topics));
        }
        ApiKey::ListOffsets => {
            let req =
                ListOffsetsRequest::decode(&mut body, version).map_err(|e| bad(key, version, e))?;
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(UNSUPPORTED_VERSION)
                            })
                            .collect(),
                    )
                })
                .collect();
            return respond(key, version, cid, &ListOffsetsResponse::default().with_topics(topics));
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::decode(&mut body, version)
                .map_err(|e| bad(key, version, e))?;
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(UNSUPPORTED_VERSION)
                                })
                                .collect(),
                        )
                })
                .collect();
            return respond(
                key,
                version,
                cid,
                &OffsetCommitResponse::default().with_topics(topics),
            );
        }
        ApiKey::DescribeGroups => {
            let req = DescribeGroupsRequest::decode(&mut body, version)
                .map_err(|e| bad(key, version, e))?;
            let groups = req
                .groups
                .into_iter()
                .map(|g| {
                    DescribedGroup::default().with_group_id(g).with_error_code(UNSUPPORTED_VERSION)
                })
                .collect();
            return respond(
                key,
                version,
                cid,
                &DescribeGroupsResponse::default().with_groups(groups),
            );
        }
        _ => {}
    }
    with_error_code!(key, version, cid, {
        Fetch => FetchResponse,
        Metadata => MetadataResponse,
        OffsetFetch => OffsetFetchResponse,
        FindCoordinator => FindCoordinatorResponse,
        JoinGroup => JoinGroupResponse,
        Heartbeat => HeartbeatResponse,
        LeaveGroup => LeaveGroupResponse,
        SyncGroup => SyncGroupResponse,
        ListGroups => ListGroupsResponse,
        SaslHandshake => SaslHandshakeResponse,
        SaslAuthenticate => SaslAuthenticateResponse,
        InitProducerId => InitProducerIdResponse,
        DescribeCluster => DescribeClusterResponse,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        AddPartitionsToTxn => AddPartitionsToTxnResponse,
        EndTxn => EndTxnResponse,
        DescribeAcls => DescribeAclsResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        ElectLeaders => ElectLeadersResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        ListTransactions => ListTransactionsResponse,
        OffsetDelete => OffsetDeleteResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        UpdateFeatures => UpdateFeaturesResponse,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
        PushTelemetry => PushTelemetryResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        ShareFetch => ShareFetchResponse,
        ShareAcknowledge => ShareAcknowledgeResponse,
        DescribeQuorum => DescribeQuorumResponse,
        AllocateProducerIds => AllocateProducerIdsResponse,
        BrokerRegistration => BrokerRegistrationResponse,
        BrokerHeartbeat => BrokerHeartbeatResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        AlterPartition => AlterPartitionResponse,
        Envelope => EnvelopeResponse,
        Vote => VoteResponse,
        BeginQuorumEpoch => BeginQuorumEpochResponse,
        EndQuorumEpoch => EndQuorumEpochResponse,
        FetchSnapshot => FetchSnapshotResponse,
    });
    empty!(key, version, cid, {
        CreateTopics => CreateTopicsResponse,
        DeleteTopics => DeleteTopicsResponse,
        DeleteGroups => DeleteGroupsResponse,
        DescribeConfigs => DescribeConfigsResponse,
        IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
        AlterConfigs => AlterConfigsResponse,
        CreatePartitions => CreatePartitionsResponse,
        DeleteRecords => DeleteRecordsResponse,
        OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
        CreateAcls => CreateAclsResponse,
        DeleteAcls => DeleteAclsResponse,
        TxnOffsetCommit => TxnOffsetCommitResponse,
        WriteTxnMarkers => WriteTxnMarkersResponse,
        DescribeProducers => DescribeProducersResponse,
        DescribeTransactions => DescribeTransactionsResponse,
        DescribeTopicPartitions => DescribeTopicPartitionsResponse,
        ConsumerGroupDescribe => ConsumerGroupDescribeResponse,
        AlterClientQuotas => AlterClientQuotasResponse,
        AlterUserScramCredentials => AlterUserScramCredentialsResponse,
        AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
    });
    Err(format!("{key:?} v{version}: no answer of that API's shape is known here"))
}
