//! `Admin`: create, delete, describe and alter topics, and describe the cluster. Changes are
//! serialized by one lock and persisted in the topic store before partitions open or close.

use std::collections::BTreeMap;
use std::sync::Arc;

use silt_core::TopicName;
use silt_proto::v1::{self, ErrorCode};
use tonic::{Request, Response, Status};

use super::metadata::{CLUSTER_ID, partitions, self_info};
use crate::broker::Shared;
use crate::error::WireError;
use crate::topic_store::{TopicRecord, TopicStoreError};

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(shared: Arc<Shared>) -> AdminService {
        AdminService { shared }
    }
}

fn result(name: String, r: Result<(), WireError>) -> v1::TopicResult {
    match r {
        Ok(()) => v1::TopicResult {
            name,
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
        },
        Err(e) => v1::TopicResult { name, error_code: e.code as i32, error_message: e.message },
    }
}

fn store_error(e: TopicStoreError) -> WireError {
    match e {
        TopicStoreError::Exists(t) => {
            WireError::new(ErrorCode::TopicAlreadyExists, format!("topic {t} already exists"))
        }
        TopicStoreError::Unknown(t) => {
            WireError::new(ErrorCode::UnknownTopic, format!("unknown topic {t}"))
        }
        other => WireError::new(ErrorCode::StorageError, other.to_string()),
    }
}

impl AdminService {
    async fn create(&self, t: v1::NewTopic, validate_only: bool) -> Result<(), WireError> {
        let shared = &self.shared;
        let name = TopicName::new(t.name.clone())
            .map_err(|e| WireError::new(ErrorCode::InvalidTopic, e.to_string()))?;
        if name.is_internal() {
            return Err(WireError::new(
                ErrorCode::InvalidTopic,
                "names starting with \"__\" are reserved for Silt",
            ));
        }
        let d = &shared.config.topic_defaults;
        let partitions = if t.partitions == 0 { d.partitions } else { t.partitions };
        if partitions > MAX_PARTITIONS {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!("{partitions} partitions exceed the limit of {MAX_PARTITIONS}"),
            ));
        }
        let rf =
            if t.replication_factor == 0 { d.replication_factor } else { t.replication_factor };
        if rf != 1 {
            return Err(WireError::new(
                ErrorCode::InvalidReplicationFactor,
                format!("replication factor {rf} needs {rf} brokers; this cluster has 1"),
            ));
        }
        let overrides: BTreeMap<String, String> = t.configs.into_iter().collect();
        let record = TopicRecord {
            name: t.name.clone(),
            id: 0,
            partitions,
            replication_factor: rf,
            overrides,
        };
        let config = shared
            .effective_config(&record)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        let _guard = shared.admin_lock.lock().await;
        if shared.store.get(&t.name).is_some() {
            return Err(store_error(TopicStoreError::Exists(t.name)));
        }
        if validate_only {
            return Ok(());
        }
        shared.store.create(record).map_err(store_error)?;
        if let Err(e) =
            shared.replicas.open_topic(&t.name, &(0..partitions).collect::<Vec<_>>(), &config).await
        {
            let _ = shared.store.delete(&t.name);
            shared.replicas.delete_topic(&t.name).await;
            return Err(WireError::from(&e));
        }
        shared.set_topic_config(&t.name, Some(config));
        tracing::info!(topic = %t.name, partitions, "created topic");
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), WireError> {
        let shared = &self.shared;
        let _guard = shared.admin_lock.lock().await;
        shared.store.delete(name).map_err(store_error)?;
        shared.set_topic_config(name, None);
        shared.replicas.delete_topic(name).await;
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    async fn describe(&self, t: &TopicRecord) -> v1::TopicDescription {
        let shared = &self.shared;
        let config = shared
            .topic_config(&t.name)
            .unwrap_or_else(|| shared.config.topic_defaults.topic_config());
        let handles = shared.replicas.partitions(&t.name).unwrap_or_default();
        let parts = partitions(shared, t.partitions)
            .into_iter()
            .map(|p| {
                let state = handles.get(&p.partition).map(|h| h.state()).unwrap_or_default();
                v1::PartitionDescription {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                    log_start_offset: state.log_start.0 as i64,
                    high_watermark: state.high_watermark.0 as i64,
                }
            })
            .collect();
        v1::TopicDescription {
            name: t.name.clone(),
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            configs: config.to_map().into_iter().collect(),
            partitions: parts,
            replication_factor: t.replication_factor,
        }
    }

    async fn alter(&self, req: v1::AlterTopicConfigRequest) -> Result<(), WireError> {
        let shared = &self.shared;
        let _guard = shared.admin_lock.lock().await;
        let mut t = shared
            .store
            .get(&req.topic)
            .ok_or_else(|| store_error(TopicStoreError::Unknown(req.topic.clone())))?;
        for k in &req.delete {
            if !crate::topic_config::KEYS.contains(&k.as_str()) {
                return Err(WireError::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid topic config {k}: unknown config key"),
                ));
            }
            t.overrides.remove(k);
        }
        t.overrides.extend(req.set);
        let config = shared
            .effective_config(&t)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        shared.store.set_overrides(&t.name, t.overrides.clone()).map_err(store_error)?;
        shared
            .replicas
            .set_config(&t.name, &config)
            .await
            .map_err(|e| WireError::new(ErrorCode::StorageError, e))?;
        shared.set_topic_config(&t.name, Some(config));
        tracing::info!(topic = %t.name, "altered topic config");
        Ok(())
    }
}

