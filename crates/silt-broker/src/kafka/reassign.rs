//! Changing where topics live over the Kafka listener, answered by the `Admin` service (issue
//! 21): CreatePartitions (37), ElectLeaders (43, preferred elections), AlterPartitionReassignments
//! (45) and ListPartitionReassignments (46) — what `kafka-topics --alter --partitions`,
//! `kafka-leader-election` and `kafka-reassign-partitions` send.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    CreatePartitionsRequest, CreatePartitionsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use silt_proto::v1::admin_server::Admin;
use silt_proto::v1::{self, ErrorCode};

use super::errors::{kafka_code, kafka_code_i32};
use super::{Kafka, message, str_bytes};

/// Kafka's election types.
const PREFERRED: i8 = 0;

fn brokers(ids: &[u64]) -> Vec<BrokerId> {
    ids.iter().map(|b| BrokerId(*b as i32)).collect()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Kafka's (code, message) for a gRPC-level failure: the broker is not ready.
fn unavailable(status: &tonic::Status) -> (i16, String) {
    (kafka_code(ErrorCode::BrokerNotAvailable), status.message().to_string())
}

/// `CreatePartitions`: the new total per topic; manual assignments are not supported (Silt
/// places replicas itself, as at creation).
pub(crate) async fn create_partitions(
    k: &Kafka,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let (code, why) = if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            (
                K::InvalidReplicaAssignment.code(),
                "manual replica assignments are not supported".into(),
            )
        } else if t.count <= 0 {
            (K::InvalidPartitions.code(), "the partition count must be positive".to_string())
        } else {
            let call = v1::CreatePartitionsRequest {
                topic: name.clone(),
                count: t.count as u32,
                validate_only: req.validate_only,
            };
            match k.admin.create_partitions(super::request(call)).await {
                Ok(r) => r.into_inner().result.map_or((0, String::new()), |r| {
                    (kafka_code_i32(r.error_code), r.error_message)
                }),
                Err(status) => unavailable(&status),
            }
        };
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(message(why)),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// `ElectLeaders` (preferred only): every partition of the named topics, or of all topics.
pub(crate) async fn elect_leaders(k: &Kafka, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req
        .topic_partitions
        .as_ref()
        .map(|ts| ts.iter().map(|t| (t.topic.0.to_string(), t.partitions.clone())).collect());
    let refuse = |code: i16, why: String| {
        let results = wanted
            .iter()
            .flatten()
            .map(|(t, ps)| {
                ReplicaElectionResult::default().with_topic(topic_name(t)).with_partition_result(
                    ps.iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(code)
                                .with_error_message(message(why.clone()))
                        })
                        .collect(),
                )
            })
            .collect();
        ElectLeadersResponse::default().with_error_code(code).with_replica_election_results(results)
    };
    if req.election_type != PREFERRED {
        return refuse(K::InvalidRequest.code(), "only preferred elections are supported".into());
    }
    // Exactly the named partitions (none named: nothing to do); null: every partition. A
    // negative index names no partition: answered as unknown here.
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    let mut partitions = Vec::new();
    for (t, ps) in wanted.iter().flatten() {
        for p in ps {
            match u32::try_from(*p) {
                Ok(partition) => {
                    partitions.push(v1::ElectPartition { topic: t.clone(), partition })
                }
                Err(_) => by_topic.entry(t.clone()).or_default().push(
                    PartitionResult::default()
                        .with_partition_id(*p)
                        .with_error_code(K::UnknownTopicOrPartition.code())
                        .with_error_message(message(format!("{t} has no partition {p}"))),
                ),
            }
        }
    }
    let results = |by_topic: BTreeMap<String, Vec<PartitionResult>>| {
        let results = by_topic
            .into_iter()
            .map(|(t, ps)| {
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&t))
                    .with_partition_result(ps)
            })
            .collect();
        ElectLeadersResponse::default().with_replica_election_results(results)
    };
    if wanted.is_some() && partitions.is_empty() {
        return results(by_topic);
    }
    let call = v1::ElectLeadersRequest { topics: Vec::new(), partitions };
    let r = match k.admin.elect_leaders(super::request(call)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let (code, why) = unavailable(&status);
            return refuse(code, why);
        }
    };
    if r.error_code != ErrorCode::None as i32 {
        return refuse(kafka_code_i32(r.error_code), r.error_message);
    }
    for e in r.results {
        by_topic.entry(e.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(e.partition as i32)
                .with_error_code(kafka_code_i32(e.error_code))
                .with_error_message(message(e.error_message)),
        );
    }
    results(by_topic)
}

