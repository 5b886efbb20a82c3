//! `Client`: bootstrap, the metadata cache (topic -> partition leaders, broker addresses), and one
//! lazily connected gRPC channel per broker address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use silt_proto::v1::data_client::DataClient;
use silt_proto::v1::metadata_client::MetadataClient;
use silt_proto::v1::{self, ErrorCode};
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{Admin, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig};

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a metadata call.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Client::connect`] keeps trying while no broker can answer yet (restarting, or
/// still catching up with the cluster metadata).
pub const DEFAULT_CONNECT_WITHIN: Duration = Duration::from_secs(15);
/// How long a topic that no broker knows may take to appear (metadata lags a create by a
/// moment on brokers other than the one that created it).
const UNKNOWN_TOPIC_GRACE: Duration = Duration::from_secs(1);
/// Largest response the client decodes (the broker's default max_response_bytes).
pub(crate) const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;
/// Largest request the client encodes.
pub(crate) const MAX_ENCODE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
struct MetaCache {
    brokers: HashMap<u64, String>,
    /// Leader node id per partition (None: no leader).
    topics: HashMap<String, Vec<Option<u64>>>,
    /// Leader epoch per partition, as the metadata said.
    epochs: HashMap<String, Vec<u32>>,
    /// When each topic's entry was last fetched (entries older than the max age are fetched
    /// again before use, so added partitions are picked up).
    fetched: HashMap<String, tokio::time::Instant>,
}

/// A topic's entry in the metadata cache.
enum Entry {
    Absent,
    Fresh(u32),
    /// Past the max age: the caller given this refreshes it.
    Stale(u32),
}

/// How old cached topic metadata may be before it is fetched again (Kafka's
/// `metadata.max.age.ms`, 5 minutes there).
pub const DEFAULT_METADATA_MAX_AGE: Duration = Duration::from_secs(30);

/// TLS to the brokers (their listeners started with `--tls-cert`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM of the CA that signed the brokers' certificates.
    pub ca_pem: Vec<u8>,
    /// This client's certificate chain and private key (PEM), for brokers that require one
    /// (`--tls-client-ca`, mTLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsOptions {
    /// The tonic client TLS settings these options stand for.
    pub fn tonic_config(&self) -> ClientTlsConfig {
        let c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => c.identity(Identity::from_pem(cert, key)),
            None => c,
        }
    }
}

/// A user and password for brokers with authentication on (`siltd --auth`); sent over TLS
/// with every request, verified by the broker once per connection.
#[derive(Clone, Default)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// How [`Client::connect_with`] connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long to keep trying while no broker can answer yet.
    pub within: Duration,
    /// TLS to every broker; `None`: plaintext.
    pub tls: Option<TlsOptions>,
    /// A password login; `None`: none (a client certificate, or no authentication).
    pub credentials: Option<Credentials>,
    /// Cached topic metadata older than this is fetched again before use (producers and
    /// consumers then see added partitions).
    pub metadata_max_age: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            within: DEFAULT_CONNECT_WITHIN,
            tls: None,
            credentials: None,
            metadata_max_age: DEFAULT_METADATA_MAX_AGE,
        }
    }
}

/// Adds the login's metadata to every request (encoded once).
#[derive(Debug, Clone, Default)]
pub(crate) struct Login(Option<Arc<(BinaryMetadataValue, BinaryMetadataValue)>>);

impl Login {
    fn new(c: Option<&Credentials>) -> Login {
        Login(c.map(|c| {
            Arc::new((
                MetadataValue::from_bytes(c.user.as_bytes()),
                MetadataValue::from_bytes(c.password.as_bytes()),
            ))
        }))
    }
}

impl tonic::service::Interceptor for Login {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(l) = &self.0 {
            req.metadata_mut().insert_bin(silt_proto::USER_METADATA, l.0.clone());
            req.metadata_mut().insert_bin(silt_proto::PASSWORD_METADATA, l.1.clone());
        }
        Ok(req)
    }
}

/// The transport every generated client runs on: a channel with the login attached.
pub(crate) type Transport = InterceptedService<Channel, Login>;

#[derive(Debug)]
struct Inner {
    bootstrap: Vec<String>,
    tls: Option<ClientTlsConfig>,
    login: Login,
    channels: Mutex<HashMap<String, Channel>>,
    meta: RwLock<MetaCache>,
    metadata_max_age: Duration,
}

/// A handle on a Silt cluster (cheap to clone).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects through the first reachable bootstrap broker.
    pub async fn connect(bootstrap: &[String]) -> Result<Client, ClientError> {
        Client::connect_within(bootstrap, DEFAULT_CONNECT_WITHIN).await
    }

    /// Connects through the first bootstrap broker that answers, retrying with backoff for up
    /// to `within` while none can (a broker that is restarting or catching up answers later).
    pub async fn connect_within(
        bootstrap: &[String],
        within: Duration,
    ) -> Result<Client, ClientError> {
        Client::connect_with(bootstrap, ConnectOptions { within, ..ConnectOptions::default() })
            .await
    }

    /// [`connect_within`](Self::connect_within) with every option, TLS included.
    pub async fn connect_with(
        bootstrap: &[String],
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let within = options.within;
        if bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument("no bootstrap address".into()));
        }
        let tls = options.tls.as_ref().map(TlsOptions::tonic_config);
        let client = Client {
            inner: Arc::new(Inner {
                bootstrap: bootstrap.to_vec(),
                tls,
                login: Login::new(options.credentials.as_ref()),
                channels: Mutex::new(HashMap::new()),
                meta: RwLock::new(MetaCache::default()),
                metadata_max_age: options.metadata_max_age,
            }),
        };
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff = Duration::from_millis(50);
        loop {
            match client.metadata(&[]).await {
                Ok(_) => return Ok(client),
                Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "no broker answered yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The transport to `addr` (HOST:PORT): its channel, created on first use, with the login.
    pub(crate) fn channel(&self, addr: &str) -> Result<Transport, ClientError> {
        let channel = self.raw_channel(addr)?;
        Ok(InterceptedService::new(channel, self.inner.login.clone()))
    }

    fn raw_channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = self.inner.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.inner.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| {
            ClientError::InvalidArgument(format!("bad broker address {addr:?}: {e}"))
        })?;
        if let Some(tls) = &self.inner.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| {
                ClientError::InvalidArgument(format!("TLS settings for {addr}: {e}"))
            })?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // h2's 64 KiB default windows throttle multi-megabyte fetches and produces.
            .initial_stream_window_size(32 * 1024 * 1024)
            .initial_connection_window_size(64 * 1024 * 1024)
            .max_frame_size(1024 * 1024);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub(crate) fn data(&self, addr: &str) -> Result<DataClient<Transport>, ClientError> {
        Ok(DataClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .max_encoding_message_size(MAX_ENCODE_BYTES))
    }

    /// Addresses to try for cluster-wide calls: known brokers first, then the bootstrap list.
    pub(crate) fn any_addresses(&self) -> Vec<String> {
        let meta = self.inner.meta.read().unwrap_or_else(|p| p.into_inner());
        let mut addrs: Vec<String> = meta.brokers.values().cloned().collect();
        addrs.sort();
        for b in &self.inner.bootstrap {
            if !addrs.contains(b) {
                addrs.push(b.clone());
            }
        }
        addrs
    }

    /// Fetches metadata (for `topics`, or all when empty) from any broker and refreshes the cache.
    pub async fn metadata(&self, topics: &[String]) -> Result<v1::MetadataResponse, ClientError> {
        let mut last = ClientError::Connect("no broker answered".into());
        for addr in self.any_addresses() {
            let mut c = MetadataClient::new(self.channel(&addr)?)
                .max_decoding_message_size(MAX_DECODE_BYTES);
            let call = c.get_metadata(v1::MetadataRequest { topics: topics.to_vec() });
            match tokio::time::timeout(METADATA_TIMEOUT, call).await {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    self.update_cache(&resp, topics.is_empty());
                    return Ok(resp);
                }
                // Another broker would refuse the same credentials.
                Ok(Err(status)) if is_refusal(&status) => {
                    return Err(ClientError::Transport(status));
                }
                Ok(Err(status)) => {
                    last = ClientError::Connect(format!("{addr}: {}", status.message()))
                }
                Err(_) => last = ClientError::Connect(format!("{addr}: timed out")),
            }
        }
        Err(last)
    }

    fn update_cache(&self, resp: &v1::MetadataResponse, all: bool) {
        let mut meta = self.inner.meta.write().unwrap_or_else(|p| p.into_inner());
        meta.brokers = resp.brokers.iter().map(|b| (b.node_id, b.address.clone())).collect();
        if all {
            meta.topics.clear();
            meta.epochs.clear();
            meta.fetched.clear();
        }
        let now = tokio::time::Instant::now();
        for t in &resp.topics {
            if t.error_code == ErrorCode::None as i32 {
                let mut leaders = vec![None; t.partitions.len()];
                let mut epochs = vec![0; t.partitions.len()];
                for p in &t.partitions {
                    if let Some(slot) = leaders.get_mut(p.partition as usize) {
                        *slot = p.leader;
                    }
                    if let Some(slot) = epochs.get_mut(p.partition as usize) {
                        *slot = p.leader_epoch;
                    }
                }
                meta.topics.insert(t.name.clone(), leaders);
                meta.epochs.insert(t.name.clone(), epochs);
                meta.fetched.insert(t.name.clone(), now);
            } else {
                meta.topics.remove(&t.name);
                meta.epochs.remove(&t.name);
                meta.fetched.remove(&t.name);
            }
        }
    }

    /// The number of partitions of `topic` (refreshing the cache when unknown; a topic no broker
    /// knows is asked for again for a moment, as it may just have been created).
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        match self.cache_entry(topic) {
            Entry::Fresh(n) => return Ok(n),
            Entry::Stale(n) => {
                // This caller refreshes; the others go on with the count they had meanwhile.
                let refreshed = self.metadata(&[topic.to_string()]).await;
                if let Some(n) = self.known_partitions(topic) {
                    return Ok(n);
                }
                if refreshed.is_err() {
                    return Ok(n);
                }
            }
            Entry::Absent => {}
        }
        let deadline = tokio::time::Instant::now() + UNKNOWN_TOPIC_GRACE;
        loop {
            let m = self.metadata(&[topic.to_string()]).await?;
            if let Some(n) = self.known_partitions(topic) {
                return Ok(n);
            }
            if let Some(t) = m.topics.iter().find(|t| {
                t.name == topic && t.error_code == ErrorCode::TopicAuthorizationFailed as i32
            }) {
                let why = format!("not authorized to describe topic {}", t.name);
                return Err(ClientError::server(t.error_code, &why));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::UnknownTopic(topic.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The cached entry of `topic`, judged (under the write lock) against the metadata max age.
    /// A stale entry is marked fetched now, so that only the caller given `Stale` refreshes it.
    fn cache_entry(&self, topic: &str) -> Entry {
        {
            let meta = self.inner.meta.read().unwrap_or_else(|p| p.into_inner());
            let fresh =
                meta.fetched.get(topic).is_some_and(|t| t.elapsed() < self.inner.metadata_max_age);
            match meta.topics.get(topic) {
                None => return Entry::Absent,
                Some(l) if fresh => return Entry::Fresh(l.len() as u32),
                Some(_) => {}
            }
        }
        let mut meta = self.inner.meta.write().unwrap_or_else(|p| p.into_inner());
        let Some(n) = meta.topics.get(topic).map(|l| l.len() as u32) else { return Entry::Absent };
        let fresh =
            meta.fetched.get(topic).is_some_and(|t| t.elapsed() < self.inner.metadata_max_age);
        if fresh {
            return Entry::Fresh(n); // another caller refreshed or marked it meanwhile
        }
        meta.fetched.insert(topic.to_string(), tokio::time::Instant::now());
        Entry::Stale(n)
    }

    /// The cached partition count, however old.
    fn known_partitions(&self, topic: &str) -> Option<u32> {
        let meta = self.inner.meta.read().unwrap_or_else(|p| p.into_inner());
        meta.topics.get(topic).map(|l| l.len() as u32)
    }

    /// The leader epoch of a partition as the cached metadata has it (sent on fetches, so a
    /// leader can tell the consumer's metadata is stale).
    pub(crate) fn leader_epoch(&self, topic: &str, partition: u32) -> Option<u32> {
        let meta = self.inner.meta.read().unwrap_or_else(|p| p.into_inner());
        meta.epochs.get(topic)?.get(partition as usize).copied()
    }

    /// The address of the leader of a partition, from the cache.
    pub(crate) fn leader_address(&self, topic: &str, partition: u32) -> Option<String> {
        let meta = self.inner.meta.read().unwrap_or_else(|p| p.into_inner());
        let leader = (*meta.topics.get(topic)?.get(partition as usize)?)?;
        meta.brokers.get(&leader).cloned()
    }

    /// The leader address, refreshing metadata once if it is not cached.
    pub(crate) async fn leader(&self, topic: &str, partition: u32) -> Result<String, ClientError> {
        if let Some(a) = self.leader_address(topic, partition) {
            return Ok(a);
        }
        self.metadata(&[topic.to_string()]).await?;
        if self.known_partitions(topic).is_none() {
            self.partition_count(topic).await?; // the grace for a topic just created
        }
        match self.leader_address(topic, partition) {
            Some(a) => Ok(a),
            None if self.known_partitions(topic).is_none() => {
                Err(ClientError::UnknownTopic(topic.to_string()))
            }
            None => Err(ClientError::Server {
                code: ErrorCode::NotLeader,
                message: format!("{topic}/{partition} has no leader"),
            }),
        }
    }

    /// The offset `to` names in a partition, asked of its leader (retried while the leader
    /// moves): `Earliest` is the log start, `Latest` the high watermark.
    pub async fn offset(
        &self,
        tp: &crate::TopicPartition,
        to: crate::Seek,
    ) -> Result<i64, ClientError> {
        crate::consumer::resolve(self, tp, to).await
    }

    /// Where a consumer of `isolation` reading a partition ends for now: the high watermark,
    /// or for `ReadCommitted` the last stable offset (below it every transaction is decided).
    pub async fn end_offset(
        &self,
        tp: &crate::TopicPartition,
        isolation: crate::Isolation,
    ) -> Result<i64, ClientError> {
        match isolation {
            crate::Isolation::ReadUncommitted => self.offset(tp, crate::Seek::Latest).await,
            crate::Isolation::ReadCommitted => crate::consumer::last_stable(self, tp).await,
        }
    }

    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// A producer; idempotence asked for with acks other than `All` is turned off with an
    /// error log (use [`try_producer`](Self::try_producer) to refuse it instead).
    pub fn producer(&self, config: ProducerConfig) -> Producer {
        if let Err(e) = config.idempotent() {
            tracing::error!(error = %e, "idempotence turned off");
        }
        Producer::new(self.clone(), config)
    }

    /// A producer, or the configuration error (idempotence with acks other than `All`).
    pub fn try_producer(&self, config: ProducerConfig) -> Result<Producer, ClientError> {
        config.idempotent()?;
        config
            .compression
            .check_level(config.compression_level)
            .map_err(ClientError::InvalidArgument)?;
        Ok(Producer::new(self.clone(), config))
    }

    pub fn consumer(&self, config: ConsumerConfig) -> Consumer {
        Consumer::new(self.clone(), config)
    }

    /// Joins a consumer group subscribed to `topics` (see [`crate::GroupConsumer`]).
    pub async fn subscribe(
        &self,
        config: crate::GroupConfig,
        topics: Vec<String>,
    ) -> Result<crate::GroupConsumer, ClientError> {
        crate::GroupConsumer::subscribe(self, config, topics).await
    }
}

/// Whether a status is the broker refusing who the client is (not a transient failure).
pub(crate) fn is_refusal(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
}
