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

/// The largest metadata snapshot a node accepts (the image is names, ids and small maps; far
/// below this).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

/// A snapshot chunk is written at its `offset` into an in-memory buffer: an offset (or an end)
/// past [`MAX_SNAPSHOT_BYTES`] would make that buffer grow to it — one request could exhaust the
/// node's memory. Checked before openraft sees the chunk.
fn check_snapshot_chunk(offset: u64, len: usize) -> Result<(), Status> {
    let end = offset.checked_add(len as u64);
    if end.is_none_or(|e| e > MAX_SNAPSHOT_BYTES) {
        return Err(Status::invalid_argument(format!(
            "snapshot chunk at offset {offset} of {len} bytes ends past the {MAX_SNAPSHOT_BYTES}-byte limit"
        )));
    }
    Ok(())
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
        let chunk: openraft::raft::InstallSnapshotRequest<crate::typ::TypeConfig> =
            decode(req.get_ref())?;
        check_snapshot_chunk(chunk.offset, chunk.data.len())?;
        let r = self.raft.install_snapshot(chunk).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_chunk_past_the_limit_is_refused_before_any_buffer_grows() {
        assert!(check_snapshot_chunk(0, 1024).is_ok());
        assert!(check_snapshot_chunk(MAX_SNAPSHOT_BYTES - 10, 10).is_ok());
        assert!(check_snapshot_chunk(MAX_SNAPSHOT_BYTES - 10, 11).is_err());
        assert!(check_snapshot_chunk(u64::MAX / 2, 1).is_err());
        assert!(check_snapshot_chunk(u64::MAX, 1).is_err(), "overflow is refused too");
    }
}
