//! Cluster mode (`peers` set): this broker is a member of the metadata quorum. It registers
//! itself, and keeps its hosted partitions and topic configs in line with the cluster image:
//! opens the replicas placed on it, stamps the image's leader epochs, and deletes partitions of
//! deleted topics. Produce and fetch go to partition leaders; others answer `NOT_LEADER` with a
//! hint. It heartbeats the controller, fences silent brokers while it is the controller, gives
//! each hosted replica its role (leader with its ISR, or follower) and runs the replica fetchers
//! (`crate::replication`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silt_core::LeaderEpoch;
use silt_core::liveness::Liveness;
use silt_proto::internal::controller_client::ControllerClient;
use silt_proto::internal::{HeartbeatRequest, HeartbeatResponse};
use silt_proto::v1::{self, ErrorCode};
use silt_raft::{ClusterImage, Command, CommandResponse, MetadataNode, NodeConfig, PartitionImage};

use crate::broker::{Shared, StartError};
use crate::config::{BrokerConfig, parse_peers};
use crate::error::WireError;
use crate::partition::{LeaderView, RoleSpec};
use crate::topic_config::ConfigDecision;

/// This broker's membership in the metadata quorum.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub node: MetadataNode,
    /// The epoch the quorum gave this broker's registration (0 until registered).
    pub epoch: AtomicU64,
    /// Random per process start (see `Command::RegisterBroker`).
    pub incarnation: u64,
    /// The broker epoch of the last image whose roles and topics `reconcile` applied: a broker
    /// serves only once this reaches its registration (topics known, partitions opened).
    pub reconciled: AtomicU64,
    /// Controller state while this broker leads the quorum: liveness since it took over, and
    /// the term it took over in.
    pub liveness: Mutex<Option<(u64, Liveness)>>,
    /// This broker's routes to its peers' internal services (`internal_peers`, else each
    /// `peers` entry with port + 2): broker-to-broker traffic (Raft, heartbeats, replication)
    /// uses them before the registered internal addresses.
    pub peers: BTreeMap<u64, String>,
    /// Where other brokers reach this one's internal services (registered in the image).
    pub internal_advertised: String,
    /// TLS for calls to the peers' internal services (`internal_tls_ca`); `None`: plaintext.
    pub internal_tls: Option<tonic::transport::ClientTlsConfig>,
    /// Producer ids this broker may hand out: `(next, end)` of the block the quorum gave it.
    pub producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// The leader epoch of each partition this broker led at the last reconcile (to count
    /// leaderships taken over).
    pub led: Mutex<BTreeMap<(String, u32), u32>>,
}

impl Cluster {
    /// `internal_advertised`: where this broker's internal services are reached.
    pub async fn start(
        config: &BrokerConfig,
        internal_advertised: &str,
    ) -> Result<Cluster, StartError> {
        let peers = internal_routes(config, internal_advertised)?;
        let internal_tls = match (&config.tls_cert, &config.tls_key, &config.internal_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                Some(crate::tls::internal_client_config(cert, key, ca).map_err(StartError::Tls)?)
            }
            _ => None,
        };
        let mut node_config =
            NodeConfig::new(config.node_id, config.data_dir.clone(), peers.clone());
        node_config.advertise = internal_advertised.to_string();
        node_config.tls = internal_tls.clone();
        let node = MetadataNode::start(node_config)
            .await
            .map_err(|e| StartError::Quorum(e.to_string()))?;
        Ok(Cluster {
            node,
            epoch: AtomicU64::new(0),
            incarnation: new_incarnation(),
            reconciled: AtomicU64::new(0),
            liveness: Mutex::new(None),
            peers,
            internal_advertised: internal_advertised.to_string(),
            internal_tls,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            led: Mutex::default(),
        })
    }

    pub fn image(&self) -> Arc<ClusterImage> {
        self.node.image()
    }

    /// An endpoint for a peer's internal services at `addr` (TLS when configured).
    pub fn internal_endpoint(&self, addr: &str) -> Result<tonic::transport::Endpoint, String> {
        let scheme = if self.internal_tls.is_some() { "https" } else { "http" };
        let e = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
        match &self.internal_tls {
            Some(tls) => e.tls_config(tls.clone()).map_err(|e| format!("TLS to {addr}: {e}")),
            None => Ok(e),
        }
    }

    /// Where to reach broker `id`'s internal services: this broker's route to it, else its
    /// registered internal address (for entries from before: its client address + 2).
    pub fn peer_address(&self, id: u64) -> Option<String> {
        self.peers.get(&id).cloned().or_else(|| {
            let image = self.image();
            let b = image.brokers.get(&id)?;
            if b.internal_address.is_empty() {
                crate::config::internal_of(&b.address)
            } else {
                Some(b.internal_address.clone())
            }
        })
    }
}

