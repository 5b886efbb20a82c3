//! Kafka `Metadata` from the cluster image: brokers with a Kafka listener (their
//! `kafka_advertised` addresses), the controller, and each requested topic's partitions with
//! leader, leader epoch, replicas and ISR.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use silt_raft::{AclOperation, ResourceType};

use crate::auth::Access;
use crate::broker::Shared;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's LEADER_NOT_AVAILABLE.
const LEADER_NOT_AVAILABLE: i16 = 5;
/// Kafka's TOPIC_AUTHORIZATION_FAILED.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// Kafka's UNKNOWN_TOPIC_ID.
const UNKNOWN_TOPIC_ID: i16 = 100;

/// A topic asked for by name or (v10+) by id.
enum Wanted {
    Name(String),
    Id(uuid::Uuid),
}

/// A broker's advertised Kafka address as Kafka's (host, port); `None` without a listener.
pub(crate) fn kafka_endpoint(address: &str) -> Option<(StrBytes, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((StrBytes::from_string(host.to_string()), port.parse().ok()?))
}

/// A topic's KIP-516 id as Kafka's UUID.
pub(crate) fn topic_uuid(t: &silt_raft::image::TopicImage) -> uuid::Uuid {
    uuid::Uuid::from_u128(u128::from_str_radix(&t.topic_id(), 16).unwrap_or(0))
}

fn broker_id(id: u64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(i32::MAX))
}

/// The answer to `req` at `version`.
pub(crate) fn answer(
    shared: &Shared,
    access: &Access,
    req: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let may = |topic: &str| access.may(shared, AclOperation::Describe, ResourceType::Topic, topic);
    let image = shared.cluster.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.kafka_address.is_empty())
        .filter_map(|b| {
            let (host, port) = kafka_endpoint(&b.kafka_address)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(broker_id(b.id))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    // v0: an empty list means every topic; v1+: null means every topic. v10+ may name a topic
    // by id instead (name null), as KIP-848 consumers do for their assignment.
    let wanted: Vec<Wanted> = match &req.topics {
        Some(list) if !(version == 0 && list.is_empty()) => list
            .iter()
            .map(|t| match &t.name {
                Some(n) => Wanted::Name(n.0.to_string()),
                None => Wanted::Id(t.topic_id),
            })
            .collect(),
        // Every topic: those the principal may describe (Kafka's rule).
        _ => image.topics.keys().filter(|t| may(t)).cloned().map(Wanted::Name).collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|w| {
            let name = match w {
                Wanted::Name(name) => name,
                Wanted::Id(id) => {
                    let found = image.topics.iter().find(|(_, t)| topic_uuid(t) == id);
                    match found {
                        Some((name, _)) => name.clone(),
                        None => {
                            return MetadataResponseTopic::default()
                                .with_topic_id(id)
                                .with_error_code(UNKNOWN_TOPIC_ID);
                        }
                    }
                }
            };
            let out = MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_is_internal(name.starts_with("__"));
            if !may(&name) {
                return out.with_error_code(TOPIC_AUTHORIZATION_FAILED);
            }
            let Some(t) = image.topics.get(&name) else {
                return out.with_error_code(UNKNOWN_TOPIC_OR_PARTITION);
            };
            let partitions = t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    MetadataResponsePartition::default()
                        .with_error_code(if p.leader.is_some() { 0 } else { LEADER_NOT_AVAILABLE })
                        .with_partition_index(i32::try_from(i).unwrap_or(i32::MAX))
                        .with_leader_id(p.leader.map_or(BrokerId(-1), broker_id))
                        .with_leader_epoch(i32::try_from(p.leader_epoch).unwrap_or(i32::MAX))
                        .with_replica_nodes(p.replicas.iter().map(|r| broker_id(*r)).collect())
                        .with_isr_nodes(p.isr.iter().map(|r| broker_id(*r)).collect())
                })
                .collect();
            out.with_topic_id(topic_uuid(t)).with_partitions(partitions)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str(
            crate::service::metadata::QUORUM_CLUSTER_ID,
        )))
        .with_controller_id(shared.cluster.node.leader().map_or(BrokerId(-1), broker_id))
        .with_topics(topics)
}
