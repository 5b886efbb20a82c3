//! The Raft transport: openraft's network traits over the internal gRPC `Raft` service
//! (`proto/silt/internal/v1/raft.proto`), one lazily connected channel per peer address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use silt_proto::internal::RaftPayload;
use silt_proto::internal::raft_client::RaftClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::typ::{NodeId, TypeConfig};

/// Largest Raft message (snapshot chunks included) in either direction.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// Creates connections to peers; shares channels between them.
#[derive(Debug, Clone, Default)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// This node's own addresses for its peers (its `peers` setting): they win over the
    /// addresses in the Raft membership, which are whatever the initializing node configured.
    /// So each broker can reach the others by its own route (a private network, a test proxy).
    local_addresses: Arc<std::collections::BTreeMap<NodeId, String>>,
    /// TLS to the peers (mutual: this node's certificate, the cluster CA); `None`: plaintext.
    tls: Option<ClientTlsConfig>,
}

impl Network {
    pub(crate) fn new(
        local_addresses: std::collections::BTreeMap<NodeId, String>,
        tls: Option<ClientTlsConfig>,
    ) -> Network {
        Network { channels: Arc::default(), local_addresses: Arc::new(local_addresses), tls }
    }

    /// The address to use for `target`: this node's own setting, else `fallback`.
    pub(crate) fn address_of(&self, target: NodeId, fallback: &str) -> String {
        self.local_addresses.get(&target).cloned().unwrap_or_else(|| fallback.to_string())
    }

    /// The client for `addr` (HOST:PORT), created on first use.
    pub(crate) fn client(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let mut e = Endpoint::from_shared(format!("{scheme}://{addr}"))
                    .map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
                if let Some(tls) = &self.tls {
                    e = e.tls_config(tls.clone()).map_err(|e| format!("TLS to {addr}: {e}"))?;
                }
                let c = e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true).connect_lazy();
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES))
    }
}

/// A connection to one peer.
#[derive(Debug)]
pub struct Connection {
    network: Network,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection { network: self.clone(), target, addr: self.address_of(target, &node.addr) }
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Connection {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .network
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
        let payload = RaftPayload { json: json.into() };
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let resp = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(
                    "raft rpc timed out",
                ))));
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
                    status.message().to_string(),
                ))));
            }
            Ok(Err(status)) => {
                return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(
                    status.message().to_string(),
                ))));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&resp.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(Rpc::Append, &req, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &req, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(Rpc::Vote, &req, option.hard_ttl()).await
    }
}
