//! The Kafka-protocol listener (issue 16, first APIs): ApiVersions advertises exactly what is
//! served and answers an unknown version in v0 with UNSUPPORTED_VERSION; Metadata lists the
//! brokers' Kafka addresses and the topics' partitions at old and new versions; an oversized
//! frame or an API that is not served closes that connection only.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::TestBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use silt_broker::BrokerConfig;
use silt_proto::v1::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn kafka_broker() -> (TestBroker, String) {
    let b = TestBroker::start_with(|dir| BrokerConfig {
        kafka_listen: Some("127.0.0.1:0".into()),
        ..BrokerConfig::for_test(dir)
    })
    .await;
    let kafka = b.kafka.clone().expect("a Kafka listener");
    (b, kafka)
}

/// Sends one request and reads its response body (after the response header).
async fn call(
    sock: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> std::io::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("silt-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    sock.write_i32(buf.len() as i32).await?;
    sock.write_all(&buf).await?;
    let len = sock.read_i32().await?;
    let mut resp = BytesMut::zeroed(len as usize);
    sock.read_exact(&mut resp).await?;
    let mut resp = resp.freeze();
    let answered =
        if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
    let h = ResponseHeader::decode(&mut resp, answered).unwrap();
    assert_eq!(h.correlation_id, correlation_id);
    Ok(resp)
}

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
    assert_eq!(keys, [(ApiKey::ApiVersions as i16, 0, 4), (ApiKey::Metadata as i16, 0, 12)]);

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
    assert_eq!(r.api_keys.len(), 2);
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
async fn an_oversized_frame_or_an_unserved_api_closes_only_that_connection() {
    let (_b, kafka) = kafka_broker().await;
    let mut big = TcpStream::connect(&kafka).await.unwrap();
    big.write_i32(i32::MAX).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), big.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "closed before reading 2 GiB: {closed:?}");

    let mut produce = TcpStream::connect(&kafka).await.unwrap();
    let r = call(&mut produce, ApiKey::Produce, 9, 7, &ProduceRequest::default()).await;
    assert!(r.is_err(), "an unserved API closes the connection");

    let mut ok = TcpStream::connect(&kafka).await.unwrap();
    let body = call(&mut ok, ApiKey::ApiVersions, 3, 8, &ApiVersionsRequest::default()).await;
    assert!(body.is_ok(), "other connections are served");
}
