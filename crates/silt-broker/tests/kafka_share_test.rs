//! Share groups over the Kafka listener (KIP-932 v1, issue 20): a member joins with
//! ShareGroupHeartbeat, acquires records with ShareFetch (record batches a Kafka client decodes,
//! acquired ranges with delivery counts), releases and accepts them with ShareAcknowledge and
//! piggybacked acknowledgements; an acknowledgement of a record not held is refused; the state is
//! the same one gRPC members and `silt share-group describe` see.

mod common;

use common::kafka::{call, kafka_broker};
use common::{TestBroker, batch, produce};
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareFetchResponse, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use silt_proto::v1::{self, ErrorCode};
use tokio::net::TcpStream;

const MEMBER: &str = "kafka-share-member-1";

fn group() -> Option<GroupId> {
    Some(GroupId(StrBytes::from_static_str("kq")))
}

/// One ShareFetch of partition 0 with `acks` ((first, last, types)); the records' (offset,
/// value), the acquired ranges (first, last, count) and the acknowledgement's error code.
async fn share_fetch(
    sock: &mut TcpStream,
    topic: uuid::Uuid,
    epoch: i32,
    acks: Vec<(i64, i64, Vec<i8>)>,
) -> (Vec<(i64, String)>, Vec<(i64, i64, i16)>, i16) {
    let req = ShareFetchRequest::default()
        .with_group_id(group())
        .with_member_id(Some(StrBytes::from_static_str(MEMBER)))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(500)
        .with_max_records(100)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default().with_topic_id(topic).with_partitions(vec![
            FetchPartition::default().with_partition_index(0).with_acknowledgement_batches(
                acks.into_iter()
                    .map(|(f, l, t)| {
                        AcknowledgementBatch::default()
                            .with_first_offset(f)
                            .with_last_offset(l)
                            .with_acknowledge_types(t)
                    })
                    .collect(),
            ),
        ])]);
    let mut body = call(sock, ApiKey::ShareFetch, 1, 31, &req).await.unwrap();
    let r = ShareFetchResponse::decode(&mut body, 1).unwrap();
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let mut records = Vec::new();
    let mut acquired = Vec::new();
    let mut ack_code = 0;
    for t in r.responses {
        for p in t.partitions {
            ack_code = p.acknowledge_error_code;
            acquired.extend(
                p.acquired_records
                    .iter()
                    .map(|a| (a.first_offset, a.last_offset, a.delivery_count)),
            );
            if let Some(mut data) = p.records {
                // Decoded by the Kafka client library, not by Silt.
                for b in RecordBatchDecoder::decode_all(&mut data).unwrap() {
                    for rec in b.records {
                        let v = String::from_utf8(rec.value.unwrap().to_vec()).unwrap();
                        records.push((rec.offset, v));
                    }
                }
            }
        }
    }
    (records, acquired, ack_code)
}

async fn grpc_describe(b: &TestBroker) -> v1::DescribeShareGroupResponse {
    let mut s = v1::share_client::ShareClient::connect(format!("http://{}", b.addr)).await.unwrap();
    s.describe_share_group(v1::DescribeShareGroupRequest { group: "kq".into() })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_share_consumer_acquires_releases_and_accepts_records() {
    let (b, kafka) = kafka_broker().await;
    assert_eq!(b.create_topic("jobs", 1, &[]).await.error_code(), ErrorCode::None);
    let mut sock = TcpStream::connect(&kafka).await.unwrap();

    // Join (the coordinator's topic is created on first use: retry while it is coming up).
    let hb = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("kq")))
        .with_member_id(StrBytes::from_static_str(MEMBER))
        .with_member_epoch(0)
        .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("jobs"))]));
    let mut joined = None;
    for attempt in 0..100 {
        let mut body = call(&mut sock, ApiKey::ShareGroupHeartbeat, 1, attempt, &hb).await.unwrap();
        let r = ShareGroupHeartbeatResponse::decode(&mut body, 1).unwrap();
        if r.error_code == 0 {
            joined = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = joined.expect("joined");
    assert_eq!(r.member_id.as_deref(), Some(MEMBER), "the client's own id is kept");
    let assignment = r.assignment.unwrap().topic_partitions;
    assert_eq!(assignment.len(), 1);
    assert_eq!(assignment[0].partitions, vec![0]);
    let topic = assignment[0].topic_id;

    // The first fetch starts the group at the end of the partition (latest); then records come.
    let (none, _, _) = share_fetch(&mut sock, topic, 0, vec![]).await;
    assert!(none.is_empty());
    let mut data = b.data().await;
    let p = produce(&mut data, "jobs", 0, v1::Acks::All, batch("job", 10, 1)).await;
    assert_eq!(p.error_code(), ErrorCode::None);
    let (records, acquired, _) = share_fetch(&mut sock, topic, 1, vec![]).await;
    assert_eq!(records.len(), 10);
    assert_eq!(records[3], (3, "job-3".to_string()));
    assert_eq!(acquired, vec![(0, 9, 1)]);

    // Accept 0-4, release 5-9 (one type per offset), in one ShareAcknowledge.
    let types: Vec<i8> = (0..10).map(|o| if o < 5 { 1 } else { 2 }).collect();
    let ack = ShareAcknowledgeRequest::default()
        .with_group_id(group())
        .with_member_id(Some(StrBytes::from_static_str(MEMBER)))
        .with_share_session_epoch(2)
        .with_topics(vec![AcknowledgeTopic::default().with_topic_id(topic).with_partitions(vec![
            AcknowledgePartition::default().with_partition_index(0).with_acknowledgement_batches(
                vec![
                    AckBatch::default()
                        .with_first_offset(0)
                        .with_last_offset(9)
                        .with_acknowledge_types(types),
                ],
            ),
        ])]);
    let mut body = call(&mut sock, ApiKey::ShareAcknowledge, 1, 40, &ack).await.unwrap();
    let r = ShareAcknowledgeResponse::decode(&mut body, 1).unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);

    // The released ones come back, delivered a second time; accepting them again with the next
    // fetch (piggybacked) finishes the partition; a second accept of offset 3 is refused.
    let (again, acquired, _) = share_fetch(&mut sock, topic, 3, vec![]).await;
    assert_eq!(again.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
    assert_eq!(acquired, vec![(5, 9, 2)]);
    let (_, _, code) = share_fetch(&mut sock, topic, 4, vec![(5, 9, vec![1])]).await;
    assert_eq!(code, 0);
    let (_, _, code) = share_fetch(&mut sock, topic, 5, vec![(3, 3, vec![1])]).await;
    assert_eq!(code, K::InvalidRecordState.code());

    let d = grpc_describe(&b).await;
    assert_eq!(d.partitions[0].start_offset, 10, "{d:?}");
    assert_eq!(d.redeliveries, 5);
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, MEMBER);

    // Leaving ends the membership.
    let leave = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("kq")))
        .with_member_id(StrBytes::from_static_str(MEMBER))
        .with_member_epoch(-1);
    let mut body = call(&mut sock, ApiKey::ShareGroupHeartbeat, 1, 50, &leave).await.unwrap();
    assert_eq!(ShareGroupHeartbeatResponse::decode(&mut body, 1).unwrap().error_code, 0);
    assert!(grpc_describe(&b).await.members.is_empty());
}
