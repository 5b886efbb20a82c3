//! The Kafka-protocol listener (issue 16): ApiVersions advertises exactly what is served and
//! answers an unknown version in v0 with UNSUPPORTED_VERSION; Metadata lists the brokers' Kafka
//! addresses and the topics' partitions at old and new versions; Produce, Fetch and ListOffsets
//! pass Kafka record batches through (encoded and decoded by the `kafka-protocol` crate, not by
//! Silt); an oversized frame or an API that is not served closes that connection only.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::kafka::{call, kafka_broker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeAclsRequest, DescribeAclsResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use silt_proto::v1::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_advertises_what_is_served_and_answers_unknown_versions_in_v0() {
    let (_b, kafka) = kafka_broker().await;
    let mut sock = TcpStream::connect(&kafka).await.unwrap();
    let mut body =
        call(&mut sock, ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()).await.unwrap();
    let r = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    assert_eq!(r.error_code, 0);
    let keys: Vec<(i16, i16, i16)> =
        r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
    let want = [
        (ApiKey::Produce, 3, 11),
        (ApiKey::Fetch, 4, 16),
        (ApiKey::ListOffsets, 1, 6),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::OffsetFetch, 1, 9),
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::DescribeGroups, 0, 5),
        (ApiKey::ListGroups, 0, 5),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::InitProducerId, 0, 5),
        (ApiKey::CreateTopics, 2, 7),
        (ApiKey::DeleteTopics, 1, 6),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::DescribeCluster, 0, 1),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::ElectLeaders, 0, 2),
        (ApiKey::AlterPartitionReassignments, 0, 1),
        (ApiKey::ListPartitionReassignments, 0, 0),
        (ApiKey::SaslHandshake, 1, 1),
        (ApiKey::SaslAuthenticate, 0, 2),
        (ApiKey::ConsumerGroupHeartbeat, 1, 1),
        (ApiKey::ShareGroupHeartbeat, 1, 1),
        (ApiKey::ShareFetch, 1, 1),
        (ApiKey::ShareAcknowledge, 1, 1),
    ];
    assert_eq!(keys, want.map(|(k, min, max)| (k as i16, min, max)));

    // A version from the future: v0 layout, UNSUPPORTED_VERSION, the list to retry with.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(99)
        .with_correlation_id(2);
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 2).unwrap();
    buf.put_u8(0); // tagged fields of an unknown body
    sock.write_i32(buf.len() as i32).await.unwrap();
    sock.write_all(&buf).await.unwrap();
    let len = sock.read_i32().await.unwrap();
    let mut resp = BytesMut::zeroed(len as usize);
    sock.read_exact(&mut resp).await.unwrap();
    let mut resp = resp.freeze();
    assert_eq!(resp.get_i32(), 2, "correlation id");
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    assert_eq!(r.api_keys.len(), want.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_kafka_addresses_and_partitions_at_old_and_new_versions() {
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("orders", 3, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();
    for version in [1, 4, 9, 12] {
        let req = MetadataRequest::default().with_topics(None);
        let mut body =
            call(&mut sock, ApiKey::Metadata, version, version.into(), &req).await.unwrap();
        let r = MetadataResponse::decode(&mut body, version).unwrap();
        assert_eq!(r.brokers.len(), 1, "v{version}");
        let broker = &r.brokers[0];
        assert_eq!(format!("{}:{}", broker.host, broker.port), kafka, "the Kafka address");
        assert_eq!(r.controller_id.0, 1);
        let t =
            r.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| &*n.0 == "orders")).unwrap();
        assert_eq!(t.error_code, 0);
        assert_eq!(t.partitions.len(), 3);
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!((p.partition_index, p.leader_id.0, p.error_code), (i as i32, 1, 0));
            assert_eq!(p.replica_nodes.iter().map(|r| r.0).collect::<Vec<_>>(), [1]);
        }
        if version >= 10 {
            assert!(!t.topic_id.is_nil(), "KIP-516 topic ids from v10");
        }
    }
    let named = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("nope")))),
    ]));
    let mut body = call(&mut sock, ApiKey::Metadata, 12, 100, &named).await.unwrap();
    let r = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_its_connection_and_unserved_apis_get_unsupported_version() {
    let (_b, kafka) = kafka_broker().await;
    let mut big = TcpStream::connect(&kafka).await.unwrap();
    big.write_i32(i32::MAX).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), big.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "closed before reading 2 GiB: {closed:?}");

    // An API that is not served, and a served API at a version that is not: answered in that
    // API's shape with UNSUPPORTED_VERSION (top-level, or per entry), and the connection stays.
    let mut sock = TcpStream::connect(&kafka).await.unwrap();
    let mut body =
        call(&mut sock, ApiKey::DescribeAcls, 1, 7, &DescribeAclsRequest::default()).await.unwrap();
    assert_eq!(DescribeAclsResponse::decode(&mut body, 1).unwrap().error_code, 35);
    let req = produce_req("nope", 4, -1, kafka_batch(&["x"], None));
    let mut body = call(&mut sock, ApiKey::Produce, 12, 8, &req).await.unwrap();
    let r = ProduceResponse::decode(&mut body, 12).unwrap();
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.index, p.error_code), (4, 35), "each partition named is answered");
    let body = call(&mut sock, ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default()).await;
    assert!(body.is_ok(), "the connection is still served");
}

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

