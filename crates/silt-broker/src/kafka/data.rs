//! The data plane over the Kafka listener: `Produce`, `Fetch`, `ListOffsets` and
//! `InitProducerId`, each translated into the `Data` service's own request and answered from its
//! response. Record batches pass through untouched: Silt stores Kafka's RecordBatch v2.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch as FetchLeader, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch as ProduceLeader, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use silt_proto::v1;
use silt_proto::v1::data_server::Data;

use super::Kafka;
use super::errors::{kafka_code, kafka_code_i32};
use crate::service::produce_budget::Reservation;

/// Kafka's "latest" and "earliest" ListOffsets timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// Produce and Fetch each have their own `NodeEndpoint` type, of the same fields.
macro_rules! node_endpoints {
    ($ty:ty, $list:expr) => {
        $list
            .into_iter()
            .map(|(id, host, port, rack)| {
                <$ty>::default()
                    .with_node_id(BrokerId(id))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            })
            .collect()
    };
}

fn name(t: &TopicName) -> String {
    t.0.to_string()
}

/// A Kafka partition index Silt can hold (`None`: negative, which no topic has).
fn partition(index: i32) -> Option<u32> {
    u32::try_from(index).ok()
}

/// A Silt leader hint as Kafka's (leader id, epoch), when there is one.
fn hint(leader: &Option<v1::LeaderHint>) -> Option<(i32, i32)> {
    let h = leader.as_ref()?;
    let id = i32::try_from(h.leader_id?).ok()?;
    Some((id, i32::try_from(h.leader_epoch).unwrap_or(i32::MAX)))
}

pub(crate) async fn produce(
    k: &Kafka,
    req: ProduceRequest,
    version: i16,
    budget: Reservation,
) -> ProduceResponse {
    let refuse = |code: i16| -> ProduceResponse {
        let topics = req
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(code)
                                .with_base_offset(-1)
                        })
                        .collect(),
                )
            })
            .collect();
        ProduceResponse::default().with_responses(topics)
    };
    let acks = match req.acks {
        0 => v1::Acks::None,
        1 => v1::Acks::Leader,
        -1 => v1::Acks::All,
        _ => return refuse(K::InvalidRequiredAcks.code()),
    };
    if req.transactional_id.is_some() {
        // Kafka clients' transactions are not served (docs/transactions.md, "Not built"): an
        // incompatible request for this broker, as Kafka says.
        return refuse(K::InvalidRequest.code());
    }
    // Partitions with a negative index are answered here; the rest go to the Data service.
    let mut out: Vec<TopicProduceResponse> = Vec::with_capacity(req.topic_data.len());
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let mut negative = Vec::new();
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            match partition(p.index) {
                Some(partition) => partitions.push(v1::PartitionProduceData {
                    partition,
                    data: Some(v1::partition_produce_data::Data::RecordBatches(
                        p.records.unwrap_or_default(),
                    )),
                }),
                None => negative.push(
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(K::UnknownTopicOrPartition.code())
                        .with_base_offset(-1),
                ),
            }
        }
        out.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(negative),
        );
        topics.push(v1::TopicProduceData { topic: name(&t.name), partitions });
    }
    let silt = v1::ProduceRequest {
        acks: acks as i32,
        timeout_ms: u32::try_from(req.timeout_ms).unwrap_or(0),
        topics,
        transactional_id: None,
    };
    let mut grpc = super::request(silt);
    grpc.extensions_mut().insert(budget);
    let resp = match k.data.produce(grpc).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            tracing::warn!(%status, "Kafka produce: the Data service refused the request");
            return ProduceResponse::default().with_responses(out);
        }
    };
    let mut leaders = Vec::new();
    for (t, answer) in resp.topics.into_iter().zip(out.iter_mut()) {
        for p in t.partitions {
            let mut r = PartitionProduceResponse::default()
                .with_index(p.partition as i32)
                .with_error_code(kafka_code_i32(p.error_code))
                .with_base_offset(p.base_offset)
                // Topics keep the producer's CreateTime, so no log-append time.
                .with_log_append_time_ms(-1)
                .with_log_start_offset(p.log_start_offset);
            if version >= 8 {
                r.error_message = super::message(p.error_message);
            }
            if let Some((id, epoch)) = hint(&p.leader).filter(|_| version >= 10) {
                r.current_leader =
                    ProduceLeader::default().with_leader_id(BrokerId(id)).with_leader_epoch(epoch);
                leaders.push(id);
            }
            answer.partition_responses.push(r);
        }
    }
    let mut response = ProduceResponse::default().with_responses(out);
    if version >= 10 {
        response.node_endpoints = node_endpoints!(NodeEndpoint, endpoints(k, &leaders));
    }
    response
}

