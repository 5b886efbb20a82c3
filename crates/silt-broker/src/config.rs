//! `BrokerConfig`: everything `siltd` is told, as one struct that TOML files, `SILT_*`
//! environment variables and flags fill in (file < env < flags; the binary does the layering).
//! Every field has a default from a named const and a unit in its name; `validate` checks the
//! rules across fields and names the key that is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::topic_config::{REQUEST_OVERHEAD_BYTES, TopicConfig};

/// Default gRPC listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9300";
/// Default HTTP (metrics, health) address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9301";
/// Default largest gRPC request (and so the largest produce request) in bytes.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Default budget of produce bytes received but not yet appended (Kafka's
/// `queued.max.request.bytes`).
pub const DEFAULT_MAX_QUEUED_PRODUCE_BYTES: usize = 64 * 1024 * 1024;
/// Default share of it one connection may hold.
pub const DEFAULT_MAX_QUEUED_PRODUCE_BYTES_PER_CONNECTION: usize = 32 * 1024 * 1024;
/// Default largest gRPC response (and so the largest fetch response) in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Default time an `acks=all` produce may wait for its records to be committed.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default interval between retention passes.
pub const DEFAULT_RETENTION_CHECK_INTERVAL_MS: u64 = 60_000;
/// Default flush interval for `durability=replicated` topics.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1_000;
/// Default interval of broker heartbeats to the controller.
pub const DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS: u64 = 500;
/// Default session timeout after which a silent broker is fenced.
pub const DEFAULT_BROKER_SESSION_TIMEOUT_MS: u64 = 3_000;
/// A follower that has not caught up with its leader for this long leaves the ISR.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: u64 = 10_000;
/// An idempotent producer silent this long is forgotten by the partitions (Kafka's
/// `producer.id.expiration.ms`, 7 days).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Default partitions of `__consumer_offsets` (fixed once the topic exists).
pub const DEFAULT_OFFSETS_TOPIC_PARTITIONS: u32 = 16;
/// Default replication factor of `__consumer_offsets` (capped at the cluster's size).
pub const DEFAULT_OFFSETS_TOPIC_REPLICATION_FACTOR: u32 = 3;
/// Default segment size of `__consumer_offsets` (segments are preallocated; N x RF of them).
pub const DEFAULT_OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Default session of a group member that does not ask for one.
pub const DEFAULT_GROUP_SESSION_TIMEOUT_MS: u64 = 10_000;
/// Bounds on the session a member may ask for.
pub const DEFAULT_GROUP_MIN_SESSION_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_GROUP_MAX_SESSION_TIMEOUT_MS: u64 = 300_000;
/// Default interval of member heartbeats (shorter while partitions move).
pub const DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS: u64 = 500;
/// Default time a member has to give up revoked partitions before it is removed.
pub const DEFAULT_GROUP_REBALANCE_TIMEOUT_MS: u64 = 30_000;
/// Default longest a fetch may long-poll.
pub const DEFAULT_MAX_FETCH_WAIT_MS: u64 = 30_000;

/// Defaults for new topics (`siltd.toml` section `[topic_defaults]`), with Kafka's meanings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    pub partitions: u32,
    pub replication_factor: u32,
    /// `-1` keeps records forever.
    pub retention_ms: i64,
    /// `-1` means no size limit.
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub min_insync_replicas: u32,
    pub max_message_bytes: usize,
    /// `fsync` or `replicated`.
    pub durability: crate::topic_config::Durability,
    /// `producer` (keep the producer's codec) or a codec every batch is stored in.
    pub compression_type: String,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        let t = TopicConfig::default();
        TopicDefaults {
            partitions: 1,
            replication_factor: 1,
            retention_ms: t.retention_ms.unwrap_or(-1),
            retention_bytes: t.retention_bytes.map_or(-1, |n| n as i64),
            segment_bytes: t.segment_bytes,
            segment_ms: t.segment_ms,
            min_insync_replicas: t.min_insync_replicas,
            max_message_bytes: t.max_message_bytes,
            durability: t.durability,
            compression_type: "producer".to_string(),
        }
    }
}

