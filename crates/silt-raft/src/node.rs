//! `MetadataNode`: one broker's member of the metadata quorum. It opens the durable log and state
//! machine, starts openraft with timeouts suited to a loaded 2-core machine, forms the cluster
//! from the peer list alone (every voter calls `initialize` with the same membership; a node whose
//! log is not empty was initialized before and skips it; a node outside the list joins as a
//! learner through any peer), proposes commands (forwarding to the
//! leader when needed), and exposes the image and Raft state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use silt_proto::internal::RaftPayload;
use silt_proto::internal::raft_server::RaftServer;
use tokio::sync::watch;

use crate::image::{ClusterImage, Command, CommandResponse};
use crate::network::{MAX_RAFT_MESSAGE_BYTES, Network};
use crate::service::{Proposed, RaftService};
use crate::typ::{NodeId, Raft};
use crate::{LogStore, StateMachineStore};

/// Raft heartbeat interval (ms): ~250 ms fits a loaded 2-core box (RELIABILITY R7).
pub const DEFAULT_HEARTBEAT_MS: u64 = 250;
/// Election timeout range (ms).
pub const DEFAULT_ELECTION_MIN_MS: u64 = 1000;
pub const DEFAULT_ELECTION_MAX_MS: u64 = 2000;
/// How long `propose` keeps looking for a leader before giving up.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// How to start a metadata node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// Where `raft/log` and `raft/sm` live.
    pub data_dir: PathBuf,
    /// The initial voters, id -> HOST:PORT of their gRPC port (this node included).
    pub peers: BTreeMap<NodeId, String>,
    /// This node's own HOST:PORT (used to join as a learner when it is not among `peers`).
    pub advertise: String,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// TLS (this node's certificate, the cluster CA) for calls to the peers; `None`: plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl NodeConfig {
    pub fn new(node_id: NodeId, data_dir: PathBuf, peers: BTreeMap<NodeId, String>) -> NodeConfig {
        let advertise = peers.get(&node_id).cloned().unwrap_or_default();
        NodeConfig {
            node_id,
            data_dir,
            peers,
            advertise,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_min_ms: DEFAULT_ELECTION_MIN_MS,
            election_max_ms: DEFAULT_ELECTION_MAX_MS,
            tls: None,
        }
    }
}

/// Why a node could not start or a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("no leader is known yet")]
    NoLeader,
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
}

/// A running metadata-quorum member (cheap to clone).
#[derive(Clone)]
pub struct MetadataNode {
    id: NodeId,
    raft: Raft,
    sm: StateMachineStore,
    network: Network,
}

impl std::fmt::Debug for MetadataNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataNode")
            .field("id", &self.id)
            .field("leader", &self.leader())
            .finish()
    }
}

impl MetadataNode {
    /// Opens storage, starts Raft, and initializes the cluster if this node is a fresh voter.
    pub async fn start(config: NodeConfig) -> Result<MetadataNode, NodeError> {
        let raft_dir = config.data_dir.join("raft");
        let log = LogStore::open(&raft_dir.join("log"))?;
        let sm = StateMachineStore::open(&raft_dir.join("sm"))?;
        let raft_config = openraft::Config {
            cluster_name: "silt".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_min_ms,
            election_timeout_max: config.election_max_ms,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let network = Network::new(config.peers.clone(), config.tls.clone());
        let raft =
            Raft::new(config.node_id, Arc::new(raft_config), network.clone(), log, sm.clone())
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
        if config.peers.contains_key(&config.node_id) {
            let members: BTreeMap<NodeId, BasicNode> = config
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node = config.node_id, "initialized the metadata quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    tracing::info!(node = config.node_id, "metadata quorum already initialized")
                }
                Err(e) => return Err(NodeError::Raft(e.to_string())),
            }
        }
        let node = MetadataNode { id: config.node_id, raft, sm, network };
        if !config.peers.contains_key(&config.node_id) {
            let (n, peers, addr) = (node.clone(), config.peers.clone(), config.advertise.clone());
            tokio::spawn(async move { n.join_as_learner(&peers, &addr).await });
        }
        Ok(node)
    }

    /// Asks the quorum (through any peer; forwarded to the leader) to add this node as a
    /// learner, retrying until it is in the membership.
    async fn join_as_learner(&self, peers: &BTreeMap<NodeId, String>, addr: &str) {
        let mut backoff = Duration::from_millis(200);
        loop {
            if self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&self.id)
                .is_some()
            {
                tracing::info!(node = self.id, "joined the metadata quorum as a learner");
                return;
            }
            let mut targets: Vec<String> = peers.values().cloned().collect();
            if let Some(leader) =
                self.raft.metrics().borrow().current_leader.and_then(|l| peers.get(&l))
            {
                targets.insert(0, leader.clone());
            }
            for target in targets {
                let Ok(mut client) = self.network.client(&target) else { continue };
                let Ok(json) = serde_json::to_vec(&(self.id, addr)) else { return };
                let call = client.add_learner(RaftPayload { json: json.into() });
                if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(10), call).await
                    && let Ok(Proposed::Committed(_)) =
                        serde_json::from_slice::<Proposed>(&resp.into_inner().json)
                {
                    break;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The gRPC service to add to this broker's server.
    pub fn service(&self) -> RaftServer<RaftService> {
        RaftServer::new(RaftService::new(self.raft.clone()))
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current leader (the controller), if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The voters of the current membership.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.sm.image()
    }

    /// Every new image as it is applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterImage>> {
        self.sm.subscribe()
    }

    /// Waits until a leader is known (bounded by `timeout`).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, NodeError> {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(l) = metrics.borrow_and_update().current_leader {
                    return Ok(l);
                }
                if metrics.changed().await.is_err() {
                    return Err(NodeError::Raft("raft stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| NodeError::NoLeader)?
    }

    /// Commits `cmd` through Raft and returns its result; a follower forwards it to the leader.
    /// While no leader is known (an election is running) it retries with backoff, up to
    /// `PROPOSE_TIMEOUT`.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse, NodeError> {
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = match self.raft.client_write(cmd.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(n)) => {
                            self.forward(&self.network.address_of(id, &n.addr), &cmd).await
                        }
                        _ => Err(NodeError::NoLeader),
                    }
                }
                Err(e) => return Err(NodeError::Raft(e.to_string())),
            };
            match attempt {
                Ok(r) => return Ok(r),
                Err(e @ (NodeError::NoLeader | NodeError::Forward(_))) => {
                    if tokio::time::Instant::now() + backoff > deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "proposal not placed yet, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `cmd` to the leader at `addr`. `NoLeader` when it turned out not to lead.
    async fn forward(&self, addr: &str, cmd: &Command) -> Result<CommandResponse, NodeError> {
        let mut client = self.network.client(addr).map_err(NodeError::Forward)?;
        let json = serde_json::to_vec(cmd).map_err(|e| NodeError::Forward(e.to_string()))?;
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            client.propose(RaftPayload { json: json.into() }),
        )
        .await
        .map_err(|_| NodeError::Forward(format!("{addr}: timed out")))?
        .map_err(|s| NodeError::Forward(format!("{addr}: {}", s.message())))?;
        match serde_json::from_slice(&resp.into_inner().json)
            .map_err(|e| NodeError::Forward(e.to_string()))?
        {
            Proposed::Committed(r) => Ok(r),
            Proposed::NotLeader => Err(NodeError::NoLeader),
            Proposed::Failed(e) => Err(NodeError::Raft(e)),
        }
    }

    /// Stops Raft (the node leaves the quorum until restarted).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
