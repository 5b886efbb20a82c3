//! Topic and cluster administration over the Kafka listener, answered by the `Admin` service:
//! CreateTopics, DeleteTopics, DescribeCluster, DescribeConfigs and IncrementalAlterConfigs (of
//! topics; Silt's broker settings are its config file, not served here).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use silt_proto::v1::admin_server::Admin;
use silt_proto::v1::{self, ErrorCode};

use super::errors::{kafka_code, kafka_code_i32};
use super::metadata::topic_uuid;
use super::{Kafka, message, str_bytes};

/// Kafka's config resource types.
const TOPIC_RESOURCE: i8 = 2;
/// Kafka's config sources: an override on the topic, and the default.
const TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;
/// Kafka's IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;

/// Runs an `Admin` call; a gRPC-level failure (a broker whose image is older than its own
/// registration) is Kafka's retriable "not available".
macro_rules! call {
    ($k:expr, $method:ident, $req:expr) => {
        match $k.admin.$method(super::request($req)).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                Err((kafka_code(ErrorCode::BrokerNotAvailable), status.message().to_string()))
            }
        }
    };
}

/// `CreateTopics`: partition count and replication factor -1 take the broker's defaults; manual
/// replica assignments are not supported (Silt places replicas itself).
pub(crate) async fn create_topics(k: &Kafka, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut early: HashMap<usize, (i16, String)> = HashMap::new();
    let mut topics = Vec::new();
    for (i, t) in req.topics.iter().enumerate() {
        let refuse = if !t.assignments.is_empty() {
            Some((
                K::InvalidReplicaAssignment.code(),
                "manual replica assignments are not supported",
            ))
        } else if t.num_partitions == 0 || t.num_partitions < -1 {
            Some((K::InvalidPartitions.code(), "the partition count must be positive (or -1)"))
        } else if t.replication_factor == 0 || t.replication_factor < -1 {
            Some((
                K::InvalidReplicationFactor.code(),
                "the replication factor must be positive (or -1)",
            ))
        } else {
            None
        };
        if let Some((code, why)) = refuse {
            early.insert(i, (code, why.to_string()));
            continue;
        }
        topics.push(v1::NewTopic {
            name: t.name.0.to_string(),
            partitions: u32::try_from(t.num_partitions).unwrap_or(0),
            replication_factor: u32::try_from(t.replication_factor).unwrap_or(0),
            configs: t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect(),
        });
    }
    let answered = if topics.is_empty() {
        Ok(v1::CreateTopicsResponse::default())
    } else {
        call!(
            k,
            create_topics,
            v1::CreateTopicsRequest { topics, validate_only: req.validate_only }
        )
    };
    let mut results: HashMap<String, (i16, String)> = match answered {
        Ok(r) => r
            .topics
            .into_iter()
            .map(|t| (t.name, (kafka_code_i32(t.error_code), t.error_message)))
            .collect(),
        Err(e) => req.topics.iter().map(|t| (t.name.0.to_string(), e.clone())).collect(),
    };
    let image = k.shared.cluster.image();
    let out = req
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (code, why) = early
                .remove(&i)
                .or_else(|| results.remove(t.name.0.as_str()))
                .unwrap_or((K::UnknownServerError.code(), "no answer for this topic".into()));
            let mut r = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(message(why))
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            if code == 0
                && let Some(made) = image.topics.get(t.name.0.as_str())
            {
                r.topic_id = topic_uuid(made);
                r.num_partitions = i32::try_from(made.partitions.len()).unwrap_or(-1);
                r.replication_factor = made
                    .partitions
                    .first()
                    .and_then(|p| i16::try_from(p.replicas.len()).ok())
                    .unwrap_or(-1);
            }
            r
        })
        .collect();
    CreateTopicsResponse::default().with_topics(out)
}

