//! How a share coordinator reaches the partitions it serves: committed reads from a partition's
//! leader and acks=all appends of dead letters, in process when the leader is this broker and
//! over the internal `ShareBroker` service otherwise.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use silt_core::Offset;
use silt_proto::internal::share_broker_client::ShareBrokerClient;
use silt_proto::internal::{self as pb};
use silt_proto::v1::ErrorCode;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::broker::Shared;
use crate::error::WireError;
use crate::partition::WaitFor;
use crate::service::metadata::view;

/// Longest wait for one broker-to-broker call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest read one call answers.
pub(crate) const MAX_READ_BYTES: u32 = 8 * 1024 * 1024;

/// Committed batches of a partition and where its log stands.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub data: Bytes,
    pub next_offset: u64,
    pub log_start: u64,
    pub high_watermark: u64,
}

/// A client of broker `node`'s `ShareBroker` service.
fn client(shared: &Shared, node: u64) -> Result<ShareBrokerClient<Channel>, WireError> {
    Ok(ShareBrokerClient::new(shared.peers.channel(shared, node)?)
        .max_decoding_message_size(MAX_READ_BYTES as usize + 1024 * 1024)
        .max_encoding_message_size(shared.config.max_request_bytes))
}

/// The leader of `topic`/`partition` in the current image.
fn leader_of(shared: &Shared, topic: &str, partition: u32) -> Result<u64, WireError> {
    let v = view(shared);
    let t = v
        .topics
        .get(topic)
        .ok_or_else(|| WireError::new(ErrorCode::UnknownTopic, format!("unknown topic {topic}")))?;
    let p = t.partitions.get(partition as usize).ok_or_else(|| {
        WireError::new(ErrorCode::UnknownPartition, format!("{topic} has no partition {partition}"))
    })?;
    p.leader.ok_or_else(|| {
        WireError::new(ErrorCode::BrokerNotAvailable, format!("{topic}/{partition} has no leader"))
    })
}

fn from_code(code: i32, message: String) -> Result<(), WireError> {
    if code == 0 {
        return Ok(());
    }
    let code = ErrorCode::try_from(code).unwrap_or(ErrorCode::UnknownServerError);
    Err(WireError::new(code, message))
}

fn unanswered(node: u64, s: &Status) -> WireError {
    WireError::new(
        ErrorCode::BrokerNotAvailable,
        format!("broker {node} did not answer: {}", s.message()),
    )
}

fn timed_out(node: u64) -> WireError {
    WireError::new(ErrorCode::RequestTimedOut, format!("broker {node} did not answer in time"))
}

/// Committed batches of `topic`/`partition` from `from` (whole batches, the one holding `from`
/// first), at most about `max_bytes`, through its leader.
pub(crate) async fn read(
    shared: &Shared,
    topic: &str,
    partition: u32,
    from: u64,
    max_bytes: u32,
) -> Result<Read, WireError> {
    let leader = leader_of(shared, topic, partition)?;
    if leader == shared.config.node_id {
        return read_here(shared, topic, partition, from, max_bytes).await;
    }
    let mut c = client(shared, leader)?;
    let req = pb::ReadCommittedRequest {
        topic: topic.to_string(),
        partition,
        from_offset: from,
        max_bytes: max_bytes.min(MAX_READ_BYTES),
    };
    let r = match tokio::time::timeout(CALL_TIMEOUT, c.read_committed(req)).await {
        Err(_) => return Err(timed_out(leader)),
        Ok(Err(s)) => return Err(unanswered(leader, &s)),
        Ok(Ok(r)) => r.into_inner(),
    };
    from_code(r.error_code, r.error_message)?;
    Ok(Read {
        data: r.data,
        next_offset: r.next_offset,
        log_start: r.log_start,
        high_watermark: r.high_watermark,
    })
}

async fn read_here(
    shared: &Shared,
    topic: &str,
    partition: u32,
    from: u64,
    max_bytes: u32,
) -> Result<Read, WireError> {
    let handle = shared.leader_handle(topic, partition)?;
    let state = handle.state();
    let (log_start, hw) = (state.log_start.0, state.high_watermark.0);
    if from < log_start || from >= hw {
        // Below the log start (retention went past) or nothing committed to read: say where
        // the log stands.
        return Ok(Read { data: Bytes::new(), next_offset: from, log_start, high_watermark: hw });
    }
    let r = handle.read(Offset(from), max_bytes.min(MAX_READ_BYTES) as usize).await?;
    Ok(Read {
        data: r.data,
        next_offset: r.next_offset.0,
        log_start,
        high_watermark: handle.state().high_watermark.0,
    })
}

