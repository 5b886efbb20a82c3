//! The `Admin` calls that change where topics live: adding partitions, replica moves (KIP-455),
//! preferred leader election, decommissioning a broker. The image decides each change
//! (`silt_raft::image::reassign`); these check access and input, propose, and wait until this
//! broker's image shows the outcome.

use silt_core::placement::{BrokerSlot, place_replicas};
use silt_proto::v1::{self, ErrorCode};
use silt_raft::{AclOperation, ClusterImage, Command, CommandResponse, ElectionOutcome};

use super::admin::{AdminService, MAX_PARTITIONS, propose, rejection_error};
use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;

/// Waits (bounded) until `done` holds on this broker: a committed change is applied here.
pub(super) async fn wait_applied(done: impl Fn() -> bool) -> Result<(), WireError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return Err(WireError::new(
                ErrorCode::RequestTimedOut,
                "committed, but not yet applied on this broker",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// [`wait_applied`] for a condition on this broker's image.
async fn await_image(
    shared: &Shared,
    done: impl Fn(&ClusterImage) -> bool,
) -> Result<(), WireError> {
    wait_applied(|| done(&shared.cluster.image())).await
}

/// Brokers that may take new replicas: registered, live, not stopping or decommissioning.
pub(crate) fn placeable_brokers(image: &ClusterImage) -> Vec<BrokerSlot> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.shutting_down && !b.decommissioning)
        .map(|b| BrokerSlot { id: b.id, rack: b.rack.clone() })
        .collect()
}

fn invalid_partitions(message: String) -> WireError {
    WireError::new(ErrorCode::InvalidPartitions, message)
}

impl AdminService {
    pub(super) async fn create_partitions(
        &self,
        access: &Access,
        req: v1::CreatePartitionsRequest,
    ) -> Result<(), WireError> {
        let shared = &self.shared;
        access.topic(shared, AclOperation::Alter, &req.topic)?;
        shared.serving()?;
        if crate::auth::is_internal_topic(&req.topic) {
            return Err(WireError::new(
                ErrorCode::InvalidTopic,
                format!("{} is internal: its partition count is fixed", req.topic),
            ));
        }
        let _guard = shared.admin_lock.lock().await;
        let image = shared.cluster.image();
        let t = image.topics.get(&req.topic).ok_or_else(|| {
            WireError::new(ErrorCode::UnknownTopic, format!("unknown topic {}", req.topic))
        })?;
        let current = t.partitions.len() as u32;
        if req.count <= current {
            return Err(invalid_partitions(format!(
                "topic {} has {current} partitions; the new count must be larger (partitions \
                 cannot be removed)",
                req.topic
            )));
        }
        if req.count > MAX_PARTITIONS {
            return Err(invalid_partitions(format!(
                "{} partitions exceed the limit of {MAX_PARTITIONS}",
                req.count
            )));
        }
        let rf = t
            .partitions
            .first()
            .map_or(1, |p| p.reassignment.as_ref().map_or(p.replicas.len(), |r| r.target.len()))
            as u32;
        // Placed as at creation (same start), continued past the existing partitions.
        let start = silt_core::partitioner::murmur2(req.topic.as_bytes()) as u32 as u64;
        let all = place_replicas(&placeable_brokers(&image), req.count, rf, start)
            .map_err(|e| WireError::new(ErrorCode::InvalidReplicationFactor, e.to_string()))?;
        let assignment = all[current as usize..].to_vec();
        if req.validate_only {
            return Ok(());
        }
        let cmd = Command::CreatePartitions { topic: req.topic.clone(), from: current, assignment };
        propose(shared, cmd).await?;
        let (topic, count) = (req.topic.clone(), req.count as usize);
        await_image(shared, |img| {
            img.topics.get(&topic).is_some_and(|t| t.partitions.len() >= count)
        })
        .await?;
        tracing::info!(topic = %req.topic, from = current, to = req.count, "added partitions");
        Ok(())
    }

    /// One partition's move (or cancel); checked against a copy of the image first, so a
    /// dry run answers exactly what the real one would.
    pub(super) async fn reassign_one(
        &self,
        r: &v1::PartitionReassignment,
        validate_only: bool,
        throttle_bytes_per_sec: u64,
    ) -> Result<(), WireError> {
        let shared = &self.shared;
        let cmd = Command::ReassignPartition {
            topic: r.topic.clone(),
            partition: r.partition,
            target: (!r.cancel).then(|| r.replicas.clone()),
            throttle_bytes_per_sec,
        };
        let mut copy = (*shared.cluster.image()).clone();
        if let CommandResponse::Rejected(why) = copy.apply(&cmd) {
            return Err(rejection_error(&why));
        }
        if validate_only {
            return Ok(());
        }
        propose(shared, cmd).await?;
        tracing::info!(topic = %r.topic, partition = r.partition, target = ?r.replicas, cancel = r.cancel, throttle_bytes_per_sec, "replica move");
        Ok(())
    }

    pub(super) async fn alter_reassignments(
        &self,
        access: &Access,
        req: v1::AlterPartitionReassignmentsRequest,
    ) -> Result<Vec<v1::ReassignmentResult>, WireError> {
        let shared = &self.shared;
        access.cluster(shared, AclOperation::Alter)?;
        shared.serving()?;
        let _guard = shared.admin_lock.lock().await;
        let mut out = Vec::with_capacity(req.reassignments.len());
        for r in &req.reassignments {
            let (error_code, error_message) =
                match self.reassign_one(r, req.validate_only, req.throttle_bytes_per_sec).await {
                    Ok(()) => (ErrorCode::None as i32, String::new()),
                    Err(e) => (e.code as i32, e.message),
                };
            out.push(v1::ReassignmentResult {
                topic: r.topic.clone(),
                partition: r.partition,
                error_code,
                error_message,
            });
        }
        Ok(out)
    }

