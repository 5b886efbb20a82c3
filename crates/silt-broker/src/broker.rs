//! `Broker`: binds the gRPC port, opens every hosted partition, serves the client services until
//! told to stop, then closes every log cleanly. Tests start it on `127.0.0.1:0`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use silt_proto::v1::admin_server::AdminServer;
use silt_proto::v1::data_server::DataServer;
use silt_proto::v1::groups_server::GroupsServer;
use silt_proto::v1::metadata_server::MetadataServer;
use silt_proto::v1::security_server::SecurityServer;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{BrokerConfig, BrokerConfigError};
use crate::legacy::{LegacyError, LegacyTopics};
use crate::replica_manager::ReplicaManager;
use crate::service::{AdminService, DataService, MetadataService};
use crate::topic_config::{ConfigDecision, TopicConfig};

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] BrokerConfigError),
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error(
        "{data_dir} holds topics of the old single-broker mode (topics.json), which migrate \
         only into a broker started without --peers; start it alone once to migrate, or move \
         topics.json away to join the cluster without those topics"
    )]
    LegacyInCluster { data_dir: String },
    #[error("cannot bind {addr}: {source} (set another address with {flag})")]
    Bind {
        addr: String,
        /// The flag that sets the address.
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata quorum: {0}")]
    Quorum(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The data directory holds batches of a format this version does not read.
    #[error("{0}")]
    DataFormat(String),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// HTTP/2 flow-control windows: large enough that a multi-megabyte produce or fetch is not
/// throttled by 64 KiB window updates (h2's default).
const HTTP2_STREAM_WINDOW_BYTES: u32 = 32 * 1024 * 1024;
const HTTP2_CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;
/// The largest broker heartbeat request or answer.
const CONTROLLER_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest HTTP/2 frame this server accepts (clients send produce data in fewer frames).
const HTTP2_MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// What the services share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub advertised: String,
    pub replicas: ReplicaManager,
    /// Effective configuration of each topic (defaults + overrides).
    pub topic_configs: RwLock<HashMap<String, TopicConfig>>,
    /// Topics whose stored config this broker cannot apply, with why (see [`ConfigDecision`]):
    /// served with their previous config, or offline here when they had none.
    pub config_errors: RwLock<BTreeMap<String, String>>,
    /// Serializes topic creation, deletion and config changes.
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Turns true when shutdown starts, so long polls answer at once instead of holding the
    /// drain up for `max_wait_ms`.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// This broker's member of the metadata quorum (one voter without `--peers`).
    pub cluster: crate::cluster::Cluster,
    /// Topics of an old single-broker data directory, migrated once registered.
    pub legacy: Option<LegacyTopics>,
    pub metrics: crate::metrics::Metrics,
    /// Produce bytes received but not yet appended (`max_queued_produce_bytes`).
    pub produce_budget: crate::service::produce_budget::ProduceBudget,
    /// The consumer groups this broker coordinates.
    pub coordinator: crate::groups::Coordinator,
    /// Authentication state and super users (`auth`).
    pub auth: crate::auth::Authenticator,
    /// The Kafka listener's advertised HOST:PORT, when there is one.
    pub kafka_advertised: Option<String>,
    /// The transactional ids this broker coordinates, and its leaders' verification cache.
    pub txn: crate::txn::TxnCoordinator,
    /// Channels to other brokers' internal services (transaction and share calls).
    pub peers: crate::peers::Peers,
    /// The share groups this broker coordinates.
    pub share: crate::share::ShareCoordinator,
}

impl Shared {
    pub fn topic_config(&self, topic: &str) -> Option<TopicConfig> {
        self.topic_configs.read().unwrap_or_else(|p| p.into_inner()).get(topic).cloned()
    }

    /// Names of the topics with a known config.
    pub fn topic_names(&self) -> Vec<String> {
        self.topic_configs.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// The worker of a partition this broker leads, or the client's error (`NOT_LEADER` with a
    /// hint, `UNKNOWN_*`, or the retriable `BROKER_NOT_AVAILABLE`).
    pub fn leader_handle(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<crate::partition::PartitionHandle, crate::error::WireError> {
        use silt_proto::v1::ErrorCode;
        self.serving()?;
        if self.topic_config(topic).is_none() {
            return Err(self.missing_topic(topic, partition));
        }
        crate::cluster::check_leader(&self.cluster.image(), self.config.node_id, topic, partition)?;
        // The image names this broker leader, but its replica may still be opening.
        self.replicas.partition(topic, partition).ok_or_else(|| {
            crate::error::WireError::new(
                ErrorCode::BrokerNotAvailable,
                format!("{topic}/{partition} is still opening here; retry"),
            )
        })
    }

    /// The error for a request naming a topic this broker has no config for: `UNKNOWN_TOPIC`,
    /// unless the broker is still catching up ([`serving`](Self::serving)'s error), or the topic exists but its stored config does not apply here (its partitions are
    /// offline on this broker): then `NOT_LEADER` (with a hint) when another broker leads the
    /// partition, else the retriable `BROKER_NOT_AVAILABLE` naming the config error — the
    /// client retries while an operator fixes the config or this broker's limits.
    pub fn missing_topic(&self, topic: &str, partition: u32) -> crate::error::WireError {
        use silt_proto::v1::ErrorCode;
        if let Err(e) = self.serving() {
            // Not knowing the topic proves nothing before the image is applied.
            return e;
        }
        let Some(why) = self.config_error(topic) else {
            if self.cluster.image().topics.contains_key(topic) {
                // In the image, not applied here yet (a large topic's replicas still opening).
                return crate::error::WireError::new(
                    ErrorCode::BrokerNotAvailable,
                    format!(
                        "topic {topic} is still being opened on broker {}; retry",
                        self.config.node_id
                    ),
                );
            }
            return crate::error::WireError::new(
                ErrorCode::UnknownTopic,
                format!("unknown topic {topic}"),
            );
        };
        if let Err(e) = crate::cluster::check_leader(
            &self.cluster.image(),
            self.config.node_id,
            topic,
            partition,
        ) {
            return e;
        }
        crate::error::WireError::new(
            ErrorCode::BrokerNotAvailable,
            format!(
                "{topic}/{partition} is offline on broker {}: its topic config does not apply \
                 here ({why}); retry",
                self.config.node_id
            ),
        )
    }

    /// Records the outcome of a [`ConfigDecision`] for `topic` (an error is logged once per
    /// distinct error: an operator must act) and returns the config to serve the topic with,
    /// or `None` when its partitions stay offline here.
    pub fn adopt_config(&self, topic: &str, decision: &ConfigDecision) -> Option<TopicConfig> {
        let mut errors = self.config_errors.write().unwrap_or_else(|p| p.into_inner());
        match decision.error() {
            None => {
                if errors.remove(topic).is_some() {
                    tracing::info!(topic, "the topic's config applies on this broker again");
                }
            }
            Some(e) => {
                let why = e.to_string();
                if errors.get(topic) != Some(&why) {
                    if decision.config().is_some() {
                        tracing::error!(topic, error = %e, "cannot apply the topic's new config on this broker; keeping its previous config");
                    } else {
                        tracing::error!(topic, error = %e, "cannot apply the topic's config on this broker; its partitions stay offline here");
                    }
                    errors.insert(topic.to_string(), why);
                }
            }
        }
        decision.config().cloned()
    }

    /// Forgets a deleted topic's config error.
    pub fn clear_config_error(&self, topic: &str) {
        self.config_errors.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }

    /// Why `topic`'s stored config does not apply here, if it does not.
    pub fn config_error(&self, topic: &str) -> Option<String> {
        self.config_errors.read().unwrap_or_else(|p| p.into_inner()).get(topic).cloned()
    }

    /// Topics whose stored config this broker cannot apply (`silt_topic_config_errors`).
    pub fn config_error_count(&self) -> usize {
        self.config_errors.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Members of the partition's ISR.
    pub fn isr_size(&self, topic: &str, partition: u32) -> usize {
        crate::cluster::partition_image(&self.cluster.image(), topic, partition)
            .map_or(0, |p| p.isr.len())
    }

    /// Whether this broker may act on its cluster image: the image it has applied holds its own
    /// current registration, unfenced, and its topics and roles are applied from such an image —
    /// so every entry committed before the registration is applied too, and nothing it does
    /// comes from an older image (the state of a previous incarnation replayed from the local
    /// Raft log).
    pub fn caught_up(&self) -> bool {
        let c = &self.cluster;
        let epoch = c.epoch.load(std::sync::atomic::Ordering::SeqCst);
        epoch > 0
            && c.reconciled.load(std::sync::atomic::Ordering::SeqCst) >= epoch
            && c.image()
                .brokers
                .get(&self.config.node_id)
                .is_some_and(|b| b.epoch == epoch && !b.fenced)
    }

    /// `Ok` when this broker may answer clients from its image ([`caught_up`](Self::caught_up)),
    /// else the retriable `BROKER_NOT_AVAILABLE` every client request gets meanwhile.
    pub fn serving(&self) -> Result<(), crate::error::WireError> {
        if self.caught_up() {
            return Ok(());
        }
        Err(crate::error::WireError::new(
            silt_proto::v1::ErrorCode::BrokerNotAvailable,
            format!(
                "broker {} is catching up with the cluster metadata (fenced until then); retry",
                self.config.node_id
            ),
        ))
    }

    /// Whether this broker serves requests (`/readyz`): not stopping, and caught up.
    pub fn ready(&self) -> bool {
        !*self.stopping.borrow() && self.caught_up()
    }

    /// Where to reach broker `id` for broker-to-broker traffic.
    pub fn peer_address(&self, id: u64) -> Option<String> {
        self.cluster.peer_address(id)
    }

    pub fn set_topic_config(&self, topic: &str, config: Option<TopicConfig>) {
        let mut m = self.topic_configs.write().unwrap_or_else(|p| p.into_inner());
        match config {
            Some(c) => m.insert(topic.to_string(), c),
            None => m.remove(topic),
        };
    }

    /// The effective config of a topic with these overrides (defaults for the rest).
    pub fn effective_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, crate::topic_config::ConfigError> {
        self.config
            .topic_defaults
            .topic_config()
            .with_overrides(overrides, self.config.max_request_bytes)
    }
}

/// A bound, ready broker (see the module doc).
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The internal services' listener (Raft, controller, replication).
    internal: TcpListener,
    internal_addr: SocketAddr,
    /// TLS on the client listener, when configured.
    tls: Option<Arc<crate::tls::ServerTls>>,
    /// Mutual TLS on the internal listener, when configured (`internal_tls_ca`).
    internal_tls: Option<Arc<crate::tls::ServerTls>>,
    /// The Kafka-protocol listener, when configured (`kafka_listen`).
    kafka: Option<TcpListener>,
}

impl Broker {
    /// Validates `config`, recovers every partition in the data directory and binds the port.
    pub async fn bind(config: BrokerConfig) -> Result<Broker, StartError> {
        config.validate()?;
        let listener = TcpListener::bind(&config.listen).await.map_err(|source| {
            StartError::Bind { addr: config.listen.clone(), flag: "--listen", source }
        })?;
        Self::bind_listener(config, listener).await
    }

    /// Like [`bind`](Self::bind) on an already bound client listener; binds the internal one
    /// from the config.
    pub async fn bind_listener(
        config: BrokerConfig,
        listener: TcpListener,
    ) -> Result<Broker, StartError> {
        config.validate()?;
        let addr = config.internal_listen_addr();
        let internal = TcpListener::bind(&addr).await.map_err(|source| StartError::Bind {
            addr,
            flag: "--internal-listen",
            source,
        })?;
        Self::bind_listeners(config, listener, internal).await
    }

    /// Like [`bind`](Self::bind) on already bound client and internal listeners (tests that
    /// must know every broker's addresses before any starts, to list them as peers).
    pub async fn bind_listeners(
        config: BrokerConfig,
        listener: TcpListener,
        internal: TcpListener,
    ) -> Result<Broker, StartError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| LegacyError::Io { path: config.data_dir.clone(), source })?;
        if let Some((file, magic)) = silt_storage::find_foreign_format(&config.data_dir) {
            return Err(StartError::DataFormat(silt_storage::foreign_format_message(&file, magic)));
        }
        let legacy = LegacyTopics::read(&config.data_dir)?;
        if legacy.is_some() && config.peers.is_some() {
            return Err(StartError::LegacyInCluster {
                data_dir: config.data_dir.display().to_string(),
            });
        }
        let tls = match config.tls_files() {
            Some(files) => {
                Some(Arc::new(crate::tls::ServerTls::load(files).map_err(StartError::Tls)?))
            }
            None => None,
        };
        let internal_tls = match config.internal_tls_files() {
            Some(files) => {
                Some(Arc::new(crate::tls::ServerTls::load(files).map_err(StartError::Tls)?))
            }
            None => None,
        };
        let replicas = ReplicaManager::new(&config.data_dir);
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            flag: "--listen",
            source,
        })?;
        let internal_addr = internal.local_addr().map_err(|source| StartError::Bind {
            addr: config.internal_listen_addr(),
            flag: "--internal-listen",
            source,
        })?;
        let advertised = config.advertise.clone().unwrap_or_else(|| local_addr.to_string());
        // Other brokers reach the internal services on the advertised host (their own routes,
        // `internal_peers` or `peers` + 2, win where they have one).
        let internal_advertised = match (advertised.rsplit_once(':'), internal_addr.ip()) {
            (Some((host, _)), _) if config.advertise.is_some() => {
                format!("{host}:{}", internal_addr.port())
            }
            (_, ip) if ip.is_unspecified() => {
                format!("{}:{}", local_addr.ip(), internal_addr.port())
            }
            _ => internal_addr.to_string(),
        };
        let kafka = match &config.kafka_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| {
                StartError::Bind { addr: addr.clone(), flag: "--kafka-listen", source }
            })?),
            None => None,
        };
        let kafka_advertised = match (&kafka, &config.kafka_advertised) {
            (None, _) => None,
            (Some(_), Some(a)) => Some(a.clone()),
            (Some(l), None) => {
                let bound = l.local_addr().map_err(|source| StartError::Bind {
                    addr: config.kafka_listen.clone().unwrap_or_default(),
                    flag: "--kafka-listen",
                    source,
                })?;
                Some(match advertised.rsplit_once(':') {
                    Some((host, _))
                        if config.advertise.is_some() || bound.ip().is_unspecified() =>
                    {
                        format!("{host}:{}", bound.port())
                    }
                    _ => bound.to_string(),
                })
            }
        };
        // Without `--peers` the broker is a quorum of one: the same code as a cluster.
        let cluster = crate::cluster::Cluster::start(&config, &internal_advertised).await?;
        // Topics come from the image once this broker has registered (`cluster::run` opens the
        // hosted partitions, and sweeps directories no topic claims).
        let produce_budget = crate::service::produce_budget::ProduceBudget::new(
            config.max_queued_produce_bytes,
            config.max_queued_produce_bytes_per_connection,
            config.max_request_bytes,
        );
        let auth = crate::auth::Authenticator::new(config.auth, &config.super_users);
        let shared = Arc::new(Shared {
            config,
            advertised,
            replicas,
            topic_configs: RwLock::new(HashMap::new()),
            config_errors: RwLock::new(BTreeMap::new()),
            admin_lock: tokio::sync::Mutex::new(()),
            stopping: tokio::sync::watch::channel(false).0,
            cluster,
            legacy,
            metrics: crate::metrics::Metrics::default(),
            produce_budget,
            coordinator: crate::groups::Coordinator::default(),
            auth,
            kafka_advertised,
            txn: Default::default(),
            peers: Default::default(),
            share: Default::default(),
        });
        tracing::info!(addr = %local_addr, advertised = %shared.advertised, node_id = shared.config.node_id, tls = tls.is_some(), auth = shared.auth.enabled(), "broker bound");
        tracing::info!(addr = %internal_addr, advertised = %internal_advertised, mtls = internal_tls.is_some(), "internal services bound (Raft, controller, replication)");
        if let Some(k) = &shared.kafka_advertised {
            tracing::info!(advertised = %k, "Kafka listener bound");
        }
        Ok(Broker {
            shared,
            listener,
            local_addr,
            internal,
            internal_addr,
            tls,
            internal_tls,
            kafka,
        })
    }

    /// The bound gRPC address (the real port when `listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The client listener's TLS configuration, to reload on SIGHUP (`None` without TLS).
    pub fn tls(&self) -> Option<Arc<crate::tls::ServerTls>> {
        self.tls.clone()
    }

    /// The internal listener's mutual TLS configuration, to reload on SIGHUP.
    pub fn internal_tls(&self) -> Option<Arc<crate::tls::ServerTls>> {
        self.internal_tls.clone()
    }

    /// The bound address of the Kafka listener, when there is one.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound address of the internal services.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// Serves until `shutdown` resolves, then drains requests and closes every log cleanly.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartError> {
        let shared = self.shared;
        let ticker = tokio::spawn(tick_loop(shared.clone()));
        let follower = tokio::spawn(crate::cluster::run(shared.clone()));
        let groups_expiry = tokio::spawn(crate::groups::expiry_loop(shared.clone()));
        let txn_maintenance = tokio::spawn(crate::txn::maintenance_loop(shared.clone()));
        let share_expiry = tokio::spawn(crate::share::expiry_loop(shared.clone()));
        let cleaners: Vec<_> = (0..shared.config.log_cleaner_threads)
            .map(|i| tokio::spawn(crate::cleaner::run(shared.clone(), i)))
            .collect();
        let kafka_tls = self.tls.clone();
        let kafka =
            self.kafka.map(|l| tokio::spawn(crate::kafka::serve(l, shared.clone(), kafka_tls)));
        let http = if shared.config.http.is_empty() {
            None
        } else {
            Some(crate::health::serve(&shared.config.http, shared.clone()).await.map_err(
                |source| StartError::Bind {
                    addr: shared.config.http.clone(),
                    flag: "--http",
                    source,
                },
            )?)
        };
        let c = &shared.config;
        let data = DataServer::new(DataService::new(shared.clone()))
            .max_decoding_message_size(c.max_request_bytes)
            .max_encoding_message_size(c.max_response_bytes);
        let data =
            crate::service::produce_budget::Budgeted::new(data, shared.produce_budget.clone());
        let security = SecurityServer::new(crate::service::SecurityService::new(shared.clone()))
            .max_decoding_message_size(c.max_request_bytes)
            .max_encoding_message_size(c.max_response_bytes);
        let transactions = silt_proto::v1::transactions_server::TransactionsServer::new(
            crate::txn::TransactionsService::new(shared.clone()),
        )
        .max_decoding_message_size(c.max_request_bytes)
        .max_encoding_message_size(c.max_response_bytes);
        let admin = AdminServer::new(AdminService::new(shared.clone()))
            .max_decoding_message_size(c.max_request_bytes)
            .max_encoding_message_size(c.max_response_bytes);
        let groups = GroupsServer::new(crate::groups::GroupsService::new(shared.clone()))
            .max_decoding_message_size(c.max_request_bytes)
            .max_encoding_message_size(c.max_response_bytes);
        let share = silt_proto::v1::share_server::ShareServer::new(
            crate::share::ShareService::new(shared.clone()),
        )
        .max_decoding_message_size(c.max_request_bytes)
        .max_encoding_message_size(c.max_response_bytes);
        let metadata = MetadataServer::new(MetadataService::new(shared.clone()))
            .max_decoding_message_size(c.max_request_bytes)
            .max_encoding_message_size(c.max_response_bytes);
        let raft = shared.cluster.node.service();
        let replication = silt_proto::internal::replication_server::ReplicationServer::new(
            crate::replication::ReplicationService::new(shared.clone()),
        )
        .max_decoding_message_size(crate::replication::MAX_REPLICATION_MESSAGE_BYTES)
        .max_encoding_message_size(crate::replication::MAX_REPLICATION_MESSAGE_BYTES);
        // Heartbeats are a few numbers: a small explicit limit, like every other service's.
        let controller = silt_proto::internal::controller_server::ControllerServer::new(
            crate::cluster::ControllerService::new(shared.clone()),
        )
        .max_decoding_message_size(CONTROLLER_MESSAGE_BYTES)
        .max_encoding_message_size(CONTROLLER_MESSAGE_BYTES);
        // The internal services have their own listener, never the client port; they stop
        // after the client services (the controlled shutdown needs Raft).
        let (stop_internal, internal_stopped) = tokio::sync::oneshot::channel::<()>();
        let txn_broker = silt_proto::internal::txn_broker_server::TxnBrokerServer::new(
            crate::txn::TxnBrokerService::new(shared.clone()),
        )
        .max_decoding_message_size(CONTROLLER_MESSAGE_BYTES)
        .max_encoding_message_size(CONTROLLER_MESSAGE_BYTES);
        let share_broker = silt_proto::internal::share_broker_server::ShareBrokerServer::new(
            crate::share::ShareBrokerService::new(shared.clone()),
        )
        .max_decoding_message_size(c.max_request_bytes)
        .max_encoding_message_size(c.max_response_bytes);
        let internal_router = server()
            .add_service(raft)
            .add_service(controller)
            .add_service(replication)
            .add_service(txn_broker)
            .add_service(share_broker);
        let internal_stop = async {
            let _ = internal_stopped.await;
        };
        let internal = match self.internal_tls {
            Some(tls) => {
                let incoming =
                    crate::tls::incoming(self.internal, tls, Some(quorum_member_check(&shared)));
                tokio::spawn(internal_router.serve_with_incoming_shutdown(incoming, internal_stop))
            }
            None => tokio::spawn(
                internal_router.serve_with_incoming_shutdown(nodelay(self.internal), internal_stop),
            ),
        };
        // Every client service authenticates its requests first (a pass-through with auth off).
        use crate::auth::layer::Authenticated;
        let router = server()
            .add_service(Authenticated::new(data, shared.clone()))
            .add_service(Authenticated::new(admin, shared.clone()))
            .add_service(Authenticated::new(metadata, shared.clone()))
            .add_service(Authenticated::new(groups, shared.clone()))
            .add_service(Authenticated::new(share, shared.clone()))
            .add_service(Authenticated::new(transactions, shared.clone()))
            .add_service(Authenticated::new(security, shared.clone()));
        let stop = async {
            shutdown.await;
            crate::cluster::move_leadership_away(&shared).await;
            shared.stopping.send_replace(true);
        };
        let result = match self.tls {
            Some(tls) => {
                let incoming = crate::tls::incoming(self.listener, tls, None);
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
            None => router.serve_with_incoming_shutdown(nodelay(self.listener), stop).await,
        };
        tracing::info!("shutting down: closing partitions");
        ticker.abort();
        follower.abort();
        groups_expiry.abort();
        txn_maintenance.abort();
        share_expiry.abort();
        for c in &cleaners {
            c.abort();
        }
        if let Some(k) = kafka {
            k.abort();
        }
        shared.cluster.node.shutdown().await;
        let _ = stop_internal.send(());
        let internal = internal.await;
        if let Some(h) = http {
            h.abort();
        }
        shared.replicas.close_all().await;
        tracing::info!("broker stopped");
        result.map_err(StartError::from)?;
        match internal {
            Ok(r) => r.map_err(StartError::from),
            Err(e) => Err(StartError::Quorum(format!("internal services: {e}"))),
        }
    }
}