/// The Kafka addresses of brokers `ids` (those with a Kafka listener), once each.
fn endpoints(k: &Kafka, ids: &[i32]) -> Vec<(i32, StrBytes, i32, Option<StrBytes>)> {
    let image = k.shared.cluster.image();
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let b = image.brokers.get(&u64::try_from(id).ok()?)?;
            let (host, port) = super::metadata::kafka_endpoint(&b.kafka_address)?;
            Some((id, host, port, b.rack.clone().map(StrBytes::from_string)))
        })
        .collect()
}

/// Topic names by topic id (Fetch v13+ names topics by id).
pub(super) fn names_by_id(k: &Kafka) -> HashMap<uuid::Uuid, String> {
    let image = k.shared.cluster.image();
    image.topics.iter().map(|(name, t)| (super::metadata::topic_uuid(t), name.clone())).collect()
}

fn fetch_error(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
}

/// `Fetch`. Fetch sessions (KIP-227) are not kept: every request is a full one, and the answer's
/// session id 0 tells the client so.
pub(crate) async fn fetch(k: &Kafka, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(K::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    if req.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(K::InvalidFetchSessionEpoch.code())
            .with_session_id(0);
    }
    let by_id = if version >= 13 { names_by_id(k) } else { HashMap::new() };
    let read_committed = req.isolation_level == 1;
    // Resolve each topic's name; topics named by an unknown id are answered here.
    let mut out: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut positions = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic_name =
            if version >= 13 { by_id.get(&t.topic_id).cloned() } else { Some(name(&t.topic)) };
        let answer =
            FetchableTopicResponse::default().with_topic(t.topic.clone()).with_topic_id(t.topic_id);
        let Some(topic_name) = topic_name else {
            let code = K::UnknownTopicId.code();
            out.push(answer.with_partitions(
                t.partitions.iter().map(|p| fetch_error(p.partition, code)).collect(),
            ));
            continue;
        };
        let mut partitions = Vec::with_capacity(t.partitions.len());
        let mut answers = Vec::new();
        for p in t.partitions {
            let Some(partition) = partition(p.partition) else {
                answers.push(fetch_error(p.partition, K::UnknownTopicOrPartition.code()));
                continue;
            };
            partitions.push(v1::PartitionFetchData {
                partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: u32::try_from(p.partition_max_bytes).unwrap_or(0).max(1),
                current_leader_epoch: u32::try_from(p.current_leader_epoch).ok(),
            });
        }
        positions.push(out.len());
        out.push(answer.with_partitions(answers));
        topics.push(v1::TopicFetchData { topic: topic_name, partitions });
    }
    let silt = v1::FetchRequest {
        max_wait_ms: u32::try_from(req.max_wait_ms).unwrap_or(0),
        min_bytes: u32::try_from(req.min_bytes).unwrap_or(0),
        // Below v3 there is no response limit; 0 means the broker's own.
        max_bytes: if version >= 3 { u32::try_from(req.max_bytes).unwrap_or(0).max(1) } else { 0 },
        decode_records: false,
        topics,
        isolation_level: if read_committed {
            v1::IsolationLevel::ReadCommitted as i32
        } else {
            v1::IsolationLevel::ReadUncommitted as i32
        },
        // Kafka clients skip aborted records themselves and expect the markers.
        report_aborted: true,
    };
    let resp = match k.data.fetch(super::request(silt)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            tracing::warn!(%status, "Kafka fetch: the Data service refused the request");
            return FetchResponse::default().with_responses(out);
        }
    };
    let mut leaders = Vec::new();
    for (t, at) in resp.topics.into_iter().zip(positions) {
        for p in t.partitions {
            let code = kafka_code_i32(p.error_code);
            let mut d = if code != 0 {
                fetch_error(p.partition as i32, code)
            } else {
                PartitionData::default()
                    .with_partition_index(p.partition as i32)
                    .with_high_watermark(p.high_watermark)
                    .with_last_stable_offset(p.last_stable_offset)
                    .with_log_start_offset(p.log_start_offset)
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_aborted_transactions(read_committed.then(|| {
                        p.aborted_transactions
                            .iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect()
                    }))
                    .with_records(Some(p.record_batches))
            };
            if let Some((id, epoch)) = hint(&p.leader).filter(|_| version >= 12) {
                d.current_leader =
                    FetchLeader::default().with_leader_id(BrokerId(id)).with_leader_epoch(epoch);
                leaders.push(id);
            }
            out[at].partitions.push(d);
        }
    }
    let mut response = FetchResponse::default().with_session_id(0).with_responses(out);
    if version >= 16 {
        use kafka_protocol::messages::fetch_response::NodeEndpoint as FetchNode;
        response.node_endpoints = node_endpoints!(FetchNode, endpoints(k, &leaders));
    }
    response
}