/// One Kafka RecordBatch v2 of `values`, encoded by the `kafka-protocol` crate.
fn kafka_batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
    kafka_batch_in(values, producer, Compression::None)
}

/// [`kafka_batch`] compressed by the `kafka-protocol` crate with `compression`.
fn kafka_batch_in(
    values: &[&str],
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Bytes {
    let (producer_id, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if sequence < 0 { -1 } else { sequence + i as i32 },
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn produce_req(topic: &'static str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(batch)),
        ]),
    ])
}

async fn produce(
    sock: &mut TcpStream,
    version: i16,
    req: &ProduceRequest,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let mut body = call(sock, ApiKey::Produce, version, 10, req).await.unwrap();
    let r = ProduceResponse::decode(&mut body, version).unwrap();
    r.responses[0].partition_responses[0].clone()
}

/// Fetches one partition from `offset`; the partition's answer and its records (decoded by the
/// `kafka-protocol` crate).
async fn fetch(
    sock: &mut TcpStream,
    version: i16,
    topic: (&'static str, uuid::Uuid),
    offset: i64,
) -> (kafka_protocol::messages::fetch_response::PartitionData, Vec<(i64, String)>) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default().with_topic(name(topic.0)).with_topic_id(topic.1).with_partitions(
                vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(-1)
                        .with_partition_max_bytes(1 << 20),
                ],
            ),
        ]);
    let mut body = call(sock, ApiKey::Fetch, version, 11, &req).await.unwrap();
    let r = FetchResponse::decode(&mut body, version).unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.session_id, 0, "no fetch sessions: every fetch is a full one");
    let p = r.responses[0].partitions[0].clone();
    let mut records = Vec::new();
    let mut data = p.records.clone().unwrap_or_default();
    for set in RecordBatchDecoder::decode_all(&mut data).unwrap() {
        for r in set.records {
            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            records.push((r.offset, v));
        }
    }
    (p, records)
}

