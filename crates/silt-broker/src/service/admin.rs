//! `Admin`: create, delete, describe and alter topics, and describe the cluster. Changes are
//! serialized by one lock, committed through the metadata quorum, and answered once this
//! broker has applied them.

use std::collections::BTreeMap;
use std::sync::Arc;

use silt_core::TopicName;
use silt_proto::v1::{self, ErrorCode};
use tonic::{Request, Response, Status};

use super::metadata::{TopicView, view};
use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use crate::topic_config::TopicConfig;
use silt_core::placement::place_replicas;
use silt_raft::{AclOperation, Command, CommandResponse, Rejection};

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    pub(super) shared: Arc<Shared>,
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

/// A topic to create, checked.
#[derive(Debug, Clone)]
struct NewTopicPlan {
    name: String,
    partitions: u32,
    replication_factor: u32,
    /// The config keys set explicitly.
    overrides: BTreeMap<String, String>,
}

fn unknown_topic(t: &str) -> WireError {
    WireError::new(ErrorCode::UnknownTopic, format!("unknown topic {t}"))
}

/// The client's error for a command the quorum refused, by the refusal's kind.
pub(super) fn rejection_error(r: &Rejection) -> WireError {
    let code = match r {
        Rejection::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
        Rejection::UnknownTopic { .. } => ErrorCode::UnknownTopic,
        Rejection::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        // No partitions, or one without distinct replicas: more replicas than brokers.
        Rejection::InvalidAssignment { .. } => ErrorCode::InvalidReplicationFactor,
        Rejection::UnknownUser { .. } => ErrorCode::ResourceNotFound,
        Rejection::InvalidReplicas { .. }
        | Rejection::NoReplacement { .. }
        | Rejection::BrokerDecommissioning { .. } => ErrorCode::InvalidReplicaAssignment,
        Rejection::ReassignmentInProgress { .. } => ErrorCode::ReassignmentInProgress,
        // Kafka has no code for it; the message says why.
        Rejection::CannotCancel { .. } => ErrorCode::InvalidRequest,
        Rejection::PartitionCountChanged { .. } => ErrorCode::InvalidPartitions,
        Rejection::NoReassignmentInProgress { .. } => ErrorCode::NoReassignmentInProgress,
        // A decommission of an unregistered broker.
        Rejection::UnknownBroker { .. } => ErrorCode::InvalidRequest,
        // Not proposed by admin calls; listed so a new kind needs a decision here.
        Rejection::StaleBrokerEpoch { .. }
        | Rejection::StaleEpochs { .. }
        | Rejection::InvalidIsr { .. }
        | Rejection::IneligibleReplica { .. }
        | Rejection::EmptyProducerIdBlock { .. } => ErrorCode::InvalidRequest,
    };
    WireError::new(code, r.to_string())
}

/// Commits a metadata command through the quorum (forwarded to the controller if needed).
pub(super) async fn propose(shared: &Shared, cmd: Command) -> Result<CommandResponse, WireError> {
    match shared.cluster.node.propose(cmd).await {
        Ok(CommandResponse::Rejected(why)) => Err(rejection_error(&why)),
        Ok(r) => Ok(r),
        Err(e) => Err(WireError::new(ErrorCode::RequestTimedOut, format!("metadata quorum: {e}"))),
    }
}

