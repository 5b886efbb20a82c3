//! Leader balance (Kafka's `auto.leader.rebalance.enable`) and the progress of replica moves.
//!
//! Every `leader_imbalance_check_interval_seconds` the controller counts, per broker, the
//! partitions it is the preferred (first) replica of and how many of those another broker leads.
//! Above `leader_imbalance_per_broker_percentage`, it moves leadership back to that broker —
//! only where it is in sync and live, and one partition at a time per broker (each election is
//! committed before the next of the same broker is proposed).
//!
//! Each broker also sums, for the partitions it leads that are being moved, the bytes its new
//! replicas still have to copy (`silt_reassignment_bytes_remaining`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use silt_raft::{ClusterImage, Command, CommandResponse, ElectionOutcome};

use crate::broker::Shared;

/// Per broker: partitions it is preferred for, and how many of them another broker leads.
pub(crate) fn imbalance(image: &ClusterImage) -> BTreeMap<u64, (u64, u64)> {
    let mut out: BTreeMap<u64, (u64, u64)> = image.brokers.keys().map(|b| (*b, (0, 0))).collect();
    for t in image.topics.values() {
        for p in &t.partitions {
            let Some(&preferred) = p.replicas.first() else { continue };
            let e = out.entry(preferred).or_default();
            e.0 += 1;
            if p.leader != Some(preferred) {
                e.1 += 1;
            }
        }
    }
    out
}

/// The partitions to hand back, per broker over the threshold: those it is preferred for, in
/// sync for and live, that another broker leads and that are not being moved.
pub(crate) fn to_rebalance(
    image: &ClusterImage,
    percentage: u64,
) -> BTreeMap<u64, Vec<(String, u32)>> {
    let mut out = BTreeMap::new();
    for (broker, (preferred, not_led)) in imbalance(image) {
        if preferred == 0 || not_led * 100 <= percentage * preferred {
            continue;
        }
        let live = image
            .brokers
            .get(&broker)
            .is_some_and(|b| !b.fenced && !b.shutting_down && !b.decommissioning);
        if !live {
            continue;
        }
        let list: Vec<(String, u32)> = image
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| {
                        p.replicas.first() == Some(&broker)
                            && p.leader != Some(broker)
                            && p.isr.contains(&broker)
                            && p.reassignment.is_none()
                    })
                    .map(move |(i, _)| (name.clone(), i as u32))
            })
            .collect();
        if !list.is_empty() {
            out.insert(broker, list);
        }
    }
    out
}

/// While this broker is the controller: the periodic leader balance check.
pub(crate) async fn leader_balance_loop(shared: Arc<Shared>) {
    let config = &shared.config;
    if !config.auto_leader_rebalance_enable {
        return;
    }
    let cluster = &shared.cluster;
    let me = config.node_id;
    let interval = Duration::from_secs(config.leader_imbalance_check_interval_seconds);
    loop {
        tokio::time::sleep(interval).await;
        if cluster.node.leader() != Some(me) {
            continue;
        }
        let mut due = to_rebalance(&cluster.image(), config.leader_imbalance_per_broker_percentage);
        // Rounds of at most one partition per broker, each committed before the next.
        while !due.is_empty() {
            let round: Vec<(String, u32)> =
                due.values_mut().filter_map(|list| list.pop()).collect();
            due.retain(|_, list| !list.is_empty());
            let cmd = Command::ElectPreferredLeaders { partitions: round.clone() };
            match cluster.node.propose(cmd).await {
                Ok(CommandResponse::Elections(outcomes)) => {
                    for ((topic, partition), o) in round.iter().zip(outcomes) {
                        if let ElectionOutcome::Elected { leader } = o {
                            tracing::info!(%topic, partition, leader, "leadership back to the preferred replica");
                        }
                    }
                }
                Ok(other) => tracing::warn!(?other, "unexpected answer to a preferred election"),
                Err(e) => {
                    tracing::warn!(error = %e, "leader balance: election not committed");
                    break;
                }
            }
        }
    }
}

/// Every second: the bytes the new replicas of the moves this broker leads still have to copy.
pub(crate) async fn reassignment_progress_loop(shared: Arc<Shared>) {
    let me = shared.config.node_id;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let image = shared.cluster.image();
        let mut remaining = 0u64;
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(r) = &p.reassignment else { continue };
                if p.leader != Some(me) {
                    continue;
                }
                let Some(h) = shared.replicas.partition(name, i as u32) else { continue };
                let adding = r.adding();
                if let Ok(progress) = h.replica_progress().await {
                    remaining += progress
                        .iter()
                        .filter(|(b, _, _)| adding.contains(b) && !p.isr.contains(b))
                        .map(|(_, _, bytes)| bytes)
                        .sum::<u64>();
                }
            }
        }
        shared.metrics.reassignment_bytes_remaining.store(remaining, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_raft::Command;

    fn image() -> ClusterImage {
        let mut img = ClusterImage::default();
        for id in 1..=3 {
            img.apply(&Command::RegisterBroker {
                id,
                address: format!("b{id}"),
                internal_address: String::new(),
                kafka_address: String::new(),
                rack: None,
                incarnation: id,
            });
        }
        let assignment = vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![1, 3, 2]];
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            assignment,
            configs: Default::default(),
            uuid: String::new(),
        });
        img
    }

    #[test]
    fn a_balanced_cluster_needs_nothing() {
        let img = image();
        assert_eq!(imbalance(&img)[&1], (2, 0));
        assert!(to_rebalance(&img, 10).is_empty());
    }

    #[test]
    fn leadership_lost_to_a_restart_is_handed_back_only_where_in_sync() {
        let mut img = image();
        // Broker 1 restarts: its leaderships move, it leaves the ISRs.
        img.apply(&Command::RegisterBroker {
            id: 1,
            address: "b1".into(),
            internal_address: String::new(),
            kafka_address: String::new(),
            rack: None,
            incarnation: 99,
        });
        assert_eq!(imbalance(&img)[&1], (2, 2));
        assert!(to_rebalance(&img, 10).is_empty(), "not in sync yet: nothing to hand back");
        // Broker 1 caught up on partition 0 (its leader adds it to the ISR).
        let p = img.topics["t"].partitions[0].clone();
        img.apply(&Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader.unwrap(),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![2, 3, 1],
            member_epochs: Default::default(),
        });
        let due = to_rebalance(&img, 10);
        assert_eq!(due[&1], vec![("t".to_string(), 0)]);
        // 1 of 2 not led is 50%: above 10, not above 50.
        assert!(to_rebalance(&img, 100).is_empty());
    }
}