#[tonic::async_trait]
impl v1::admin_server::Admin for AdminService {
    async fn create_topics(
        &self,
        req: Request<v1::CreateTopicsRequest>,
    ) -> Result<Response<v1::CreateTopicsResponse>, Status> {
        let req = req.into_inner();
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.clone();
            topics.push(result(name, self.create(t, req.validate_only).await));
        }
        Ok(Response::new(v1::CreateTopicsResponse { topics }))
    }

    async fn delete_topics(
        &self,
        req: Request<v1::DeleteTopicsRequest>,
    ) -> Result<Response<v1::DeleteTopicsResponse>, Status> {
        let mut topics = Vec::new();
        for name in req.into_inner().topics {
            let r = self.delete(&name).await;
            topics.push(result(name, r));
        }
        Ok(Response::new(v1::DeleteTopicsResponse { topics }))
    }

    async fn describe_topics(
        &self,
        req: Request<v1::DescribeTopicsRequest>,
    ) -> Result<Response<v1::DescribeTopicsResponse>, Status> {
        let names = req.into_inner().topics;
        let mut topics = Vec::new();
        if names.is_empty() {
            for t in self.shared.store.list() {
                topics.push(self.describe(&t).await);
            }
        } else {
            for name in names {
                topics.push(match self.shared.store.get(&name) {
                    Some(t) => self.describe(&t).await,
                    None => v1::TopicDescription {
                        error_code: ErrorCode::UnknownTopic as i32,
                        error_message: format!("unknown topic {name}"),
                        name,
                        ..Default::default()
                    },
                });
            }
        }
        Ok(Response::new(v1::DescribeTopicsResponse { topics }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<v1::AlterTopicConfigRequest>,
    ) -> Result<Response<v1::AlterTopicConfigResponse>, Status> {
        let req = req.into_inner();
        let name = req.topic.clone();
        Ok(Response::new(v1::AlterTopicConfigResponse {
            result: Some(result(name, self.alter(req).await)),
        }))
    }

    async fn describe_cluster(
        &self,
        _req: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        Ok(Response::new(v1::DescribeClusterResponse {
            brokers: vec![self_info(&self.shared)],
            controller_id: Some(self.shared.config.node_id),
            raft_term: 0,
            cluster_id: CLUSTER_ID.to_string(),
        }))
    }
}