/// `AlterPartitionReassignments`: replicas per partition, or none to cancel its move.
pub(crate) async fn alter_reassignments(
    k: &Kafka,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let image = k.shared.cluster.image();
    let mut moves = Vec::new();
    let mut early: BTreeMap<(String, i32), (i16, String)> = BTreeMap::new();
    for t in &req.topics {
        for p in &t.partitions {
            let topic = t.name.0.to_string();
            let key = (topic.clone(), p.partition_index);
            let replicas: Option<Vec<u64>> = p
                .replicas
                .as_ref()
                .map(|r| r.iter().map(|b| u64::try_from(b.0).unwrap_or(u64::MAX)).collect());
            let current = image
                .topics
                .get(&topic)
                .and_then(|t| t.partitions.get(usize::try_from(p.partition_index).ok()?))
                .map(|p| p.reassignment.as_ref().map_or(p.replicas.len(), |r| r.target.len()));
            if p.partition_index < 0 {
                early.insert(key, (K::UnknownTopicOrPartition.code(), "no such partition".into()));
                continue;
            }
            if let (false, Some(r), Some(n)) =
                (req.allow_replication_factor_change, &replicas, current)
                && r.len() != n
            {
                let why = "the replication factor would change".to_string();
                early.insert(key, (K::InvalidReplicationFactor.code(), why));
                continue;
            }
            moves.push(v1::PartitionReassignment {
                topic,
                partition: p.partition_index as u32,
                cancel: replicas.is_none(),
                replicas: replicas.unwrap_or_default(),
            });
        }
    }
    let call = v1::AlterPartitionReassignmentsRequest {
        reassignments: moves.clone(),
        validate_only: false,
        throttle_bytes_per_sec: 0,
    };
    let answers: BTreeMap<(String, i32), (i16, String)> =
        match k.admin.alter_partition_reassignments(super::request(call)).await {
            Ok(r) => r
                .into_inner()
                .results
                .into_iter()
                .map(|r| {
                    let code = kafka_code_i32(r.error_code);
                    ((r.topic, r.partition as i32), (code, r.error_message))
                })
                .collect(),
            Err(status) => moves
                .iter()
                .map(|m| ((m.topic.clone(), m.partition as i32), unavailable(&status)))
                .collect(),
        };
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let key = (t.name.0.to_string(), p.partition_index);
                    let (code, why) =
                        early.get(&key).or_else(|| answers.get(&key)).cloned().unwrap_or_default();
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(message(why))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change)
        .with_responses(responses)
}

/// `ListPartitionReassignments`: the moves in progress (of the named partitions, or all).
pub(crate) async fn list_reassignments(
    k: &Kafka,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let call = v1::ListPartitionReassignmentsRequest {};
    let r = match k.admin.list_partition_reassignments(super::request(call)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let (code, why) = unavailable(&status);
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message(why));
        }
    };
    if r.error_code != ErrorCode::None as i32 {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(kafka_code_i32(r.error_code))
            .with_error_message(message(r.error_message));
    }
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req
        .topics
        .map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for m in r.reassignments {
        let named = wanted
            .as_ref()
            .is_none_or(|w| w.get(&m.topic).is_some_and(|ps| ps.contains(&(m.partition as i32))));
        if named {
            by_topic.entry(m.topic.clone()).or_default().push(
                OngoingPartitionReassignment::default()
                    .with_partition_index(m.partition as i32)
                    .with_replicas(brokers(&m.replicas))
                    .with_adding_replicas(brokers(&m.adding))
                    .with_removing_replicas(brokers(&m.removing)),
            );
        }
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            OngoingTopicReassignment::default().with_name(topic_name(&t)).with_partitions(ps)
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