/// `DeleteTopics`: by name (v1-v5) or by name or topic id (v6).
pub(crate) async fn delete_topics(
    k: &Kafka,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let image = k.shared.cluster.image();
    // (name if known, id as asked)
    let asked: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (Some(n.0.to_string()), t.topic_id),
                None => {
                    let name = image
                        .topics
                        .iter()
                        .find(|(_, topic)| topic_uuid(topic) == t.topic_id)
                        .map(|(n, _)| n.clone());
                    (name, t.topic_id)
                }
            })
            .collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let names: Vec<String> = asked.iter().filter_map(|(n, _)| n.clone()).collect();
    let answered = if names.is_empty() {
        Ok(v1::DeleteTopicsResponse::default())
    } else {
        call!(k, delete_topics, v1::DeleteTopicsRequest { topics: names })
    };
    let mut results: HashMap<String, (i16, String)> = match answered {
        Ok(r) => r
            .topics
            .into_iter()
            .map(|t| (t.name, (kafka_code_i32(t.error_code), t.error_message)))
            .collect(),
        Err(e) => asked.iter().filter_map(|(n, _)| Some((n.clone()?, e.clone()))).collect(),
    };
    let responses = asked
        .into_iter()
        .map(|(name, id)| {
            let (code, why) = match &name {
                Some(n) => results
                    .remove(n)
                    .unwrap_or((K::UnknownServerError.code(), "no answer for this topic".into())),
                None => (K::UnknownTopicId.code(), format!("no topic has id {id}")),
            };
            DeletableTopicResult::default()
                .with_name(name.map(|n| TopicName(str_bytes(n))))
                .with_topic_id(id)
                .with_error_code(code)
                .with_error_message(message(why))
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// `DescribeCluster`: the brokers with a Kafka listener, the controller (the metadata quorum's
/// leader) and the cluster id.
pub(crate) fn describe_cluster(k: &Kafka, req: &DescribeClusterRequest) -> DescribeClusterResponse {
    let image = k.shared.cluster.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| req.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            let (host, port) = super::metadata::kafka_endpoint(&b.kafka_address)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(i32::try_from(b.id).ok()?))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    let controller = k.shared.cluster.node.leader().and_then(|id| i32::try_from(id).ok());
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(StrBytes::from_static_str(crate::service::metadata::QUORUM_CLUSTER_ID))
        .with_controller_id(BrokerId(controller.unwrap_or(-1)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}

/// `DescribeConfigs` of topics: every key with its effective value; a key the topic sets itself
/// is a topic override, the rest defaults.
pub(crate) async fn describe_configs(
    k: &Kafka,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let answer = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if r.resource_type != TOPIC_RESOURCE {
            results.push(
                answer
                    .with_error_code(K::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("only topic configs are served"))),
            );
            continue;
        }
        let topic = r.resource_name.to_string();
        let described =
            call!(k, describe_topics, v1::DescribeTopicsRequest { topics: vec![topic.clone()] });
        let t = match described.map(|d| d.topics.into_iter().next()) {
            Ok(Some(t)) if t.error_code == 0 => t,
            Ok(Some(t)) => {
                results.push(
                    answer
                        .with_error_code(kafka_code_i32(t.error_code))
                        .with_error_message(message(t.error_message)),
                );
                continue;
            }
            Ok(None) => {
                results.push(answer.with_error_code(K::UnknownTopicOrPartition.code()));
                continue;
            }
            Err((code, why)) => {
                results.push(answer.with_error_code(code).with_error_message(message(why)));
                continue;
            }
        };
        let overrides: BTreeMap<String, String> = k
            .shared
            .cluster
            .image()
            .topics
            .get(&topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let keys =
            r.configuration_keys.map(|ks| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        let configs = t
            .configs
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .filter(|(name, _)| keys.as_ref().is_none_or(|ks| ks.contains(name)))
            .map(|(name, value)| {
                let source =
                    if overrides.contains_key(&name) { TOPIC_CONFIG } else { DEFAULT_CONFIG };
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_config_source(source)
            })
            .collect();
        results.push(answer.with_configs(configs));
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// `IncrementalAlterConfigs` of topics: SET and DELETE (Silt has no list-valued topic configs for
/// APPEND and SUBTRACT). `validate_only` is not supported: the change is refused, not applied.
pub(crate) async fn incremental_alter_configs(
    k: &Kafka,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let answer = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let refuse = |why: &str| {
            answer
                .clone()
                .with_error_code(K::InvalidRequest.code())
                .with_error_message(Some(str_bytes(why)))
        };
        if r.resource_type != TOPIC_RESOURCE {
            responses.push(refuse("only topic configs can be altered"));
            continue;
        }
        if req.validate_only {
            responses.push(refuse("validate_only is not supported; nothing was changed"));
            continue;
        }
        let mut alter = v1::AlterTopicConfigRequest {
            topic: r.resource_name.to_string(),
            ..Default::default()
        };
        let mut bad = None;
        for c in &r.configs {
            match (c.config_operation, &c.value) {
                (SET, Some(v)) => {
                    alter.set.insert(c.name.to_string(), v.to_string());
                }
                (DELETE, _) => alter.delete.push(c.name.to_string()),
                (SET, None) => bad = Some(format!("{}: SET without a value", c.name)),
                (op, _) => bad = Some(format!("{}: operation {op} is not supported", c.name)),
            }
        }
        if let Some(why) = bad {
            responses.push(refuse(&why));
            continue;
        }
        responses.push(match call!(k, alter_topic_config, alter) {
            Ok(resp) => {
                let result = resp.result.unwrap_or_default();
                answer
                    .with_error_code(kafka_code_i32(result.error_code))
                    .with_error_message(message(result.error_message))
            }
            Err((code, why)) => answer.with_error_code(code).with_error_message(message(why)),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