/// Appends `batch` to `topic`/`partition` through its leader; answers once committed.
pub(crate) async fn append(
    shared: &Shared,
    topic: &str,
    partition: u32,
    batch: Vec<u8>,
) -> Result<u64, WireError> {
    let leader = leader_of(shared, topic, partition)?;
    if leader == shared.config.node_id {
        return append_here(shared, topic, partition, batch).await;
    }
    let mut c = client(shared, leader)?;
    let req =
        pb::AppendCommittedRequest { topic: topic.to_string(), partition, batch: batch.into() };
    let r = match tokio::time::timeout(CALL_TIMEOUT, c.append_committed(req)).await {
        Err(_) => return Err(timed_out(leader)),
        Ok(Err(s)) => return Err(unanswered(leader, &s)),
        Ok(Ok(r)) => r.into_inner(),
    };
    from_code(r.error_code, r.error_message)?;
    Ok(r.base_offset)
}

async fn append_here(
    shared: &Shared,
    topic: &str,
    partition: u32,
    batch: Vec<u8>,
) -> Result<u64, WireError> {
    let handle = shared.leader_handle(topic, partition)?;
    let timeout = Duration::from_millis(shared.config.request_timeout_ms);
    match tokio::time::timeout(timeout, handle.append(vec![batch], WaitFor::Commit)).await {
        Err(_) => Err(WireError::new(ErrorCode::RequestTimedOut, "append not committed in time")),
        Ok(r) => Ok(r?.base_offset.0),
    }
}

/// The internal `ShareBroker` service.
#[derive(Debug, Clone)]
pub(crate) struct ShareBrokerService {
    shared: Arc<Shared>,
}

impl ShareBrokerService {
    pub fn new(shared: Arc<Shared>) -> ShareBrokerService {
        ShareBrokerService { shared }
    }
}

fn code_of<T>(r: &Result<T, WireError>) -> (i32, String) {
    match r {
        Ok(_) => (0, String::new()),
        Err(e) => (e.code as i32, e.message.clone()),
    }
}

#[tonic::async_trait]
impl pb::share_broker_server::ShareBroker for ShareBrokerService {
    async fn read_committed(
        &self,
        req: Request<pb::ReadCommittedRequest>,
    ) -> Result<Response<pb::ReadCommittedResponse>, Status> {
        let r = req.into_inner();
        let out = read_here(&self.shared, &r.topic, r.partition, r.from_offset, r.max_bytes).await;
        let (error_code, error_message) = code_of(&out);
        let out = out.ok();
        Ok(Response::new(pb::ReadCommittedResponse {
            error_code,
            error_message,
            data: out.as_ref().map(|o| o.data.clone()).unwrap_or_default(),
            next_offset: out.as_ref().map_or(0, |o| o.next_offset),
            log_start: out.as_ref().map_or(0, |o| o.log_start),
            high_watermark: out.as_ref().map_or(0, |o| o.high_watermark),
        }))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        Ok(Response::new(super::forward::serve(&self.shared, req.into_inner()).await))
    }

    async fn append_committed(
        &self,
        req: Request<pb::AppendCommittedRequest>,
    ) -> Result<Response<pb::AppendCommittedResponse>, Status> {
        let r = req.into_inner();
        // Only batches the coordinator built (dead letters) arrive here: the same validation a
        // producer's batch gets, so a confused peer cannot store garbage.
        let max = self.shared.topic_config(&r.topic).map_or(0, |c| c.max_message_bytes);
        let out = match silt_core::batch::validate(&r.batch, max) {
            Err(e) => Err(WireError::new(ErrorCode::CorruptMessage, e.to_string())),
            Ok(_) => append_here(&self.shared, &r.topic, r.partition, r.batch.to_vec()).await,
        };
        let (error_code, error_message) = code_of(&out);
        Ok(Response::new(pb::AppendCommittedResponse {
            error_code,
            error_message,
            base_offset: out.unwrap_or(0),
        }))
    }
}
