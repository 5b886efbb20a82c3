//! The server side of the Raft transport: decodes openraft requests, hands them to the local
//! node, and answers with the JSON of openraft's result. Also accepts commands forwarded by
//! followers (`Propose`) when this node leads.

use silt_proto::internal::RaftPayload;
use silt_proto::internal::raft_server::Raft as RaftRpc;
use tonic::{Request, Response, Status};

use openraft::error::{ClientWriteError, RaftError};

use crate::image::{Command, CommandResponse};
use crate::typ::Raft;

/// The answer to a forwarded proposal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Proposed {
    Committed(CommandResponse),
    /// This node is no longer the leader: the proposer should look again and retry.
    NotLeader,
    Failed(String),
}

/// The gRPC `Raft` service of one metadata node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftService")
    }
}

impl RaftService {
    pub(crate) fn new(raft: Raft) -> RaftService {
        RaftService { raft }
    }
}

fn decode<T: serde::de::DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.json)
        .map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    let json = serde_json::to_vec(v)
        .map_err(|e| Status::internal(format!("cannot encode raft payload: {e}")))?;
    Ok(Response::new(RaftPayload { json: json.into() }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let r = self.raft.append_entries(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let r = self.raft.vote(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let r = self.raft.install_snapshot(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn add_learner(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (id, addr): (u64, String) = decode(req.get_ref())?;
        let r = match self.raft.add_learner(id, openraft::BasicNode { addr }, true).await {
            Ok(_) => Proposed::Committed(CommandResponse::Done),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Proposed::NotLeader,
            Err(e) => Proposed::Failed(e.to_string()),
        };
        encode(&r)
    }

    async fn propose(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let cmd: Command = decode(req.get_ref())?;
        let r = match self.raft.client_write(cmd).await {
            Ok(w) => Proposed::Committed(w.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Proposed::NotLeader,
            Err(e) => Proposed::Failed(e.to_string()),
        };
        encode(&r)
    }
}