impl AdminService {
    async fn create(
        &self,
        access: &Access,
        t: v1::NewTopic,
        validate_only: bool,
    ) -> Result<(), WireError> {
        // Kafka's rule: CREATE on the cluster, or on the topic.
        if !access.may_cluster(&self.shared, AclOperation::Create) {
            access.topic(&self.shared, AclOperation::Create, &t.name)?;
        }
        self.shared.serving()?; // checks and the wait for the local apply need a current image
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
        let brokers = view(shared).brokers.iter().filter(|b| b.alive).count().max(1);
        if rf == 0 || rf as usize > brokers {
            return Err(WireError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {rf} needs {rf} live brokers; this cluster has {brokers}"
                ),
            ));
        }
        let mut overrides: BTreeMap<String, String> = t.configs.into_iter().collect();
        // A broker-wide min.insync.replicas above this topic's replication factor would refuse
        // every acks=all write; unless the creator chose one, cap it at the replica count.
        if d.min_insync_replicas > rf && !overrides.contains_key("min.insync.replicas") {
            overrides.insert("min.insync.replicas".into(), rf.to_string());
        }
        let record =
            NewTopicPlan { name: t.name.clone(), partitions, replication_factor: rf, overrides };
        let config = shared
            .effective_config(&record.overrides)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        let _guard = shared.admin_lock.lock().await;
        if view(shared).topics.contains_key(&t.name) {
            return Err(rejection_error(&Rejection::TopicExists { topic: t.name }));
        }
        if validate_only {
            return Ok(());
        }
        self.create_in_cluster(record, config).await
    }

    /// Creates an internal topic (`__consumer_offsets`) unless it exists: no name check. The
    /// caller chose the replication factor (a placement over fewer unfenced brokers fails, so
    /// the topic never gets fewer replicas than asked).
    pub(crate) async fn create_internal(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), WireError> {
        let shared = &self.shared;
        let _guard = shared.admin_lock.lock().await;
        if view(shared).topics.contains_key(name) {
            return Ok(());
        }
        let record =
            NewTopicPlan { name: name.to_string(), partitions, replication_factor, overrides };
        let config = shared
            .effective_config(&record.overrides)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        self.create_in_cluster(record, config).await
    }

    async fn delete(&self, access: &Access, name: &str) -> Result<(), WireError> {
        access.topic(&self.shared, AclOperation::Delete, name)?;
        self.shared.serving()?; // checks and the wait for the local apply need a current image
        let shared = &self.shared;
        let _guard = shared.admin_lock.lock().await;
        self.propose(Command::DeleteTopic { name: name.to_string() }).await?;
        self.await_local(name, |c| c.is_none()).await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    fn describe(&self, name: &str, t: &TopicView) -> v1::TopicDescription {
        let shared = &self.shared;
        let config = shared
            .topic_config(name)
            .unwrap_or_else(|| shared.config.topic_defaults.topic_config());
        let handles = shared.replicas.partitions(name).unwrap_or_default();
        let image = shared.cluster.image();
        let moves = |p: u32| {
            image
                .topics
                .get(name)
                .and_then(|t| t.partitions.get(p as usize))
                .and_then(|p| p.reassignment.as_ref())
                .map_or((Vec::new(), Vec::new()), |r| (r.adding(), r.removing()))
        };
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                // Offsets are known where a replica is hosted; -1 elsewhere.
                let state = handles.get(&p.partition).map(|h| h.state());
                let (adding_replicas, removing_replicas) = moves(p.partition);
                v1::PartitionDescription {
                    adding_replicas,
                    removing_replicas,
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start_offset: state.map_or(-1, |s| s.log_start.0 as i64),
                    high_watermark: state.map_or(-1, |s| s.high_watermark.0 as i64),
                }
            })
            .collect();
        v1::TopicDescription {
            name: name.to_string(),
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            configs: config.to_map().into_iter().collect(),
            partitions: parts,
            replication_factor: t.replication_factor,
        }
    }

    async fn propose(&self, cmd: Command) -> Result<CommandResponse, WireError> {
        propose(&self.shared, cmd).await
    }

    /// Waits (bounded) until this broker's view of `topic`'s config satisfies `done`, so an admin
    /// call returns once the change is visible here.
    async fn await_local(
        &self,
        topic: &str,
        done: impl Fn(Option<TopicConfig>) -> bool,
    ) -> Result<(), WireError> {
        super::reassign::wait_applied(|| done(self.shared.topic_config(topic))).await
    }

    /// Creates a checked topic (the caller holds the admin lock): places its replicas on the
    /// unfenced brokers and commits it.
    async fn create_in_cluster(
        &self,
        record: NewTopicPlan,
        config: TopicConfig,
    ) -> Result<(), WireError> {
        let image = self.shared.cluster.image();
        let brokers = super::reassign::placeable_brokers(&image);
        let start = silt_core::partitioner::murmur2(record.name.as_bytes()) as u32 as u64;
        let assignment =
            place_replicas(&brokers, record.partitions, record.replication_factor, start)
                .map_err(|e| WireError::new(ErrorCode::InvalidReplicationFactor, e.to_string()))?;
        let name = record.name.clone();
        self.propose(Command::CreateTopic {
            name: name.clone(),
            assignment,
            configs: record.overrides,
            uuid: silt_core::random_id128(),
        })
        .await?;
        self.await_local(&name, |c| c.is_some_and(|c| c == config)).await?;
        tracing::info!(topic = %name, partitions = record.partitions, rf = record.replication_factor, "created topic");
        Ok(())
    }

    async fn alter(&self, req: v1::AlterTopicConfigRequest) -> Result<(), WireError> {
        self.shared.serving()?; // checks and the wait for the local apply need a current image
        let shared = &self.shared;
        let _guard = shared.admin_lock.lock().await;
        let image = shared.cluster.image();
        let mut overrides =
            image.topics.get(&req.topic).ok_or_else(|| unknown_topic(&req.topic))?.configs.clone();
        for k in &req.delete {
            if !crate::topic_config::KEYS.contains(&k.as_str()) {
                return Err(WireError::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid topic config {k}: unknown config key"),
                ));
            }
            overrides.remove(k);
        }
        overrides.extend(req.set);
        let config = shared
            .effective_config(&overrides)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        self.propose(Command::AlterTopicConfig { name: req.topic.clone(), configs: overrides })
            .await?;
        self.await_local(&req.topic, |c| c.is_some_and(|c| c == config)).await?;
        tracing::info!(topic = %req.topic, "altered topic config");
        Ok(())
    }
}