/// Producer ids a broker asks the quorum for at a time.
const PRODUCER_ID_BLOCK: u32 = 1000;

/// A new producer id, unique in the cluster: from this broker's block, asking the quorum for a
/// new block when it is used up.
pub(crate) async fn next_producer_id(shared: &Shared) -> Result<i64, WireError> {
    let mut ids = shared.cluster.producer_ids.lock().await;
    fill(shared, &mut ids).await?;
    let id = ids.0;
    ids.0 += 1;
    Ok(id)
}

/// Gets this broker a block of producer ids if it has none left.
async fn fill_producer_ids(shared: &Shared) -> Result<(), WireError> {
    let mut ids = shared.cluster.producer_ids.lock().await;
    fill(shared, &mut ids).await
}

async fn fill(shared: &Shared, ids: &mut (i64, i64)) -> Result<(), WireError> {
    let cluster = &shared.cluster;
    if ids.0 >= ids.1 {
        let cmd = Command::AllocateProducerIds {
            broker: shared.config.node_id,
            count: PRODUCER_ID_BLOCK,
        };
        match cluster.node.propose(cmd).await {
            Ok(CommandResponse::ProducerIds { start, count }) => {
                *ids = (start, start + i64::from(count));
                tracing::info!(start, count, "allocated a block of producer ids");
            }
            Ok(other) => {
                return Err(WireError::new(
                    ErrorCode::BrokerNotAvailable,
                    format!("the quorum refused a block of producer ids: {other:?}"),
                ));
            }
            Err(e) => {
                return Err(WireError::new(
                    ErrorCode::BrokerNotAvailable,
                    format!("no block of producer ids (metadata quorum: {e}); retry"),
                ));
            }
        }
    }
    Ok(())
}