/// Who may call the internal services: a certificate (already verified against the cluster
/// CA) whose subject CN is `broker-<id>` for a member of this broker's quorum.
fn quorum_member_check(shared: &Arc<Shared>) -> crate::tls::PeerCheck {
    let mut members: std::collections::BTreeSet<u64> =
        shared.cluster.peers.keys().copied().collect();
    members.insert(shared.config.node_id);
    Arc::new(move |der: &[u8]| match crate::tls::broker_id_of(der) {
        Some(id) if members.contains(&id) => Ok(()),
        Some(id) => Err(format!("broker-{id} is not a member of this quorum {members:?}")),
        None => Err(format!(
            "the certificate's subject CN ({}) is not broker-<id>",
            crate::tls::subject_common_name(der).unwrap_or_else(|| "none".into())
        )),
    })
}

/// A gRPC server with the broker's HTTP/2 settings.
fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(HTTP2_STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(HTTP2_CONNECTION_WINDOW_BYTES))
        .max_frame_size(Some(HTTP2_MAX_FRAME_BYTES))
        .tcp_nodelay(true)
}

/// The accepted connections of `listener`, with `TCP_NODELAY` (the builder's setting does not
/// reach sockets from our own listener).
fn nodelay(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}

/// Drives retention passes and the background flush of `replicated` topics.
async fn tick_loop(shared: Arc<Shared>) {
    let flush = Duration::from_millis(shared.config.flush_interval_ms);
    let retention = Duration::from_millis(shared.config.retention_check_interval_ms);
    let expiry = i64::try_from(shared.config.producer_id_expiration_ms).unwrap_or(i64::MAX);
    let mut since_retention = Duration::ZERO;
    let mut reported = std::collections::HashSet::new();
    let mut damaged = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(flush).await;
        since_retention += flush;
        let do_retention = since_retention >= retention;
        if do_retention {
            since_retention = Duration::ZERO;
        }
        for p in shared.replicas.all() {
            p.tick(do_retention, expiry);
        }
        // A log whose sync failed is offline until a restart: out of the ISR, and leadership
        // elsewhere (the same report as a replica damaged at open).
        for (topic, partition) in shared.replicas.offline() {
            if reported.insert((topic.clone(), partition)) {
                shared.metrics.offline_logs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let why = "the log is offline after a failed sync";
                crate::cluster::report_damaged(&shared, &topic, partition, why).await;
            }
        }
        // A leader that found its log damaged while serving hands leadership to another in-sync
        // replica (then cuts its log and copies the rest back as a follower). The last in-sync
        // copy stays leader: it serves what is good and refuses the damaged range.
        for (topic, partition, at) in shared.replicas.damaged() {
            if damaged.insert((topic.clone(), partition, at)) {
                let why = format!("a read found this replica's log damaged from offset {at}");
                crate::cluster::report_damaged(&shared, &topic, partition, &why).await;
            }
        }
    }
}
