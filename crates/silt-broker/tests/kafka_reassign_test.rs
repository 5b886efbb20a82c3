//! CreatePartitions, ElectLeaders, AlterPartitionReassignments and ListPartitionReassignments
//! over the Kafka listener (issue 21), encoded and decoded by the `kafka-protocol` crate: what
//! `kafka-topics --alter --partitions`, `kafka-leader-election` and `kafka-reassign-partitions`
//! send, answered with Kafka's error codes.

mod common;

use common::kafka::{call, kafka_broker};
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    CreatePartitionsRequest, CreatePartitionsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use silt_proto::v1::ErrorCode;
use tokio::net::TcpStream;

/// The partition count of `topic` as the gRPC admin describes it.
async fn partitions(b: &common::TestBroker, topic: &str) -> usize {
    let req = silt_proto::v1::DescribeTopicsRequest { topics: vec![topic.into()] };
    let r = b.admin().await.describe_topics(req).await.unwrap().into_inner();
    r.topics[0].partitions.len()
}

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

async fn create_partitions(sock: &mut TcpStream, count: i32, validate_only: bool) -> (i16, String) {
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(name("k")).with_count(count)]);
    let mut body = call(sock, ApiKey::CreatePartitions, 3, 1, &req).await.unwrap();
    let r = CreatePartitionsResponse::decode(&mut body, 3).unwrap();
    let t = &r.results[0];
    (t.error_code, t.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

async fn reassign(sock: &mut TcpStream, replicas: Option<Vec<i32>>) -> i16 {
    let partition = ReassignablePartition::default()
        .with_partition_index(0)
        .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()));
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_allow_replication_factor_change(true)
        .with_topics(vec![
            ReassignableTopic::default().with_name(name("k")).with_partitions(vec![partition]),
        ]);
    let mut body = call(sock, ApiKey::AlterPartitionReassignments, 1, 2, &req).await.unwrap();
    let r = AlterPartitionReassignmentsResponse::decode(&mut body, 1).unwrap();
    assert_eq!(r.error_code, 0);
    r.responses[0].partitions[0].error_code
}

#[tokio::test]
async fn partitions_are_added_and_moves_and_elections_answered_over_the_kafka_listener() {
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("k", 1, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();

    // CreatePartitions: validate only changes nothing; fewer is refused; then 1 -> 3.
    assert_eq!(create_partitions(&mut sock, 3, true).await.0, 0);
    assert_eq!(partitions(&b, "k").await, 1);
    let (code, why) = create_partitions(&mut sock, 1, false).await;
    assert_eq!(code, K::InvalidPartitions.code(), "{why}");
    assert!(why.contains("must be larger"), "{why}");
    assert_eq!(create_partitions(&mut sock, 3, false).await.0, 0);
    assert_eq!(partitions(&b, "k").await, 3);

    // AlterPartitionReassignments: an unknown broker, a cancel with nothing moving, a no-op.
    assert_eq!(reassign(&mut sock, Some(vec![1, 9])).await, K::InvalidReplicaAssignment.code());
    assert_eq!(reassign(&mut sock, None).await, K::NoReassignmentInProgress.code());
    assert_eq!(reassign(&mut sock, Some(vec![1])).await, 0);

    let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000);
    let mut body = call(&mut sock, ApiKey::ListPartitionReassignments, 0, 3, &req).await.unwrap();
    let r = ListPartitionReassignmentsResponse::decode(&mut body, 0).unwrap();
    assert_eq!((r.error_code, r.topics.len()), (0, 0), "nothing is moving");

    // ElectLeaders: the preferred replica already leads every partition named.
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(10_000)
        .with_topic_partitions(Some(vec![
            TopicPartitions::default().with_topic(name("k")).with_partitions(vec![0, 2, 7, -1]),
        ]));
    let mut body = call(&mut sock, ApiKey::ElectLeaders, 2, 4, &req).await.unwrap();
    let r = ElectLeadersResponse::decode(&mut body, 2).unwrap();
    assert_eq!(r.error_code, 0);
    let parts: Vec<(i32, i16)> = r.replica_election_results[0]
        .partition_result
        .iter()
        .map(|p| (p.partition_id, p.error_code))
        .collect();
    let not_needed = K::ElectionNotNeeded.code();
    let unknown = K::UnknownTopicOrPartition.code();
    assert_eq!(
        parts,
        vec![(-1, unknown), (0, not_needed), (2, not_needed), (7, unknown)],
        "only those named"
    );
    // An empty list names nothing (it does not mean every partition).
    let none = ElectLeadersRequest::default().with_topic_partitions(Some(vec![]));
    let mut body = call(&mut sock, ApiKey::ElectLeaders, 2, 6, &none).await.unwrap();
    let r = ElectLeadersResponse::decode(&mut body, 2).unwrap();
    assert_eq!((r.error_code, r.replica_election_results.len()), (0, 0));
    // Unclean elections are not offered.
    let req = req.with_election_type(1);
    let mut body = call(&mut sock, ApiKey::ElectLeaders, 2, 5, &req).await.unwrap();
    let r = ElectLeadersResponse::decode(&mut body, 2).unwrap();
    assert_eq!(r.error_code, K::InvalidRequest.code());
}