async fn list_offset(sock: &mut TcpStream, topic: &'static str, timestamp: i64) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default().with_name(name(topic)).with_partitions(vec![
            ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp),
        ]),
    ]);
    let mut body = call(sock, ApiKey::ListOffsets, 5, 12, &req).await.unwrap();
    let r = ListOffsetsResponse::decode(&mut body, 5).unwrap();
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_and_list_offsets_pass_kafka_batches_through() {
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("events", 1, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();

    let first =
        produce(&mut sock, 9, &produce_req("events", 0, -1, kafka_batch(&["a", "b", "c"], None)))
            .await;
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let second =
        produce(&mut sock, 3, &produce_req("events", 0, 1, kafka_batch(&["d", "e"], None))).await;
    assert_eq!((second.error_code, second.base_offset), (0, 3));

    // acks=0 takes no answer: the next answer on the connection is the next request's.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(99);
    let mut buf = BytesMut::new();
    header.encode(&mut buf, ApiKey::Produce.request_header_version(9)).unwrap();
    produce_req("events", 0, 0, kafka_batch(&["f"], None)).encode(&mut buf, 9).unwrap();
    sock.write_i32(buf.len() as i32).await.unwrap();
    sock.write_all(&buf).await.unwrap();
    call(&mut sock, ApiKey::ApiVersions, 3, 100, &ApiVersionsRequest::default()).await.unwrap();

    // Every record, back through Fetch by name (v11) and by topic id (v13+).
    let mut meta =
        call(&mut sock, ApiKey::Metadata, 12, 13, &MetadataRequest::default().with_topics(None))
            .await
            .unwrap();
    let meta = MetadataResponse::decode(&mut meta, 12).unwrap();
    let id = meta.topics.iter().find(|t| t.name == Some(name("events"))).unwrap().topic_id;
    let want: Vec<(i64, String)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.to_string()))
        .collect();
    let mut records = Vec::new();
    for _ in 0..50 {
        let (p, r) = fetch(&mut sock, 11, ("events", uuid::Uuid::nil()), 0).await;
        assert_eq!(p.error_code, 0);
        records = r;
        if records.len() == want.len() {
            assert_eq!(p.high_watermark, 6);
            break;
        }
    }
    assert_eq!(records, want);
    let (p, records) = fetch(&mut sock, 16, ("", id), 3).await;
    assert_eq!(p.error_code, 0);
    assert_eq!(records.first(), Some(&(3, "d".to_string())), "from the batch holding offset 3");
    let (p, _) = fetch(&mut sock, 13, ("", uuid::Uuid::from_u128(7)), 0).await;
    assert_eq!(p.error_code, 100, "UNKNOWN_TOPIC_ID");
    let (p, _) = fetch(&mut sock, 11, ("events", uuid::Uuid::nil()), 1000).await;
    assert_eq!(p.error_code, 1, "OFFSET_OUT_OF_RANGE");

    assert_eq!(list_offset(&mut sock, "events", -2).await, (0, 0), "earliest");
    assert_eq!(list_offset(&mut sock, "events", -1).await, (0, 6), "latest");
    assert_eq!(
        list_offset(&mut sock, "events", 1_700_000_000_001).await,
        (0, 1),
        "by time: the first record at or after it"
    );
    assert_eq!(list_offset(&mut sock, "nope", -1).await.0, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    // Refusals change nothing: unknown topic, bad acks, a corrupt batch.
    let r = produce(&mut sock, 9, &produce_req("nope", 0, -1, kafka_batch(&["x"], None))).await;
    assert_eq!(r.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let r = produce(&mut sock, 9, &produce_req("events", 0, 2, kafka_batch(&["x"], None))).await;
    assert_eq!(r.error_code, 21, "INVALID_REQUIRED_ACKS");
    let mut corrupt = BytesMut::from(&kafka_batch(&["x"], None)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let r = produce(&mut sock, 9, &produce_req("events", 0, -1, corrupt.freeze())).await;
    assert_eq!(r.error_code, 2, "CORRUPT_MESSAGE");
    assert!(r.error_message.is_some_and(|m| m.contains("CRC")), "v8+ says why");
    assert_eq!(list_offset(&mut sock, "events", -1).await, (0, 6), "nothing appended");

    // An idempotent producer: an id from InitProducerId, then its sequence is checked.
    let mut body = call(
        &mut sock,
        ApiKey::InitProducerId,
        4,
        14,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    )
    .await
    .unwrap();
    let pid = InitProducerIdResponse::decode(&mut body, 4).unwrap();
    assert_eq!(pid.error_code, 0);
    assert!(pid.producer_id.0 >= 0);
    let producer = (pid.producer_id.0, pid.producer_epoch, 0);
    let r = produce(
        &mut sock,
        9,
        &produce_req("events", 0, -1, kafka_batch(&["g", "h"], Some(producer))),
    )
    .await;
    assert_eq!((r.error_code, r.base_offset), (0, 6));
    let gap = (pid.producer_id.0, pid.producer_epoch, 5);
    let r =
        produce(&mut sock, 9, &produce_req("events", 0, -1, kafka_batch(&["i"], Some(gap)))).await;
    assert_eq!(r.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");

    // Transactions are not built yet: a transactional id is refused, not half served.
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(StrBytes::from_static_str("t1").into()));
    let mut body = call(&mut sock, ApiKey::InitProducerId, 4, 16, &txn).await.unwrap();
    assert_eq!(InitProducerIdResponse::decode(&mut body, 4).unwrap().error_code, 42);

    // Fetch sessions are not kept: an incremental fetch of an unknown session is refused.
    let req = FetchRequest::default().with_session_id(5).with_session_epoch(1);
    let mut body = call(&mut sock, ApiKey::Fetch, 11, 15, &req).await.unwrap();
    assert_eq!(
        FetchResponse::decode(&mut body, 11).unwrap().error_code,
        70,
        "FETCH_SESSION_ID_NOT_FOUND"
    );
}

fn group(s: &'static str) -> kafka_protocol::messages::GroupId {
    kafka_protocol::messages::GroupId(StrBytes::from_static_str(s))
}

/// One KIP-848 heartbeat of member `m` (epoch, owned partitions by topic id); returns the new
/// epoch and the assigned partitions.
async fn kafka_heartbeat(
    sock: &mut TcpStream,
    epoch: i32,
    owned: Option<(uuid::Uuid, Vec<i32>)>,
) -> (i16, i32, Vec<i32>) {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group("g"))
        .with_member_id(StrBytes::from_static_str("kafka-member"))
        .with_member_epoch(epoch)
        .with_subscribed_topic_names((epoch == 0).then(|| vec![name("jobs")]))
        .with_topic_partitions(owned.map(|(id, parts)| {
            vec![TopicPartitions::default().with_topic_id(id).with_partitions(parts)]
        }));
    let mut body = call(sock, ApiKey::ConsumerGroupHeartbeat, 1, 20, &req).await.unwrap();
    let r = ConsumerGroupHeartbeatResponse::decode(&mut body, 1).unwrap();
    let mut parts: Vec<i32> = r
        .assignment
        .map(|a| a.topic_partitions.into_iter().flat_map(|t| t.partitions).collect())
        .unwrap_or_default();
    parts.sort_unstable();
    if r.error_code == 0 {
        assert_eq!(r.member_id.as_deref(), Some("kafka-member"), "the client's own id is kept");
    }
    (r.error_code, r.member_epoch, parts)
}

async fn commit(sock: &mut TcpStream, member: &'static str, epoch: i32, partition: i32) -> i16 {
    commit_to(sock, "g", StrBytes::from_static_str(member), epoch, partition).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_member_and_a_grpc_member_share_a_group_and_its_offsets() {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::{
        DeleteGroupsRequest, DeleteGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
        ListGroupsRequest, ListGroupsResponse, OffsetFetchRequest, OffsetFetchResponse,
    };
    use silt_proto::v1;
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("jobs", 2, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();

    // The coordinator, at its Kafka address (old single-key and new batched forms).
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let mut body = call(&mut sock, ApiKey::FindCoordinator, 3, 22, &req).await.unwrap();
    let r = FindCoordinatorResponse::decode(&mut body, 3).unwrap();
    assert_eq!((r.error_code, r.node_id.0), (0, 1));
    assert_eq!(format!("{}:{}", r.host, r.port), kafka);
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![StrBytes::from_static_str("txn")]);
    let mut body = call(&mut sock, ApiKey::FindCoordinator, 4, 23, &req).await.unwrap();
    let r = FindCoordinatorResponse::decode(&mut body, 4).unwrap();
    assert_eq!(r.coordinators[0].error_code, 42, "no transaction coordinators yet");

    // The Kafka member joins alone and gets both partitions.
    let (code, mut epoch, parts) = kafka_heartbeat(&mut sock, 0, None).await;
    assert_eq!((code, parts.as_slice()), (0, &[0, 1][..]));
    let mut meta =
        call(&mut sock, ApiKey::Metadata, 12, 24, &MetadataRequest::default().with_topics(None))
            .await
            .unwrap();
    let meta = MetadataResponse::decode(&mut meta, 12).unwrap();
    let id = meta.topics.iter().find(|t| t.name == Some(name("jobs"))).unwrap().topic_id;
    let mut owned = parts;

    // A gRPC member joins the same group; the Kafka member gives one partition up.
    let mut groups =
        v1::groups_client::GroupsClient::connect(format!("http://{}", b.addr)).await.unwrap();
    let mut grpc = v1::GroupHeartbeatRequest {
        group: "g".into(),
        client_id: "grpc".into(),
        subscribed_topics: vec!["jobs".into()],
        ..Default::default()
    };
    let mut grpc_parts = Vec::new();
    for _ in 0..50 {
        let r = groups.group_heartbeat(grpc.clone()).await.unwrap().into_inner();
        assert_eq!(r.error_code, 0, "{}", r.error_message);
        grpc.member_id = r.member_id;
        grpc.member_epoch = r.member_epoch;
        grpc.owned = r.assignment.clone();
        grpc_parts = r.assignment.iter().flat_map(|t| t.partitions.clone()).collect();
        let (code, e, parts) = kafka_heartbeat(&mut sock, epoch, Some((id, owned.clone()))).await;
        assert_eq!(code, 0);
        (epoch, owned) = (e, parts);
        if owned.len() == 1 && grpc_parts.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((owned.len(), grpc_parts.len()), (1, 1), "one partition each");
    assert_ne!(owned[0] as u32, grpc_parts[0]);

    // The Kafka member commits its own partition; a member-less commit is refused while the
    // group has members; the commit is visible over gRPC too.
    assert_eq!(commit(&mut sock, "kafka-member", epoch, owned[0]).await, 0);
    assert_eq!(commit(&mut sock, "", -1, owned[0]).await, 25, "UNKNOWN_MEMBER_ID");
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(group("g")).with_topics(Some(vec![
            OffsetFetchRequestTopics::default()
                .with_name(name("jobs"))
                .with_partition_indexes(vec![0, 1]),
        ])),
    ]);
    let mut body = call(&mut sock, ApiKey::OffsetFetch, 8, 25, &req).await.unwrap();
    let r = OffsetFetchResponse::decode(&mut body, 8).unwrap();
    let committed: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    let want: Vec<(i32, i64)> =
        [0, 1].into_iter().map(|p| (p, if p == owned[0] { 42 } else { -1 })).collect();
    assert_eq!(committed, want);
    let fetched = groups
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "g".into(),
            partitions: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fetched.offsets.iter().map(|o| (o.partition as i32, o.offset)).collect::<Vec<_>>(),
        [(owned[0], 42)]
    );

    // Listed as a consumer group; not deleted while it has members, deleted once both left.
    let mut body =
        call(&mut sock, ApiKey::ListGroups, 5, 26, &ListGroupsRequest::default()).await.unwrap();
    let r = ListGroupsResponse::decode(&mut body, 5).unwrap();
    let g = r.groups.iter().find(|g| &*g.group_id.0 == "g").expect("listed");
    assert_eq!((&*g.group_type, &*g.protocol_type), ("consumer", "consumer"));
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group("g")]);
    let mut body = call(&mut sock, ApiKey::DeleteGroups, 2, 27, &delete).await.unwrap();
    assert_eq!(
        DeleteGroupsResponse::decode(&mut body, 2).unwrap().results[0].error_code,
        68,
        "NON_EMPTY_GROUP"
    );
    let (code, left, _) = kafka_heartbeat(&mut sock, -1, None).await;
    assert_eq!((code, left), (0, -1), "member epoch -1 leaves");
    let r = groups
        .leave_group(v1::LeaveGroupRequest {
            group: "g".into(),
            member_id: grpc.member_id.clone(),
            instance_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error_code, 0);
    let mut body = call(&mut sock, ApiKey::DeleteGroups, 2, 28, &delete).await.unwrap();
    assert_eq!(DeleteGroupsResponse::decode(&mut body, 2).unwrap().results[0].error_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_over_kafka_creates_deletes_and_refuses_what_silt_does_not_do() {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{
        BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
        DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    };
    let (_b, kafka) = kafka_broker().await;
    let mut sock = TcpStream::connect(&kafka).await.unwrap();
    let topic = |n: &'static str| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    };
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        topic("made").with_configs(vec![
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("min.insync.replicas"))
                .with_value(Some(StrBytes::from_static_str("1"))),
        ]),
        topic("placed").with_assignments(vec![
            CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(1)]),
        ]),
        topic("bad").with_configs(vec![
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("no.such.key"))
                .with_value(Some(StrBytes::from_static_str("1"))),
        ]),
    ]);
    let mut body = call(&mut sock, ApiKey::CreateTopics, 7, 30, &req).await.unwrap();
    let r = CreateTopicsResponse::decode(&mut body, 7).unwrap();
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, 39, 40], "created; INVALID_REPLICA_ASSIGNMENT; INVALID_CONFIG");
    assert!(!r.topics[0].topic_id.is_nil() && r.topics[0].num_partitions > 0);
    let id = r.topics[0].topic_id;

    // Topic configs: the override is a topic config, the rest defaults; brokers' are not served.
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("made"))
            .with_configuration_keys(None),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1")),
    ]);
    let mut body = call(&mut sock, ApiKey::DescribeConfigs, 4, 31, &req).await.unwrap();
    let r = DescribeConfigsResponse::decode(&mut body, 4).unwrap();
    assert_eq!(r.results[0].error_code, 0);
    let source =
        |key: &str| r.results[0].configs.iter().find(|c| &*c.name == key).map(|c| c.config_source);
    assert_eq!(source("min.insync.replicas"), Some(1), "TOPIC_CONFIG");
    assert_eq!(source("retention.ms"), Some(5), "DEFAULT_CONFIG");
    assert_eq!(r.results[1].error_code, 42);

    // Delete by topic id (v6); an unknown id is UNKNOWN_TOPIC_ID.
    let req = DeleteTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        DeleteTopicState::default().with_topic_id(id),
        DeleteTopicState::default().with_topic_id(uuid::Uuid::from_u128(9)),
    ]);
    let mut body = call(&mut sock, ApiKey::DeleteTopics, 6, 32, &req).await.unwrap();
    let r = DeleteTopicsResponse::decode(&mut body, 6).unwrap();
    let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, 100]);
    assert_eq!(r.responses[0].name, Some(name("made")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_rebalances_over_join_and_sync_and_excludes_the_other_protocol() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        DescribeGroupsRequest, DescribeGroupsResponse, HeartbeatRequest, HeartbeatResponse,
        JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
    };
    use silt_proto::v1;
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("jobs", 2, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();
    let join = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(group("cg"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(member)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"subscription")),
            ])
    };
    // v4+: the first join gets a member id to join with.
    let mut body =
        call(&mut sock, ApiKey::JoinGroup, 9, 40, &join(StrBytes::default())).await.unwrap();
    let r = JoinGroupResponse::decode(&mut body, 9).unwrap();
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = r.member_id.clone();
    let mut body = call(&mut sock, ApiKey::JoinGroup, 9, 41, &join(member.clone())).await.unwrap();
    let r = JoinGroupResponse::decode(&mut body, 9).unwrap();
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(r.leader, member, "alone, it leads");
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(&r.members[0].metadata[..], b"subscription");

    let sync = SyncGroupRequest::default()
        .with_group_id(group("cg"))
        .with_generation_id(1)
        .with_member_id(member.clone())
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"both partitions")),
        ]);
    let mut body = call(&mut sock, ApiKey::SyncGroup, 5, 42, &sync).await.unwrap();
    let r = SyncGroupResponse::decode(&mut body, 5).unwrap();
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"both partitions"[..]));
    let hb = |generation| {
        HeartbeatRequest::default()
            .with_group_id(group("cg"))
            .with_generation_id(generation)
            .with_member_id(member.clone())
    };
    let mut body = call(&mut sock, ApiKey::Heartbeat, 4, 43, &hb(1)).await.unwrap();
    assert_eq!(HeartbeatResponse::decode(&mut body, 4).unwrap().error_code, 0);
    let mut body = call(&mut sock, ApiKey::Heartbeat, 4, 44, &hb(7)).await.unwrap();
    assert_eq!(
        HeartbeatResponse::decode(&mut body, 4).unwrap().error_code,
        22,
        "ILLEGAL_GENERATION"
    );

    // Commits are checked against the generation; Silt's own protocol may not join.
    assert_eq!(commit_to(&mut sock, "cg", member.clone(), 1, 0).await, 0);
    assert_eq!(commit_to(&mut sock, "cg", member.clone(), 0, 0).await, 22, "ILLEGAL_GENERATION");
    let mut groups =
        v1::groups_client::GroupsClient::connect(format!("http://{}", b.addr)).await.unwrap();
    let grpc = v1::GroupHeartbeatRequest {
        group: "cg".into(),
        subscribed_topics: vec!["jobs".into()],
        ..Default::default()
    };
    let r = groups.group_heartbeat(grpc).await.unwrap().into_inner();
    assert_eq!(r.error_code, ErrorCode::InconsistentGroupProtocol as i32);

    let req = DescribeGroupsRequest::default().with_groups(vec![group("cg")]);
    let mut body = call(&mut sock, ApiKey::DescribeGroups, 5, 45, &req).await.unwrap();
    let r = DescribeGroupsResponse::decode(&mut body, 5).unwrap();
    let g = &r.groups[0];
    assert_eq!(
        (&*g.group_state, &*g.protocol_type, &*g.protocol_data),
        ("Stable", "consumer", "range")
    );
    assert_eq!(&g.members[0].member_assignment[..], b"both partitions");

    // And the other way round: a KIP-848 group refuses classic joins.
    let mut other = join(StrBytes::from_static_str("x")).with_group_id(group("g848"));
    other.member_id = StrBytes::default();
    let grpc = v1::GroupHeartbeatRequest {
        group: "g848".into(),
        subscribed_topics: vec!["jobs".into()],
        ..Default::default()
    };
    assert_eq!(groups.group_heartbeat(grpc).await.unwrap().into_inner().error_code, 0);
    let mut body = call(&mut sock, ApiKey::JoinGroup, 9, 46, &other).await.unwrap();
    assert_eq!(
        JoinGroupResponse::decode(&mut body, 9).unwrap().error_code,
        23,
        "INCONSISTENT_GROUP_PROTOCOL"
    );
}

