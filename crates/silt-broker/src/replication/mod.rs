//! ISR replication between brokers (cluster mode): the leader's `Replication` service, the
//! follower's fetchers, and the leader's ISR upkeep (shrink a follower that stopped catching up,
//! expand one that reached the HW) through `AlterPartition` on the controller.

mod fetcher;
mod service;

use std::sync::Arc;
use std::time::Duration;

use silt_raft::{Command, CommandResponse};

pub(crate) use fetcher::{Fetchers, MAX_REPLICATION_MESSAGE_BYTES};
pub(crate) use service::ReplicationService;

use crate::broker::Shared;
use crate::partition::IsrAnswer;

/// Every so often, asks each partition this broker leads whether its ISR should change, and
/// proposes the change with the leader and partition epochs it saw (the controller refuses a
/// stale one, which fences a zombie leader). A refusal or an unknown outcome goes back to the
/// partition, whose HW counts the change's new members until the image shows the outcome.
pub(crate) async fn isr_loop(shared: Arc<Shared>) {
    let cluster = &shared.cluster;
    let me = shared.config.node_id;
    let lag = Duration::from_millis(shared.config.replica_lag_time_max_ms);
    let period = (lag / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let image = cluster.image();
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader != Some(me) {
                    continue;
                }
                let Some(h) = shared.replicas.partition(name, i as u32) else { continue };
                let Ok(Some(change)) = h.isr_check(lag).await else { continue };
                let cmd = Command::AlterPartition {
                    topic: name.clone(),
                    partition: i as u32,
                    leader: me,
                    leader_epoch: change.leader_epoch.0,
                    partition_epoch: change.partition_epoch,
                    isr: change.isr.clone(),
                    member_epochs: change.member_epochs.clone(),
                };
                match cluster.node.propose(cmd).await {
                    Ok(CommandResponse::PartitionEpoch(e)) => {
                        let counter = if change.isr.len() < p.isr.len() {
                            &shared.metrics.isr_shrinks
                        } else {
                            &shared.metrics.isr_expands
                        };
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(topic = %name, partition = i, from = ?p.isr, to = ?change.isr, partition_epoch = e, "ISR changed")
                    }
                    Ok(CommandResponse::Rejected(reason)) => {
                        tracing::info!(topic = %name, partition = i, %reason, "ISR change refused");
                        let _ = h.isr_answered(change, IsrAnswer::Refused).await;
                    }
                    Ok(other) => {
                        tracing::warn!(topic = %name, partition = i, ?other, "unexpected answer to an ISR change; proposing it again");
                        let _ = h.isr_answered(change, IsrAnswer::Unknown).await;
                    }
                    Err(e) => {
                        // It may still be applied: its new members keep counting for the HW.
                        tracing::warn!(topic = %name, partition = i, error = %e, "ISR change not committed; proposing it again");
                        let _ = h.isr_answered(change, IsrAnswer::Unknown).await;
                    }
                }
            }
        }
    }
}
