//! `Metadata`: brokers and partition leaders, from this broker's view. On a single broker it
//! leads every partition, with leader epoch 0.

use std::sync::Arc;

use silt_proto::v1::{self, ErrorCode};
use tonic::{Request, Response, Status};

use crate::broker::Shared;

/// The single-broker cluster's id (the Raft milestone makes it a real, persisted id).
pub(crate) const CLUSTER_ID: &str = "silt-single-broker";

#[derive(Debug, Clone)]
pub(crate) struct MetadataService {
    shared: Arc<Shared>,
}

impl MetadataService {
    pub fn new(shared: Arc<Shared>) -> MetadataService {
        MetadataService { shared }
    }
}

/// This broker as the cluster's only member.
pub(crate) fn self_info(shared: &Shared) -> v1::BrokerInfo {
    v1::BrokerInfo {
        node_id: shared.config.node_id,
        address: shared.advertised.clone(),
        rack: shared.config.rack.clone(),
        alive: true,
    }
}

/// Leader, epoch, replicas and ISR of each partition of a topic with `n` partitions.
pub(crate) fn partitions(shared: &Shared, n: u32) -> Vec<v1::PartitionMetadata> {
    let me = shared.config.node_id;
    (0..n)
        .map(|p| v1::PartitionMetadata {
            partition: p,
            leader: Some(me),
            leader_epoch: 0,
            replicas: vec![me],
            isr: vec![me],
        })
        .collect()
}

#[tonic::async_trait]
impl v1::metadata_server::Metadata for MetadataService {
    async fn get_metadata(
        &self,
        req: Request<v1::MetadataRequest>,
    ) -> Result<Response<v1::MetadataResponse>, Status> {
        let shared = &self.shared;
        let req = req.into_inner();
        let stored = shared.store.list();
        let topics = if req.topics.is_empty() {
            stored
                .iter()
                .map(|t| v1::TopicMetadata {
                    name: t.name.clone(),
                    error_code: ErrorCode::None as i32,
                    partitions: partitions(shared, t.partitions),
                })
                .collect()
        } else {
            req.topics
                .into_iter()
                .map(|name| match stored.iter().find(|t| t.name == name) {
                    Some(t) => v1::TopicMetadata {
                        name,
                        error_code: ErrorCode::None as i32,
                        partitions: partitions(shared, t.partitions),
                    },
                    None => v1::TopicMetadata {
                        name,
                        error_code: ErrorCode::UnknownTopic as i32,
                        partitions: vec![],
                    },
                })
                .collect()
        };
        Ok(Response::new(v1::MetadataResponse {
            brokers: vec![self_info(shared)],
            controller_id: Some(shared.config.node_id),
            cluster_id: CLUSTER_ID.to_string(),
            topics,
        }))
    }
}