async fn commit_to(
    sock: &mut TcpStream,
    g: &'static str,
    member: StrBytes,
    generation: i32,
    partition: i32,
) -> i16 {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
    let req = OffsetCommitRequest::default()
        .with_group_id(group(g))
        .with_member_id(member)
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![
            OffsetCommitRequestTopic::default().with_name(name("jobs")).with_partitions(vec![
                OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
            ]),
        ]);
    let mut body = call(sock, ApiKey::OffsetCommit, 8, 47, &req).await.unwrap();
    OffsetCommitResponse::decode(&mut body, 8).unwrap().topics[0].partitions[0].error_code
}

/// Batches compressed by another implementation (the `kafka-protocol` crate: its gzip, xerial
/// snappy and zstd) are taken over the Kafka listener, served back to Kafka fetches as they were
/// sent, and read by Silt's Rust consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_compressed_by_a_kafka_client_are_served_and_read_by_the_rust_client() {
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("zipped", 1, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();
    let codecs = [Compression::Gzip, Compression::Snappy, Compression::Zstd];
    let mut want = Vec::new();
    for (i, codec) in codecs.into_iter().enumerate() {
        let values: Vec<String> =
            (0..20).map(|j| format!("{codec:?} record {j} {}", "ab".repeat(j))).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let batch = kafka_batch_in(&refs, None, codec);
        let r = produce(&mut sock, 9, &produce_req("zipped", 0, -1, batch)).await;
        assert_eq!((r.error_code, r.base_offset), (0, i as i64 * 20), "{codec:?}");
        want.extend(values.into_iter().enumerate().map(|(j, v)| ((i * 20 + j) as i64, v)));
    }
    // A Kafka consumer gets them back (decoded by kafka-protocol) ...
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() >= want.len() {
            break;
        }
        let (_, r) = fetch(&mut sock, 12, ("zipped", uuid::Uuid::nil()), got.len() as i64).await;
        got.extend(r);
    }
    assert_eq!(got, want);
    // ... and so does Silt's Rust consumer.
    let client = silt_client::Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let mut c =
        client.consumer(silt_client::ConsumerConfig { max_wait_ms: 100, ..Default::default() });
    let tp = silt_client::TopicPartition { topic: "zipped".into(), partition: 0 };
    c.assign(vec![tp], silt_client::Seek::Earliest).await.unwrap();
    let mut read = Vec::new();
    for _ in 0..50 {
        if read.len() >= want.len() {
            break;
        }
        for r in c.poll().await.unwrap() {
            read.push((r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
        }
    }
    assert_eq!(read, want);
}
