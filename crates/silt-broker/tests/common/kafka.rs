//! A broker with a Kafka listener, and one raw Kafka request/response over a socket (the
//! `kafka-protocol` crate encodes and decodes; Silt does not).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use silt_broker::BrokerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TestBroker;

pub async fn kafka_broker() -> (TestBroker, String) {
    let b = TestBroker::start_with(|dir| BrokerConfig {
        kafka_listen: Some("127.0.0.1:0".into()),
        ..BrokerConfig::for_test(dir)
    })
    .await;
    let kafka = b.kafka.clone().expect("a Kafka listener");
    (b, kafka)
}

/// Sends one request and reads its response body (after the response header).
pub async fn call(
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