impl TopicDefaults {
    /// The topic configuration a topic without overrides gets.
    pub fn topic_config(&self) -> TopicConfig {
        TopicConfig {
            retention_ms: (self.retention_ms > 0).then_some(self.retention_ms),
            retention_bytes: (self.retention_bytes > 0).then_some(self.retention_bytes as u64),
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            min_insync_replicas: self.min_insync_replicas,
            max_message_bytes: self.max_message_bytes,
            unclean_leader_election: false,
            durability: self.durability,
            compression: self.compression().ok().flatten(),
            ..TopicConfig::default()
        }
    }

    /// `compression_type` parsed (`None`: producer).
    fn compression(&self) -> Result<Option<silt_core::batch::Compression>, String> {
        match self.compression_type.as_str() {
            "producer" => Ok(None),
            codec => codec.parse().map(Some),
        }
    }
}

/// The broker's configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub node_id: u64,
    /// gRPC listen address; port 0 picks a free port (tests).
    pub listen: String,
    /// Address clients and other brokers use; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// gRPC address of the internal services (Raft, controller, replication), never served on
    /// the client port. Default: the `listen` host with its port + 2 (port 0 stays 0).
    pub internal_listen: Option<String>,
    /// Routes to the peers' internal services, `ID@HOST:PORT,...`. Default: each `peers` entry
    /// with its port + 2 (the default internal port of a broker listening there).
    pub internal_peers: Option<String>,
    /// HTTP address for `/healthz`, `/readyz` and `/metrics`; empty disables it.
    pub http: String,
    /// TLS on the client listener: the certificate chain (PEM) ...
    pub tls_cert: Option<PathBuf>,
    /// ... and its private key (PEM); both or neither.
    pub tls_key: Option<PathBuf>,
    /// With TLS: clients must present a certificate signed by this CA (PEM) — mTLS.
    pub tls_client_ca: Option<PathBuf>,
    /// Mutual TLS on the internal listener (Raft, controller, replication): peers must present
    /// a certificate this cluster CA signed, with subject CN `broker-<id>` of a quorum member;
    /// this broker calls them with its `tls_cert`/`tls_key`. Needs TLS on.
    pub internal_tls_ca: Option<PathBuf>,
    /// Authentication and ACLs on the client listener: every request needs a principal (a
    /// password login, or a client certificate when `tls_client_ca` is set), and every
    /// operation an allowing ACL. Needs TLS on.
    pub auth: bool,
    /// Principals (`User:NAME`) allowed everything without ACLs.
    pub super_users: Vec<String>,
    /// Which name of a client certificate is its principal: `cn` (subject common name) or
    /// `san` (its first e-mail, DNS or URI subject alternative name).
    pub tls_principal: crate::tls::PrincipalSource,
    /// Address of the Kafka-protocol listener (`docs/kafka.md`); absent: none.
    pub kafka_listen: Option<String>,
    /// HOST:PORT Kafka clients are told (Metadata); default: the bound Kafka address, with the
    /// advertised host of `advertise` when it is set.
    pub kafka_advertised: Option<String>,
    /// Largest Kafka request frame read (Kafka's `socket.request.max.bytes`): a larger length
    /// prefix closes the connection before anything is allocated.
    pub kafka_max_request_bytes: usize,
    pub data_dir: PathBuf,
    /// Initial voters of the metadata quorum, `ID@HOST:PORT,...`. A broker not in the list joins
    /// as a learner. Absent: a quorum of one, this broker (`node_id@` its advertised address).
    pub peers: Option<String>,
    pub rack: Option<String>,
    pub max_request_bytes: usize,
    /// Produce bytes received but not yet appended, across all requests; a request waits
    /// before its body is read while the budget is spent (backpressure on the client).
    pub max_queued_produce_bytes: usize,
    /// The most of `max_queued_produce_bytes` one connection may hold (at most all of it).
    pub max_queued_produce_bytes_per_connection: usize,
    pub max_response_bytes: usize,
    /// The most a produced compressed batch's records may decompress to; a batch past it is
    /// refused with CORRUPT_MESSAGE (a decompression bomb). 1 MiB to 256 MiB.
    pub max_decompressed_batch_bytes: usize,
    /// Log cleaner threads (compacted topics; Kafka's `log.cleaner.threads`); 0 turns the
    /// cleaner off.
    pub log_cleaner_threads: usize,
    /// Bytes per second the cleaners read and write together, at most (0: no limit; Kafka's
    /// `log.cleaner.io.max.bytes.per.second`).
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// How long a cleaner waits between passes over its partitions (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// Memory for the key map of one cleaning, over all cleaner threads
    /// (`log.cleaner.dedupe.buffer.size`).
    pub log_cleaner_dedupe_buffer_bytes: usize,
    pub request_timeout_ms: u64,
    pub max_fetch_wait_ms: u64,
    pub retention_check_interval_ms: u64,
    pub flush_interval_ms: u64,
    /// Cluster mode: how often a broker heartbeats the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// Cluster mode: a broker silent this long is fenced and loses its leaderships.
    pub broker_session_timeout_ms: u64,
    /// Cluster mode: a follower that has not caught up with its leader for this long leaves
    /// the ISR (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: u64,
    /// A partition forgets an idempotent producer whose newest batch is older than this
    /// (Kafka's `producer.id.expiration.ms`); checked with each retention pass. A retry from
    /// a forgotten producer is refused (`UNKNOWN_PRODUCER_ID`) and the client starts over
    /// under a new id.
    pub producer_id_expiration_ms: u64,
    /// Partitions of the internal `__consumer_offsets` topic, created on first group use.
    pub offsets_topic_partitions: u32,
    /// Its replication factor, capped at the cluster's size (Raft voters or registered brokers,
    /// the larger); the topic waits until that many brokers are alive. 1 on a broker alone.
    pub offsets_topic_replication_factor: u32,
    /// Its segment size; the coordinator rewrites the live offsets and drops older segments
    /// once a partition holds more than two segments, mostly superseded.
    pub offsets_topic_segment_bytes: u64,
    /// The session of a group member that does not ask for one.
    pub group_session_timeout_ms: u64,
    /// The shortest session a member may ask for.
    pub group_min_session_timeout_ms: u64,
    /// The longest session a member may ask for.
    pub group_max_session_timeout_ms: u64,
    /// How often members heartbeat (100 ms while their partitions are moving).
    pub group_heartbeat_interval_ms: u64,
    /// A member that keeps revoked partitions this long is removed from its group.
    pub group_rebalance_timeout_ms: u64,
    /// How long a share group member holds a record it was handed before it goes back to the
    /// group (Kafka's `share.record.lock.duration.ms`).
    pub share_record_lock_duration_ms: u64,
    /// Deliveries of a record after which a release or an expired lock archives it (and
    /// dead-letters it when the topic names a dead-letter topic): `share.delivery.count.limit`.
    pub share_delivery_count_limit: u16,
    /// Most records in flight per share-partition (`group.share.partition.max.record.locks`):
    /// the window from the start offset over which states are kept.
    pub share_partition_max_record_locks: u32,
    /// A share group member that sends nothing for this long leaves (its records are released).
    pub share_session_timeout_ms: u64,
    /// How often share group members heartbeat.
    pub share_heartbeat_interval_ms: u64,
    /// The controller moves leadership back to preferred replicas when a broker leads too few
    /// of the partitions it is preferred for (Kafka's `auto.leader.rebalance.enable`).
    pub auto_leader_rebalance_enable: bool,
    /// How often the controller checks the leader balance (seconds).
    pub leader_imbalance_check_interval_seconds: u64,
    /// A broker is rebalanced when more than this percentage of the partitions it is preferred
    /// for are led elsewhere.
    pub leader_imbalance_per_broker_percentage: u64,
    pub topic_defaults: TopicDefaults,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: DEFAULT_LISTEN.to_string(),
            advertise: None,
            internal_listen: None,
            internal_peers: None,
            http: DEFAULT_HTTP.to_string(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            internal_tls_ca: None,
            auth: false,
            kafka_listen: None,
            kafka_advertised: None,
            kafka_max_request_bytes: 100 * 1024 * 1024,
            super_users: Vec::new(),
            tls_principal: crate::tls::PrincipalSource::Cn,
            data_dir: PathBuf::from("./silt-data"),
            peers: None,
            rack: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_queued_produce_bytes: DEFAULT_MAX_QUEUED_PRODUCE_BYTES,
            max_queued_produce_bytes_per_connection:
                DEFAULT_MAX_QUEUED_PRODUCE_BYTES_PER_CONNECTION,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_decompressed_batch_bytes: silt_core::batch::DEFAULT_MAX_DECOMPRESSED_BYTES,
            log_cleaner_threads: 1,
            log_cleaner_io_max_bytes_per_second: 0,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_bytes: 128 * 1024 * 1024,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_fetch_wait_ms: DEFAULT_MAX_FETCH_WAIT_MS,
            retention_check_interval_ms: DEFAULT_RETENTION_CHECK_INTERVAL_MS,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            broker_heartbeat_interval_ms: DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS,
            broker_session_timeout_ms: DEFAULT_BROKER_SESSION_TIMEOUT_MS,
            replica_lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            offsets_topic_partitions: DEFAULT_OFFSETS_TOPIC_PARTITIONS,
            offsets_topic_replication_factor: DEFAULT_OFFSETS_TOPIC_REPLICATION_FACTOR,
            offsets_topic_segment_bytes: DEFAULT_OFFSETS_TOPIC_SEGMENT_BYTES,
            group_session_timeout_ms: DEFAULT_GROUP_SESSION_TIMEOUT_MS,
            group_min_session_timeout_ms: DEFAULT_GROUP_MIN_SESSION_TIMEOUT_MS,
            group_max_session_timeout_ms: DEFAULT_GROUP_MAX_SESSION_TIMEOUT_MS,
            group_heartbeat_interval_ms: DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS,
            group_rebalance_timeout_ms: DEFAULT_GROUP_REBALANCE_TIMEOUT_MS,
            share_record_lock_duration_ms: 30_000,
            share_delivery_count_limit: 5,
            share_partition_max_record_locks: 2_000,
            share_session_timeout_ms: 45_000,
            share_heartbeat_interval_ms: 5_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            topic_defaults: TopicDefaults::default(),
        }
    }
}