#[tonic::async_trait]
impl v1::admin_server::Admin for AdminService {
    async fn create_topics(
        &self,
        req: Request<v1::CreateTopicsRequest>,
    ) -> Result<Response<v1::CreateTopicsResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.clone();
            topics.push(result(name, self.create(&access, t, req.validate_only).await));
        }
        Ok(Response::new(v1::CreateTopicsResponse { topics }))
    }

    async fn delete_topics(
        &self,
        req: Request<v1::DeleteTopicsRequest>,
    ) -> Result<Response<v1::DeleteTopicsResponse>, Status> {
        let access = Access::of(&req);
        let mut topics = Vec::new();
        for name in req.into_inner().topics {
            let r = self.delete(&access, &name).await;
            topics.push(result(name, r));
        }
        Ok(Response::new(v1::DeleteTopicsResponse { topics }))
    }

    async fn describe_topics(
        &self,
        req: Request<v1::DescribeTopicsRequest>,
    ) -> Result<Response<v1::DescribeTopicsResponse>, Status> {
        if let Err(e) = self.shared.serving() {
            return Err(Status::unavailable(e.message));
        }
        let access = Access::of(&req);
        let names = req.into_inner().topics;
        let v = view(&self.shared);
        let may = |name: &str| access.topic(&self.shared, AclOperation::Describe, name);
        let names: Vec<String> = if names.is_empty() {
            v.topics.keys().filter(|n| may(n).is_ok()).cloned().collect()
        } else {
            names
        };
        let topics = names
            .into_iter()
            .map(|name| match (may(&name), v.topics.get(&name)) {
                (Err(e), _) => v1::TopicDescription {
                    error_code: e.code as i32,
                    error_message: e.message,
                    name,
                    ..Default::default()
                },
                (Ok(()), Some(t)) => self.describe(&name, t),
                (Ok(()), None) => v1::TopicDescription {
                    error_code: ErrorCode::UnknownTopic as i32,
                    error_message: format!("unknown topic {name}"),
                    name,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(v1::DescribeTopicsResponse { topics }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<v1::AlterTopicConfigRequest>,
    ) -> Result<Response<v1::AlterTopicConfigResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let name = req.topic.clone();
        let r = match access.topic(&self.shared, AclOperation::AlterConfigs, &name) {
            Ok(()) => self.alter(req).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(v1::AlterTopicConfigResponse { result: Some(result(name, r)) }))
    }

    async fn describe_cluster(
        &self,
        _req: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        if let Err(e) = self.shared.serving() {
            return Err(Status::unavailable(e.message));
        }
        let v = view(&self.shared);
        Ok(Response::new(v1::DescribeClusterResponse {
            brokers: v.brokers,
            controller_id: v.controller,
            raft_term: v.raft_term,
            cluster_id: v.cluster_id.to_string(),
        }))
    }

    async fn create_partitions(
        &self,
        req: Request<v1::CreatePartitionsRequest>,
    ) -> Result<Response<v1::CreatePartitionsResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let name = req.topic.clone();
        let r = self.create_partitions(&access, req).await;
        let r = not_ready_unavailable(r)?;
        Ok(Response::new(v1::CreatePartitionsResponse { result: Some(result(name, r)) }))
    }

    async fn alter_partition_reassignments(
        &self,
        req: Request<v1::AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<v1::AlterPartitionReassignmentsResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let results =
            match not_ready_unavailable(self.alter_reassignments(&access, req.clone()).await)? {
                Ok(results) => results,
                Err(e) => req
                    .reassignments
                    .iter()
                    .map(|r| v1::ReassignmentResult {
                        topic: r.topic.clone(),
                        partition: r.partition,
                        error_code: e.code as i32,
                        error_message: e.message.clone(),
                    })
                    .collect(),
            };
        Ok(Response::new(v1::AlterPartitionReassignmentsResponse { results }))
    }

    async fn list_partition_reassignments(
        &self,
        req: Request<v1::ListPartitionReassignmentsRequest>,
    ) -> Result<Response<v1::ListPartitionReassignmentsResponse>, Status> {
        let access = Access::of(&req);
        Ok(Response::new(match not_ready_unavailable(self.list_reassignments(&access).await)? {
            Ok(r) => r,
            Err(e) => v1::ListPartitionReassignmentsResponse {
                error_code: e.code as i32,
                error_message: e.message,
                ..Default::default()
            },
        }))
    }

    async fn elect_leaders(
        &self,
        req: Request<v1::ElectLeadersRequest>,
    ) -> Result<Response<v1::ElectLeadersResponse>, Status> {
        let access = Access::of(&req);
        Ok(Response::new(
            match not_ready_unavailable(self.elect_leaders(&access, req.into_inner()).await)? {
                Ok(results) => v1::ElectLeadersResponse { results, ..Default::default() },
                Err(e) => v1::ElectLeadersResponse {
                    results: Vec::new(),
                    error_code: e.code as i32,
                    error_message: e.message,
                },
            },
        ))
    }

    async fn decommission_broker(
        &self,
        req: Request<v1::DecommissionBrokerRequest>,
    ) -> Result<Response<v1::DecommissionBrokerResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = self.decommission(&access, req.node_id, Some(req.throttle_bytes_per_sec)).await;
        decommission_response(r).map(Response::new)
    }

    async fn recommission_broker(
        &self,
        req: Request<v1::RecommissionBrokerRequest>,
    ) -> Result<Response<v1::DecommissionBrokerResponse>, Status> {
        let access = Access::of(&req);
        let r = self.decommission(&access, req.into_inner().node_id, None).await;
        decommission_response(r).map(Response::new)
    }
}