/// This broker's routes to the internal services of the initial voters: `internal_peers`, else
/// each `peers` entry with its port + 2; this broker's own entry (if it is a voter) is
/// `internal_advertised`. Without `peers`, a quorum of one: this broker.
fn internal_routes(
    config: &BrokerConfig,
    internal_advertised: &str,
) -> Result<BTreeMap<u64, String>, StartError> {
    let me = config.node_id;
    let mut routes = BTreeMap::new();
    if let Some(p) = &config.internal_peers {
        routes.extend(parse_peers(p)?);
    } else if let Some(p) = &config.peers {
        for (id, addr) in parse_peers(p)? {
            let internal = crate::config::internal_of(&addr).ok_or_else(|| {
                crate::config::BrokerConfigError {
                    key: "peers".into(),
                    reason: format!("{addr:?}: no port + 2 to reach its internal services"),
                }
            })?;
            routes.insert(id, internal);
        }
    }
    // A voter's own entry is where it listens; a broker outside `peers` joins as a learner.
    let voter = match &config.peers {
        Some(p) => parse_peers(p)?.iter().any(|(id, _)| *id == me),
        None => true,
    };
    if voter {
        routes.insert(me, internal_advertised.to_string());
    } else {
        routes.remove(&me);
    }
    Ok(routes)
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

/// A random, non-zero id for this process's registrations (0 marks entries from before
/// incarnations existed).
fn new_incarnation() -> u64 {
    silt_core::random_u64() | 1
}

/// Registers this broker (again, when it finds itself fenced), retrying while the quorum forms.
async fn register(shared: &Shared, cluster: &Cluster) {
    let me = shared.config.node_id;
    let command = Command::RegisterBroker {
        id: me,
        address: shared.advertised.clone(),
        internal_address: cluster.internal_advertised.clone(),
        kafka_address: shared.kafka_advertised.clone().unwrap_or_default(),
        rack: shared.config.rack.clone(),
        incarnation: cluster.incarnation,
    };
    loop {
        if *shared.stopping.borrow() {
            return;
        }
        match cluster.node.propose(command.clone()).await {
            Ok(CommandResponse::BrokerEpoch(e)) => {
                cluster.epoch.store(e, Ordering::SeqCst);
                tracing::info!(
                    node = me,
                    epoch = e,
                    incarnation = cluster.incarnation,
                    "registered with the cluster"
                );
                // A block of producer ids now, while the quorum answers: idempotent producers
                // then get ids from this broker even while the quorum is down.
                if let Err(e) = fill_producer_ids(shared).await {
                    tracing::info!(error = %e.message, "no block of producer ids yet");
                }
                break;
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to registration"),
            Err(e) => {
                tracing::info!(error = %e, "registration pending (the quorum may still be forming)")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Registers this broker, then heartbeats, runs the controller duties when it leads, and
/// follows the image, until shutdown.
pub(crate) async fn run(shared: Arc<Shared>) {
    let cluster = &shared.cluster;
    register(&shared, cluster).await;
    // Never sweep directories of topics a failed migration left out of the image.
    let migrated = migrate_legacy_topics(&shared).await;
    let heartbeats = tokio::spawn(heartbeat_loop(shared.clone()));
    let controller = tokio::spawn(controller_loop(shared.clone()));
    let isr = tokio::spawn(crate::replication::isr_loop(shared.clone()));
    let balance = tokio::spawn(crate::balance::leader_balance_loop(shared.clone()));
    let progress = tokio::spawn(crate::balance::reassignment_progress_loop(shared.clone()));
    let _abort = AbortOnDrop(vec![heartbeats, controller, isr, balance, progress]);
    let mut fetchers = crate::replication::Fetchers::default();
    let mut images = cluster.node.subscribe();
    let mut swept = !migrated;
    loop {
        let image = images.borrow_and_update().clone();
        // Roles only from an image that holds this broker's registration (broker epochs only
        // grow): an image replayed from the local log may still name this broker leader at an
        // epoch its new incarnation gave up.
        let registered = cluster.epoch.load(Ordering::SeqCst);
        if image.brokers.get(&shared.config.node_id).is_some_and(|b| b.epoch >= registered) {
            reconcile(&shared, &image).await;
            fetchers.update(&shared, &image);
            if let Some(b) = image.brokers.get(&shared.config.node_id) {
                cluster.reconciled.store(b.epoch, Ordering::SeqCst);
            }
            if !swept {
                // Directories of topics deleted while this broker was down (and strays).
                swept = true;
                let me = shared.config.node_id;
                shared.replicas.remove_unclaimed(|topic, p| {
                    image.topics.get(topic).is_some_and(|t| {
                        t.partitions.get(p as usize).is_some_and(|pi| pi.replicas.contains(&me))
                    })
                });
            }
        }
        if images.changed().await.is_err() {
            return;
        }
    }
}

/// Creates the topics of an old single-broker data directory in the image (see
/// [`crate::legacy`]), before the first reconcile (which would sweep their directories as
/// unclaimed). Retried until the quorum of one takes them; a topic already in the image (an
/// earlier, interrupted migration) is kept as it is. Returns false when a topic could not be
/// migrated: then nothing is swept and the file stays, for the next start.
async fn migrate_legacy_topics(shared: &Shared) -> bool {
    let Some(legacy) = &shared.legacy else { return true };
    let mut complete = true;
    for cmd in legacy.commands(shared.config.node_id) {
        loop {
            if *shared.stopping.borrow() {
                return false;
            }
            match shared.cluster.node.propose(cmd.clone()).await {
                Ok(CommandResponse::Rejected(why))
                    if !matches!(why, silt_raft::Rejection::TopicExists { .. }) =>
                {
                    tracing::error!(%why, "cannot migrate a topic of topics.json; its data stays");
                    complete = false;
                    break;
                }
                Ok(_) => break,
                Err(e) => tracing::warn!(error = %e, "migrating a topic: retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if !complete {
        return false;
    }
    match legacy.retire() {
        Ok(()) => tracing::info!(
            topics = legacy.topics.len(),
            "migrated the topics of the old single-broker mode (topics.json) into the metadata quorum"
        ),
        Err(e) => tracing::warn!(error = %e, "migrated topics.json, but cannot rename it"),
    }
    true
}

/// Makes the hosted partitions, their roles and topic configs match `image`.
async fn reconcile(shared: &Shared, image: &ClusterImage) {
    let me = shared.config.node_id;
    for (name, t) in &image.topics {
        let stored = shared
            .config
            .topic_defaults
            .topic_config()
            .with_overrides(&t.configs, shared.config.max_request_bytes);
        // Never the defaults for a config that does not apply here: the previous one, or the
        // topic stays offline on this broker (see `ConfigDecision`).
        let decision = ConfigDecision::new(stored, shared.topic_config(name));
        let Some(config) = shared.adopt_config(name, &decision) else { continue };
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
        if !hosted.is_empty() {
            match shared.replicas.open_topic(name, &t.topic_id(), &hosted, &config).await {
                Ok(damaged) => {
                    for p in damaged {
                        report_damaged(shared, name, p, "recovery cut data from this replica")
                            .await;
                    }
                }
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "cannot open hosted partitions")
                }
            }
        }
        for p in hosted {
            let part = &t.partitions[p as usize];
            let Some(h) = shared.replicas.partition(name, p) else { continue };
            if part.leader == Some(me) {
                let mut led = shared.cluster.led.lock().unwrap_or_else(|p| p.into_inner());
                if led.insert((name.clone(), p), part.leader_epoch) != Some(part.leader_epoch) {
                    shared.metrics.leader_elections.fetch_add(1, Ordering::Relaxed);
                }
            }
            let role = if part.leader == Some(me) {
                RoleSpec::Leader(LeaderView {
                    me,
                    leader_epoch: LeaderEpoch(part.leader_epoch),
                    partition_epoch: part.partition_epoch,
                    replicas: part.replicas.clone(),
                    isr: part.isr.clone(),
                    lag_max: std::time::Duration::from_millis(
                        shared.config.replica_lag_time_max_ms,
                    ),
                })
            } else {
                RoleSpec::Follower { leader_epoch: LeaderEpoch(part.leader_epoch) }
            };
            if let Err(e) = h.set_role(role).await {
                tracing::warn!(topic = %name, partition = p, error = %e, "cannot set the replica's role");
            }
        }
        shared.set_topic_config(name, Some(config));
    }
    // Replicas a completed or cancelled move took off this broker: their data goes.
    for (name, p, _) in shared.replicas.all_named() {
        let moved_off = image.topics.get(&name).is_some_and(|t| {
            t.partitions.get(p as usize).is_some_and(|part| !part.replicas.contains(&me))
        });
        if moved_off {
            shared.replicas.delete_partition(&name, p).await;
            tracing::info!(topic = %name, partition = p, "deleted a replica moved off this broker");
        }
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
    let errors: Vec<String> =
        shared.config_errors.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
    for name in errors {
        if !image.topics.contains_key(&name) {
            shared.clear_config_error(&name);
        }
    }
}

/// A replica whose recovery cut data (or whose log went offline, or that found damage while
/// serving: `why`) leaves the ISR (unless it is the only copy) and gives up leadership until it
/// has caught up and rejoined (Kafka's KIP-966 concern: a replica that lost its tail must not
/// be elected over ones that have it).
pub(crate) async fn report_damaged(shared: &Shared, topic: &str, partition: u32, why: &str) {
    let cluster = &shared.cluster;
    let cmd = Command::ReportDamagedReplica {
        broker: shared.config.node_id,
        epoch: cluster.epoch.load(Ordering::SeqCst),
        topic: topic.to_string(),
        partition,
    };
    tracing::warn!(topic, partition, "{why}; leaving the ISR until it catches up");
    match cluster.node.propose(cmd).await {
        Ok(r) => tracing::info!(topic, partition, ?r, "reported the damaged replica"),
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "could not report the damaged replica")
        }
    }
}

/// Aborts background tasks when the owner goes away.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Heartbeats the controller every `broker_heartbeat_interval_ms`; re-registers when the image
/// shows this broker fenced (it was silent too long, e.g. paused).
async fn heartbeat_loop(shared: Arc<Shared>) {
    let cluster = &shared.cluster;
    let me = shared.config.node_id;
    let interval = Duration::from_millis(shared.config.broker_heartbeat_interval_ms);
    loop {
        tokio::time::sleep(interval).await;
        let epoch = cluster.epoch.load(Ordering::SeqCst);
        let image = cluster.image();
        if image.brokers.get(&me).is_some_and(|b| b.fenced && b.epoch == epoch) {
            tracing::warn!(node = me, epoch, "this broker was fenced; registering again");
            register(&shared, cluster).await;
            continue;
        }
        let Some(addr) = cluster.node.leader().and_then(|l| cluster.peer_address(l)) else {
            continue;
        };
        let Ok(endpoint) = cluster.internal_endpoint(&addr) else {
            continue;
        };
        let call = async {
            let channel = endpoint.connect_timeout(interval).connect().await.ok()?;
            ControllerClient::new(channel)
                .broker_heartbeat(HeartbeatRequest { node_id: me, broker_epoch: epoch })
                .await
                .ok()
        };
        if tokio::time::timeout(interval * 2, call).await.ok().flatten().is_none() {
            tracing::debug!(controller = %addr, "heartbeat not delivered");
        }
    }
}

/// While this broker leads the quorum: fence brokers silent for the session timeout (after a
/// grace period of one session timeout from taking over).
async fn controller_loop(shared: Arc<Shared>) {
    let cluster = &shared.cluster;
    let me = shared.config.node_id;
    let session = Duration::from_millis(shared.config.broker_session_timeout_ms);
    // Three heartbeat intervals for live brokers to find a new controller (see docs: a full
    // session timeout here made failovers that also lose the controller take ~6.5 s).
    let grace = Duration::from_millis(3 * shared.config.broker_heartbeat_interval_ms);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if cluster.node.leader() != Some(me) {
            *cluster.liveness.lock().unwrap_or_else(|p| p.into_inner()) = None;
            continue;
        }
        let term = cluster.node.term();
        let now = std::time::Instant::now();
        let image = cluster.image();
        let due = {
            let mut guard = cluster.liveness.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_none_or(|(t, _)| *t != term) {
                tracing::info!(
                    node = me,
                    term,
                    "became controller; fencing waits for the grace period"
                );
                *guard = Some((term, Liveness::new(now, session, grace)));
            }
            let (_, liveness) = guard.as_mut().expect("invariant: just set");
            liveness.heartbeat(me, cluster.epoch.load(Ordering::SeqCst), now);
            for b in image.brokers.values().filter(|b| !b.fenced) {
                liveness.observe_registration(b.id, b.epoch, now);
            }
            liveness.to_fence(
                now,
                image.brokers.values().filter(|b| !b.fenced).map(|b| (b.id, b.epoch)),
            )
        };
        for (id, epoch) in due {
            tracing::warn!(broker = id, epoch, "broker missed its session; fencing it");
            match cluster.node.propose(Command::FenceBroker { id, epoch }).await {
                Ok(CommandResponse::Done) => {
                    tracing::info!(broker = id, "fenced; its leaderships moved")
                }
                Ok(other) => tracing::debug!(?other, "fence not applied"),
                Err(e) => tracing::warn!(error = %e, "fencing failed"),
            }
        }
    }
}

/// The controller's heartbeat endpoint.
#[derive(Debug, Clone)]
pub(crate) struct ControllerService {
    shared: Arc<Shared>,
}

impl ControllerService {
    pub fn new(shared: Arc<Shared>) -> ControllerService {
        ControllerService { shared }
    }
}

#[tonic::async_trait]
impl silt_proto::internal::controller_server::Controller for ControllerService {
    async fn broker_heartbeat(
        &self,
        req: tonic::Request<HeartbeatRequest>,
    ) -> Result<tonic::Response<HeartbeatResponse>, tonic::Status> {
        let req = req.into_inner();
        let cluster = &self.shared.cluster;
        let mut guard = cluster.liveness.lock().unwrap_or_else(|p| p.into_inner());
        let accepted = match guard.as_mut() {
            Some((_, liveness)) if cluster.node.leader() == Some(self.shared.config.node_id) => {
                liveness.heartbeat(req.node_id, req.broker_epoch, std::time::Instant::now());
                true
            }
            _ => false,
        };
        Ok(tonic::Response::new(HeartbeatResponse {
            accepted,
            controller_id: cluster.node.leader(),
        }))
    }
}

/// Controlled shutdown: asks the quorum to move this broker's leaderships to in-sync replicas
/// before the broker stops serving (bounded, so a lost quorum cannot block a shutdown).
pub(crate) async fn move_leadership_away(shared: &Shared) {
    let cluster = &shared.cluster;
    let me = shared.config.node_id;
    let epoch = cluster.epoch.load(Ordering::SeqCst);
    if epoch == 0 {
        return;
    }
    let cmd = Command::MoveLeadershipAway { id: me, epoch };
    match tokio::time::timeout(Duration::from_secs(5), cluster.node.propose(cmd)).await {
        Ok(Ok(CommandResponse::Rejected(why))) => {
            tracing::warn!(%why, "leaderships not moved before shutdown")
        }
        Ok(Ok(_)) => {
            // Let the image reach the new leaders before this broker stops answering.
            tokio::time::sleep(Duration::from_millis(200)).await;
            tracing::info!(node = me, "leaderships moved away before shutdown");
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "could not move leaderships before shutdown"),
        Err(_) => tracing::warn!("moving leaderships timed out; shutting down anyway"),
    }
}
