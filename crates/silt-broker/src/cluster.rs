//! Cluster mode (`peers` set): this broker is a member of the metadata quorum. It registers
//! itself, and keeps its hosted partitions and topic configs in line with the cluster image:
//! opens the replicas placed on it, stamps the image's leader epochs, and deletes partitions of
//! deleted topics. Produce and fetch go to partition leaders; others answer `NOT_LEADER` with a
//! hint. Not yet (next milestones): heartbeats and fencing, ISR replication to followers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use silt_core::LeaderEpoch;
use silt_proto::v1::{self, ErrorCode};
use silt_raft::{ClusterImage, Command, CommandResponse, MetadataNode, NodeConfig, PartitionImage};

use crate::broker::{Shared, StartError};
use crate::config::{BrokerConfig, parse_peers};
use crate::error::WireError;

/// This broker's membership in the metadata quorum.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub node: MetadataNode,
    /// The epoch the quorum gave this broker's registration (0 until registered).
    pub epoch: AtomicU64,
}

impl Cluster {
    pub async fn start(config: &BrokerConfig, peers: &str) -> Result<Cluster, StartError> {
        let peers: BTreeMap<u64, String> = parse_peers(peers)?.into_iter().collect();
        let node =
            MetadataNode::start(NodeConfig::new(config.node_id, config.data_dir.clone(), peers))
                .await
                .map_err(|e| StartError::Quorum(e.to_string()))?;
        Ok(Cluster { node, epoch: AtomicU64::new(0) })
    }

    pub fn image(&self) -> Arc<ClusterImage> {
        self.node.image()
    }
}

/// The partition's image entry, or the error a client gets for it.
pub(crate) fn partition_image(
    image: &ClusterImage,
    topic: &str,
    partition: u32,
) -> Result<PartitionImage, WireError> {
    let t = image
        .topics
        .get(topic)
        .ok_or_else(|| WireError::new(ErrorCode::UnknownTopic, format!("unknown topic {topic}")))?;
    t.partitions.get(partition as usize).cloned().ok_or_else(|| {
        WireError::new(
            ErrorCode::UnknownPartition,
            format!("topic {topic} has no partition {partition}"),
        )
    })
}

/// `NOT_LEADER` with the leader's id and address when this broker does not lead the partition.
pub(crate) fn check_leader(
    image: &ClusterImage,
    me: u64,
    topic: &str,
    partition: u32,
) -> Result<PartitionImage, WireError> {
    let p = partition_image(image, topic, partition)?;
    if p.leader == Some(me) {
        return Ok(p);
    }
    let hint = v1::LeaderHint {
        leader_id: p.leader,
        leader_address: p
            .leader
            .and_then(|l| image.brokers.get(&l))
            .map(|b| b.address.clone())
            .unwrap_or_default(),
        leader_epoch: p.leader_epoch,
    };
    let mut e = WireError::new(
        ErrorCode::NotLeader,
        match p.leader {
            Some(l) => format!("broker {me} does not lead {topic}/{partition}; broker {l} does"),
            None => format!("{topic}/{partition} has no leader"),
        },
    );
    e.leader = Some(hint);
    Err(e)
}

/// Registers this broker, then follows the image until shutdown.
pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.as_ref() else { return };
    let me = shared.config.node_id;
    let register = Command::RegisterBroker {
        id: me,
        address: shared.advertised.clone(),
        rack: shared.config.rack.clone(),
    };
    loop {
        if *shared.stopping.borrow() {
            return;
        }
        match cluster.node.propose(register.clone()).await {
            Ok(CommandResponse::BrokerEpoch(e)) => {
                cluster.epoch.store(e, Ordering::SeqCst);
                tracing::info!(node = me, epoch = e, "registered with the cluster");
                break;
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to registration"),
            Err(e) => {
                tracing::info!(error = %e, "registration pending (the quorum may still be forming)")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut images = cluster.node.subscribe();
    loop {
        let image = images.borrow_and_update().clone();
        reconcile(&shared, &image).await;
        if images.changed().await.is_err() {
            return;
        }
    }
}

/// Makes the hosted partitions and topic configs match `image`.
async fn reconcile(shared: &Shared, image: &ClusterImage) {
    let me = shared.config.node_id;
    for (name, t) in &image.topics {
        let config = shared
            .config
            .topic_defaults
            .topic_config()
            .with_overrides(&t.configs, shared.config.max_request_bytes)
            .unwrap_or_else(|e| {
                tracing::warn!(topic = %name, error = %e, "topic config in the image is invalid here; using defaults");
                shared.config.topic_defaults.topic_config()
            });
        if shared.topic_config(name).is_some_and(|c| c != config)
            && let Err(e) = shared.replicas.set_config(name, &config).await
        {
            tracing::warn!(topic = %name, error = %e, "applying a topic config failed");
        }
        let hosted: Vec<u32> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.replicas.contains(&me))
            .map(|(i, _)| i as u32)
            .collect();
        // Open the replicas before publishing the topic here, so a request that sees the topic
        // finds its partitions.
        if !hosted.is_empty()
            && let Err(e) = shared.replicas.open_topic(name, &hosted, &config).await
        {
            tracing::error!(topic = %name, error = %e, "cannot open hosted partitions");
        }
        for p in hosted {
            let part = &t.partitions[p as usize];
            if part.leader == Some(me)
                && let Some(h) = shared.replicas.partition(name, p)
            {
                h.set_leader_epoch(LeaderEpoch(part.leader_epoch));
            }
        }
        shared.set_topic_config(name, Some(config));
    }
    for name in shared.replicas.topics() {
        if !image.topics.contains_key(&name) {
            shared.replicas.delete_topic(&name).await;
            tracing::info!(topic = %name, "deleted the partitions of a deleted topic");
        }
    }
    for name in shared.topic_names() {
        if !image.topics.contains_key(&name) {
            shared.set_topic_config(&name, None);
        }
    }
}