    /// The ongoing moves, with the progress of the new replicas of partitions led here.
    pub(super) async fn list_reassignments(
        &self,
        access: &Access,
    ) -> Result<v1::ListPartitionReassignmentsResponse, WireError> {
        let shared = &self.shared;
        access.cluster(shared, AclOperation::Describe)?;
        shared.serving()?;
        let me = shared.config.node_id;
        let image = shared.cluster.image();
        let mut reassignments = Vec::new();
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(r) = &p.reassignment else { continue };
                let adding = r.adding();
                let mut entry = v1::OngoingReassignment {
                    topic: name.clone(),
                    partition: i as u32,
                    replicas: p.replicas.clone(),
                    target: r.target.clone(),
                    adding: adding.clone(),
                    removing: r.removing(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    throttle_bytes_per_sec: r.throttle_bytes_per_sec,
                    progress_known: false,
                    progress: Vec::new(),
                };
                if p.leader == Some(me)
                    && let Some(h) = shared.replicas.partition(name, i as u32)
                    && let Ok(progress) = h.replica_progress().await
                {
                    entry.progress_known = true;
                    entry.progress = progress
                        .into_iter()
                        .filter(|(b, _, _)| adding.contains(b))
                        .map(|(replica, leo, bytes_behind)| v1::ReplicaProgress {
                            replica,
                            log_end_offset: leo.map_or(-1, |o| o.0 as i64),
                            bytes_behind,
                        })
                        .collect();
                }
                reassignments.push(entry);
            }
        }
        Ok(v1::ListPartitionReassignmentsResponse {
            reassignments,
            answering_broker: me,
            ..Default::default()
        })
    }

    pub(super) async fn elect_leaders(
        &self,
        access: &Access,
        req: v1::ElectLeadersRequest,
    ) -> Result<Vec<v1::ElectionResult>, WireError> {
        let shared = &self.shared;
        access.cluster(shared, AclOperation::Alter)?;
        shared.serving()?;
        let image = shared.cluster.image();
        let names: Vec<String> = if req.topics.is_empty() && req.partitions.is_empty() {
            image.topics.keys().cloned().collect()
        } else {
            req.topics
        };
        let mut out = Vec::new();
        let mut wanted: Vec<(String, u32)> =
            req.partitions.into_iter().map(|p| (p.topic, p.partition)).collect();
        for name in names {
            match image.topics.get(&name) {
                None => out.push(v1::ElectionResult {
                    error_code: ErrorCode::UnknownTopic as i32,
                    error_message: format!("unknown topic {name}"),
                    topic: name,
                    partition: 0,
                    leader: None,
                }),
                Some(t) => {
                    let all = (0..t.partitions.len() as u32).map(|p| (name.clone(), p));
                    wanted.extend(all.filter(|tp| !wanted.contains(tp)).collect::<Vec<_>>());
                }
            }
        }
        if wanted.is_empty() {
            return Ok(out);
        }
        let cmd = Command::ElectPreferredLeaders { partitions: wanted.clone() };
        let CommandResponse::Elections(outcomes) = propose(shared, cmd).await? else {
            return Err(WireError::new(ErrorCode::UnknownServerError, "unexpected answer"));
        };
        for ((topic, partition), o) in wanted.into_iter().zip(outcomes) {
            let (code, message, leader) = match o {
                ElectionOutcome::Elected { leader } => {
                    (ErrorCode::None, String::new(), Some(leader))
                }
                ElectionOutcome::AlreadyPreferred => (
                    ErrorCode::ElectionNotNeeded,
                    "the preferred replica already leads".to_string(),
                    None,
                ),
                ElectionOutcome::PreferredNotAvailable { preferred } => (
                    ErrorCode::PreferredLeaderNotAvailable,
                    format!("preferred replica {preferred} is not in sync or not live"),
                    None,
                ),
                ElectionOutcome::UnknownPartition => {
                    (ErrorCode::UnknownPartition, "unknown partition".to_string(), None)
                }
            };
            out.push(v1::ElectionResult {
                topic,
                partition,
                error_code: code as i32,
                error_message: message,
                leader,
            });
        }
        Ok(out)
    }

    pub(super) async fn decommission(
        &self,
        access: &Access,
        node_id: u64,
        throttle_bytes_per_sec: Option<u64>,
    ) -> Result<u32, WireError> {
        let shared = &self.shared;
        access.cluster(shared, AclOperation::Alter)?;
        shared.serving()?;
        let _guard = shared.admin_lock.lock().await;
        let cmd = match throttle_bytes_per_sec {
            Some(throttle_bytes_per_sec) => {
                Command::DecommissionBroker { id: node_id, throttle_bytes_per_sec }
            }
            None => Command::RecommissionBroker { id: node_id },
        };
        let decommission = throttle_bytes_per_sec.is_some();
        let CommandResponse::Moves(n) = propose(shared, cmd).await? else {
            return Err(WireError::new(ErrorCode::UnknownServerError, "unexpected answer"));
        };
        await_image(shared, |img| {
            img.brokers.get(&node_id).is_some_and(|b| b.decommissioning == decommission)
        })
        .await?;
        tracing::info!(broker = node_id, decommission, moves = n, "broker (de/re)commission");
        Ok(n)
    }
}