/// A configuration problem: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration {key}: {reason}")]
pub struct BrokerConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> BrokerConfigError {
    BrokerConfigError { key: key.to_string(), reason: reason.into() }
}

impl BrokerConfig {
    /// A config for tests: port 0 on loopback, data in `data_dir`, no HTTP port.
    pub fn for_test(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig {
            listen: "127.0.0.1:0".to_string(),
            internal_listen: Some("127.0.0.1:0".to_string()),
            http: String::new(),
            data_dir: data_dir.into(),
            // Active segments are preallocated: tests running side by side with 1 GiB segments
            // per partition would need tens of GiB of disk.
            topic_defaults: TopicDefaults { segment_bytes: 64 * 1024 * 1024, ..Default::default() },
            ..BrokerConfig::default()
        }
    }

    /// Where the internal services listen: `internal_listen`, else `listen` with its port + 2.
    pub fn internal_listen_addr(&self) -> String {
        self.internal_listen.clone().unwrap_or_else(|| {
            internal_of(&self.listen).unwrap_or_else(|| format!("{} (port + 2)", self.listen))
        })
    }

    /// Parses a `siltd.toml` (unknown keys are errors); unset keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<BrokerConfig, BrokerConfigError> {
        toml::from_str(text).map_err(|e| bad("config file", e.to_string()))
    }

    /// The client listener's TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
            client_certificate_optional: self.auth,
            principal: self.tls_principal,
        })
    }

    /// The internal listener's TLS files (client certificates from the cluster CA required),
    /// when internal mTLS is on.
    pub fn internal_tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: Some(self.internal_tls_ca.clone()?),
            client_certificate_optional: false,
            principal: crate::tls::PrincipalSource::Cn,
        })
    }

    /// Checks every rule; the error names the key.
    pub fn validate(&self) -> Result<(), BrokerConfigError> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|e| bad("listen", format!("{:?}: {e}", self.listen)))?;
        if !self.http.is_empty() {
            self.http
                .parse::<SocketAddr>()
                .map_err(|e| bad("http", format!("{:?}: {e}", self.http)))?;
        }
        if let Some(a) = &self.advertise
            && (a.is_empty() || !a.contains(':'))
        {
            return Err(bad("advertise", format!("{a:?} is not HOST:PORT")));
        }
        let internal = self.internal_listen_addr();
        if internal.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "internal_listen",
                format!("{internal:?} is not HOST:PORT (nor is listen's port + 2)"),
            ));
        }
        if internal == self.listen && !internal.ends_with(":0") {
            return Err(bad("internal_listen", "must differ from listen (the client port)"));
        }
        if let Some(p) = &self.internal_peers {
            parse_peers(p).map_err(|e| bad("internal_peers", e.reason))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if let Some(peers) = &self.peers {
            let ids: Vec<u64> = parse_peers(peers)?.into_iter().map(|(id, _)| id).collect();
            if ids.iter().collect::<std::collections::BTreeSet<_>>().len() != ids.len() {
                return Err(bad("peers", "a node id appears twice"));
            }
        }
        if !(1 << 20..=silt_core::batch::MAX_BATCH_LEN_LIMIT)
            .contains(&self.max_decompressed_batch_bytes)
        {
            return Err(bad("max_decompressed_batch_bytes", "must be 1 MiB to 256 MiB"));
        }
        if self.max_request_bytes < 2 * REQUEST_OVERHEAD_BYTES {
            return Err(bad(
                "max_request_bytes",
                format!("must be at least {}", 2 * REQUEST_OVERHEAD_BYTES),
            ));
        }
        if self.max_queued_produce_bytes < self.max_request_bytes {
            return Err(bad(
                "max_queued_produce_bytes",
                "must be at least max_request_bytes, so the largest request fits",
            ));
        }
        if self.max_queued_produce_bytes_per_connection < self.max_request_bytes {
            return Err(bad(
                "max_queued_produce_bytes_per_connection",
                "must be at least max_request_bytes, so the largest request fits",
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(bad("tls_key", "is needed with tls_cert")),
            (None, Some(_)) => return Err(bad("tls_cert", "is needed with tls_key")),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(bad("tls_client_ca", "needs tls_cert and tls_key (TLS on)"));
            }
            (None, None) if self.internal_tls_ca.is_some() => {
                return Err(bad(
                    "internal_tls_ca",
                    "needs tls_cert and tls_key (the broker's certificate, CN broker-<id>)",
                ));
            }
            _ => {}
        }
        if self.auth && self.tls_cert.is_none() {
            return Err(bad(
                "auth",
                "needs TLS (tls_cert, tls_key): passwords must not cross the network in clear",
            ));
        }
        if let Some(k) = &self.kafka_listen {
            k.parse::<SocketAddr>().map_err(|e| bad("kafka_listen", format!("{k:?}: {e}")))?;
        }
        if let Some(a) = &self.kafka_advertised
            && (a.is_empty() || !a.contains(':'))
        {
            return Err(bad("kafka_advertised", format!("{a:?} is not HOST:PORT")));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.kafka_max_request_bytes) {
            return Err(bad("kafka_max_request_bytes", "must be 1 KiB to 1 GiB"));
        }
        if let Some(p) = self.super_users.iter().find(|p| crate::auth::check_principal(p).is_err())
        {
            return Err(bad("super_users", format!("{p:?} is not User:NAME")));
        }
        if self.max_response_bytes < self.max_request_bytes {
            return Err(bad(
                "max_response_bytes",
                "must be at least max_request_bytes, so any stored batch can be fetched",
            ));
        }
        if self.log_cleaner_threads > 64 {
            return Err(bad("log_cleaner_threads", "must be at most 64"));
        }
        if self.log_cleaner_dedupe_buffer_bytes < 1 << 20 {
            return Err(bad("log_cleaner_dedupe_buffer_bytes", "must be at least 1 MiB"));
        }
        for (key, v) in [
            ("log_cleaner_backoff_ms", self.log_cleaner_backoff_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("retention_check_interval_ms", self.retention_check_interval_ms),
            ("flush_interval_ms", self.flush_interval_ms),
            ("broker_heartbeat_interval_ms", self.broker_heartbeat_interval_ms),
            ("broker_session_timeout_ms", self.broker_session_timeout_ms),
            ("replica_lag_time_max_ms", self.replica_lag_time_max_ms),
            ("producer_id_expiration_ms", self.producer_id_expiration_ms),
            ("offsets_topic_partitions", u64::from(self.offsets_topic_partitions)),
            ("offsets_topic_replication_factor", u64::from(self.offsets_topic_replication_factor)),
            ("group_min_session_timeout_ms", self.group_min_session_timeout_ms),
            ("group_heartbeat_interval_ms", self.group_heartbeat_interval_ms),
            ("group_rebalance_timeout_ms", self.group_rebalance_timeout_ms),
            ("share_record_lock_duration_ms", self.share_record_lock_duration_ms),
            ("share_delivery_count_limit", u64::from(self.share_delivery_count_limit)),
            ("share_session_timeout_ms", self.share_session_timeout_ms),
            ("share_heartbeat_interval_ms", self.share_heartbeat_interval_ms),
            (
                "leader_imbalance_check_interval_seconds",
                self.leader_imbalance_check_interval_seconds,
            ),
        ] {
            if v == 0 {
                return Err(bad(key, "must be positive"));
            }
        }
        if self.leader_imbalance_per_broker_percentage > 100 {
            return Err(bad("leader_imbalance_per_broker_percentage", "must be in [0, 100]"));
        }
        if self.broker_session_timeout_ms < 2 * self.broker_heartbeat_interval_ms {
            return Err(bad(
                "broker_session_timeout_ms",
                "must be at least twice broker_heartbeat_interval_ms",
            ));
        }
        if !(64 * 1024..=u64::from(u32::MAX)).contains(&self.offsets_topic_segment_bytes) {
            return Err(bad("offsets_topic_segment_bytes", "must be in [65536, 4294967295]"));
        }
        if self.offsets_topic_partitions > crate::service::MAX_PARTITIONS {
            return Err(bad(
                "offsets_topic_partitions",
                format!("must be at most {}", crate::service::MAX_PARTITIONS),
            ));
        }
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms
            || !(self.group_min_session_timeout_ms..=self.group_max_session_timeout_ms)
                .contains(&self.group_session_timeout_ms)
        {
            return Err(bad(
                "group_session_timeout_ms",
                "must lie within group_min_session_timeout_ms..=group_max_session_timeout_ms",
            ));
        }
        if !(1..=100_000).contains(&self.share_partition_max_record_locks) {
            return Err(bad("share_partition_max_record_locks", "must be in [1, 100000]"));
        }
        if self.share_session_timeout_ms < 2 * self.share_heartbeat_interval_ms {
            return Err(bad(
                "share_session_timeout_ms",
                "must be at least twice share_heartbeat_interval_ms",
            ));
        }
        let d = &self.topic_defaults;
        if d.partitions == 0 {
            return Err(bad("topic_defaults.partitions", "must be at least 1"));
        }
        if d.replication_factor == 0 {
            return Err(bad("topic_defaults.replication_factor", "must be at least 1"));
        }
        d.compression().map_err(|e| bad("topic_defaults.compression_type", &e))?;
        d.topic_config()
            .validate(self.max_request_bytes)
            .map_err(|e| bad(&format!("topic_defaults.{}", e.key.replace('.', "_")), e.reason))?;
        Ok(())
    }
}

/// Parses `ID@HOST:PORT,ID@HOST:PORT,...`.
/// The default internal address of a broker whose client address is `addr`: the same host,
/// port + 2 (port 0, "any free port", stays 0). `None` if `addr` has no port or it is too high.
pub fn internal_of(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let port = if port == 0 { 0 } else { port.checked_add(2)? };
    Some(format!("{host}:{port}"))
}

pub fn parse_peers(s: &str) -> Result<Vec<(u64, String)>, BrokerConfigError> {
    s.split(',')
        .map(|p| {
            let (id, addr) = p
                .trim()
                .split_once('@')
                .ok_or_else(|| bad("peers", format!("{p:?} is not ID@HOST:PORT")))?;
            let id = id.parse().map_err(|_| bad("peers", format!("{id:?} is not a node id")))?;
            if !addr.contains(':') {
                return Err(bad("peers", format!("{addr:?} is not HOST:PORT")));
            }
            Ok((id, addr.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        assert!(BrokerConfig::default().validate().is_ok());
        let key = |c: BrokerConfig| c.validate().unwrap_err().key;
        assert_eq!(key(BrokerConfig { listen: "nope".into(), ..Default::default() }), "listen");
        assert_eq!(
            key(BrokerConfig { max_request_bytes: 10, ..Default::default() }),
            "max_request_bytes"
        );
        assert_eq!(
            key(BrokerConfig { max_queued_produce_bytes: 1024, ..Default::default() }),
            "max_queued_produce_bytes"
        );
        assert_eq!(
            key(BrokerConfig {
                max_queued_produce_bytes_per_connection: 1024,
                ..Default::default()
            }),
            "max_queued_produce_bytes_per_connection"
        );
        let internal =
            |s: &str| BrokerConfig { internal_listen: Some(s.into()), ..Default::default() };
        assert_eq!(key(internal("nope")), "internal_listen");
        assert_eq!(key(internal(DEFAULT_LISTEN)), "internal_listen", "never the client port");
        assert_eq!(
            key(BrokerConfig { internal_peers: Some("1@x".into()), ..Default::default() }),
            "internal_peers"
        );
        assert_eq!(
            BrokerConfig::default().internal_listen_addr(),
            "127.0.0.1:9302",
            "the client port + 2"
        );
        assert_eq!(internal_of("0.0.0.0:0").as_deref(), Some("0.0.0.0:0"));
        assert_eq!(internal_of("[::1]:9300").as_deref(), Some("[::1]:9302"));
        assert_eq!(internal_of("h:65535"), None);
        assert_eq!(
            key(BrokerConfig { peers: Some("2@a:1,2@b:2".into()), ..Default::default() }),
            "peers"
        );
        assert_eq!(key(BrokerConfig { peers: Some("x".into()), ..Default::default() }), "peers");
        let mut c = BrokerConfig::default();
        c.topic_defaults.max_message_bytes = 100 << 20;
        assert_eq!(key(c), "topic_defaults.max_message_bytes");
        assert!(
            BrokerConfig { peers: Some("1@127.0.0.1:9300".into()), ..Default::default() }
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn toml_with_unknown_keys_is_refused() {
        let c = BrokerConfig::from_toml("node_id = 3\n[topic_defaults]\npartitions = 6\n").unwrap();
        assert_eq!((c.node_id, c.topic_defaults.partitions), (3, 6));
        assert_eq!(c.listen, DEFAULT_LISTEN);
        let e = BrokerConfig::from_toml("nodeid = 3\n").unwrap_err();
        assert!(e.reason.contains("nodeid"), "{e}");
    }
}

#[cfg(test)]
mod shipped_file_test {
    use super::*;

    #[test]
    fn the_shipped_siltd_toml_parses_to_the_defaults() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/siltd.toml"
        ))
        .unwrap();
        let c = BrokerConfig::from_toml(&text).unwrap();
        assert_eq!(c, BrokerConfig::default(), "deploy/siltd.toml shows every default");
    }
}