/// `ListOffsets`: earliest (-2), latest (-1) and by timestamp. The leader epoch of the found
/// offset is not tracked per offset, so it is answered as unknown (-1), which tells clients to
/// skip epoch validation.
pub(crate) async fn list_offsets(k: &Kafka, req: ListOffsetsRequest) -> ListOffsetsResponse {
    use v1::partition_list_offsets::Spec;
    let mut out: Vec<ListOffsetsTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut answers = Vec::new();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let refused = |code: i16| {
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_offset(-1)
                    .with_timestamp(-1)
                    .with_leader_epoch(-1)
            };
            let Some(partition) = partition(p.partition_index) else {
                answers.push(refused(K::UnknownTopicOrPartition.code()));
                continue;
            };
            let spec = match p.timestamp {
                EARLIEST => Spec::Position(v1::OffsetSpec::Earliest as i32),
                // read_committed's latest is the last stable offset, as in Kafka.
                LATEST if req.isolation_level == 1 => {
                    Spec::Position(v1::OffsetSpec::LastStable as i32)
                }
                LATEST => Spec::Position(v1::OffsetSpec::Latest as i32),
                ts if ts >= 0 => Spec::TimestampMs(ts),
                // -3 (max timestamp, v7+) and the tiered-storage specs are not advertised.
                _ => {
                    answers.push(refused(K::InvalidRequest.code()));
                    continue;
                }
            };
            partitions.push(v1::PartitionListOffsets { partition, spec: Some(spec) });
        }
        out.push(
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(answers),
        );
        topics.push(v1::TopicListOffsets { topic: name(&t.name), partitions });
    }
    let resp = match k.data.list_offsets(super::request(v1::ListOffsetsRequest { topics })).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            tracing::warn!(%status, "Kafka list offsets: the Data service refused the request");
            return ListOffsetsResponse::default().with_topics(out);
        }
    };
    for (t, answer) in resp.topics.into_iter().zip(out.iter_mut()) {
        for p in t.partitions {
            answer.partitions.push(
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition as i32)
                    .with_error_code(kafka_code_i32(p.error_code))
                    .with_offset(p.offset)
                    .with_timestamp(p.timestamp_ms)
                    .with_leader_epoch(-1),
            );
        }
    }
    ListOffsetsResponse::default().with_topics(out)
}

/// `InitProducerId` for idempotent producers: a fresh producer id at epoch 0 (also when the
/// client asks to bump an existing one, which Kafka clients accept). Transactional ids are
/// refused: Kafka clients' transactions are not served (docs/transactions.md, "Not built").
pub(crate) async fn init_producer_id(
    k: &Kafka,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return failed(K::InvalidRequest.code());
    }
    match k
        .data
        .init_producer_id(super::request(v1::InitProducerIdRequest {
            transactional_id: None,
            transaction_timeout_ms: 0,
        }))
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            if r.error_code != 0 {
                return failed(kafka_code_i32(r.error_code));
            }
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(r.producer_id))
                .with_producer_epoch(i16::try_from(r.producer_epoch).unwrap_or(0))
        }
        Err(status) => {
            tracing::warn!(%status, "Kafka InitProducerId: the Data service refused the request");
            failed(kafka_code(v1::ErrorCode::UnknownServerError))
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::RecordBatchDecoder;
    use silt_core::batch::Marker;

    /// Silt's transaction markers are the control batches Kafka clients expect.
    #[test]
    fn kafka_decodes_silt_markers_as_control_records() {
        for commit in [true, false] {
            let m = Marker { commit, producer_id: 42, producer_epoch: 3, coordinator_epoch: 7 };
            let mut buf = BytesMut::from(&m.encode(1_700_000_000_000)[..]);
            let sets = RecordBatchDecoder::decode_all(&mut buf).expect("Kafka's decoder reads it");
            let r = &sets[0].records[0];
            assert!(r.control && r.transactional);
            assert_eq!((r.producer_id, r.producer_epoch), (42, 3));
            let key = r.key.clone().unwrap_or_default();
            assert_eq!(key, Bytes::from(vec![0, 0, 0, u8::from(commit)]), "version 0, type");
        }
    }
}
