//! `Metadata`, and the cluster view it shares with the admin service: brokers, controller, Raft
//! term and each topic's partitions (leader, epochs, replicas, ISR), from the local copy of the
//! cluster image, so any broker that has caught up answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use silt_proto::v1::{self, ErrorCode};
use tonic::{Request, Response, Status};

use crate::auth::Access;
use crate::broker::Shared;
use silt_raft::AclOperation;

/// The id of a cluster formed by a metadata quorum.
pub(crate) const QUORUM_CLUSTER_ID: &str = "silt";

/// One topic as the view shows it.
#[derive(Debug, Clone)]
pub(crate) struct TopicView {
    pub replication_factor: u32,
    pub partitions: Vec<v1::PartitionMetadata>,
}

/// What this broker knows of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub cluster_id: &'static str,
    pub brokers: Vec<v1::BrokerInfo>,
    pub controller: Option<u64>,
    pub raft_term: u64,
    pub topics: BTreeMap<String, TopicView>,
}

/// Builds the view (see the module doc).
pub(crate) fn view(shared: &Shared) -> View {
    let c = &shared.cluster;
    let image = c.image();
    View {
        cluster_id: QUORUM_CLUSTER_ID,
        brokers: image
            .brokers
            .values()
            .map(|b| v1::BrokerInfo {
                node_id: b.id,
                address: b.address.clone(),
                rack: b.rack.clone(),
                alive: !b.fenced,
                decommissioning: b.decommissioning,
            })
            .collect(),
        controller: c.node.leader(),
        raft_term: c.node.term(),
        topics: image
            .topics
            .iter()
            .map(|(name, t)| {
                let partitions = t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| v1::PartitionMetadata {
                        partition: i as u32,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    })
                    .collect();
                // While a partition moves, its target's size (replicas holds old and new).
                let rf = t.partitions.first().map_or(0, |p| {
                    p.reassignment.as_ref().map_or(p.replicas.len(), |r| r.target.len()) as u32
                });
                (name.clone(), TopicView { replication_factor: rf, partitions })
            })
            .collect(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MetadataService {
    shared: Arc<Shared>,
}

impl MetadataService {
    pub fn new(shared: Arc<Shared>) -> MetadataService {
        MetadataService { shared }
    }
}

#[tonic::async_trait]
impl v1::metadata_server::Metadata for MetadataService {
    async fn get_metadata(
        &self,
        req: Request<v1::MetadataRequest>,
    ) -> Result<Response<v1::MetadataResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        if let Err(e) = self.shared.serving() {
            // Clients move on to another broker; this one's image may be stale.
            return Err(Status::unavailable(e.message));
        }
        let v = view(&self.shared);
        let may_describe = |name: &str| access.topic(&self.shared, AclOperation::Describe, name);
        // Every topic = every topic the principal may describe; a named one it may not is
        // refused (before existence, so a refusal tells nothing about it).
        let names: Vec<String> = if req.topics.is_empty() {
            v.topics.keys().filter(|n| may_describe(n).is_ok()).cloned().collect()
        } else {
            req.topics
        };
        let topics = names
            .into_iter()
            .map(|name| match v.topics.get(&name) {
                _ if may_describe(&name).is_err() => v1::TopicMetadata {
                    name,
                    error_code: ErrorCode::TopicAuthorizationFailed as i32,
                    partitions: vec![],
                },
                Some(t) => v1::TopicMetadata {
                    name,
                    error_code: ErrorCode::None as i32,
                    partitions: t.partitions.clone(),
                },
                None => v1::TopicMetadata {
                    name,
                    error_code: ErrorCode::UnknownTopic as i32,
                    partitions: vec![],
                },
            })
            .collect();
        Ok(Response::new(v1::MetadataResponse {
            brokers: v.brokers,
            controller_id: v.controller,
            cluster_id: v.cluster_id.to_string(),
            topics,
        }))
    }
}