/// A broker still catching up with the metadata answers `Unavailable` (the client asks another
/// broker) instead of a result carrying `BROKER_NOT_AVAILABLE`.
fn not_ready_unavailable<T>(r: Result<T, WireError>) -> Result<Result<T, WireError>, Status> {
    match r {
        Err(e) if e.code == ErrorCode::BrokerNotAvailable => Err(Status::unavailable(e.message)),
        r => Ok(r),
    }
}

fn decommission_response(
    r: Result<u32, WireError>,
) -> Result<v1::DecommissionBrokerResponse, Status> {
    Ok(match not_ready_unavailable(r)? {
        Ok(moves) => v1::DecommissionBrokerResponse {
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            moves,
        },
        Err(e) => v1::DecommissionBrokerResponse {
            error_code: e.code as i32,
            error_message: e.message,
            moves: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_refusals_map_to_wire_codes_by_kind_not_by_message() {
        let code = |r: Rejection| rejection_error(&r).code;
        assert_eq!(
            code(Rejection::TopicExists { topic: "t".into() }),
            ErrorCode::TopicAlreadyExists
        );
        assert_eq!(code(Rejection::UnknownTopic { topic: "t".into() }), ErrorCode::UnknownTopic);
        // Substring matching sent this one to INVALID_REQUEST ("unknown partition" is not
        // "unknown topic").
        assert_eq!(
            code(Rejection::UnknownPartition { topic: "t".into(), partition: 4 }),
            ErrorCode::UnknownPartition
        );
        assert_eq!(
            code(Rejection::InvalidAssignment { topic: "t".into() }),
            ErrorCode::InvalidReplicationFactor
        );
        assert_eq!(code(Rejection::UnknownBroker { id: 3 }), ErrorCode::InvalidRequest);
        let e = rejection_error(&Rejection::TopicExists { topic: "orders".into() });
        assert_eq!(e.message, "topic orders already exists");
    }
}
