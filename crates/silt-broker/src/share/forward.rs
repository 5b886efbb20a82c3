//! Share group calls from a broker that is not the group's coordinator to the one that is: the
//! Kafka listener takes ShareGroupHeartbeat, ShareFetch and ShareAcknowledge on any broker
//! (Kafka clients send fetches to partition leaders), and Silt's share-partitions live with the
//! coordinator. In process when this broker coordinates the group; otherwise
//! `ShareBroker.Forward` on the internal listener. The caller has authorized the request.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use silt_proto::internal::{self as pb};
use silt_proto::v1::{self, ErrorCode};

use super::coordinator as coord;
use super::service::ShareService;
use crate::broker::Shared;
use crate::error::WireError;
use crate::service::metadata::view;

/// Longest wait for a forwarded call beyond the fetch's own wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A silt.v1 share response with its top-level error.
trait Coded {
    fn code(&self) -> (i32, &str);
}

macro_rules! coded {
    ($($t:ty),*) => {$(
        impl Coded for $t {
            fn code(&self) -> (i32, &str) {
                (self.error_code, &self.error_message)
            }
        }
    )*};
}

coded!(v1::ShareGroupHeartbeatResponse, v1::ShareFetchResponse, v1::ShareAcknowledgeResponse);

fn checked<T: Coded>(r: T) -> Result<T, WireError> {
    let (code, message) = r.code();
    if code == 0 {
        return Ok(r);
    }
    let code = ErrorCode::try_from(code).unwrap_or(ErrorCode::UnknownServerError);
    Err(WireError::new(code, message))
}

/// The coordinator of `group`: `None` when it is this broker.
async fn coordinator(shared: &Arc<Shared>, group: &str) -> Result<Option<u64>, WireError> {
    coord::ensure_state_topic(shared).await?;
    let loc = coord::locate(&view(shared), group)?;
    let node = loc.leader.ok_or_else(|| {
        WireError::new(
            ErrorCode::CoordinatorNotAvailable,
            "no leader for the group's partition yet",
        )
    })?;
    Ok((node != shared.config.node_id).then_some(node))
}

async fn remote<Req: Message, Resp: Message + Default + Coded>(
    shared: &Shared,
    node: u64,
    kind: pb::ForwardKind,
    req: &Req,
    wait: Duration,
) -> Result<Resp, WireError> {
    let mut c =
        pb::share_broker_client::ShareBrokerClient::new(shared.peers.channel(shared, node)?)
            .max_decoding_message_size(super::peer::MAX_READ_BYTES as usize + 1024 * 1024)
            .max_encoding_message_size(shared.config.max_request_bytes);
    let call =
        c.forward(pb::ForwardRequest { kind: kind as i32, request: req.encode_to_vec().into() });
    let r = match tokio::time::timeout(CALL_TIMEOUT + wait, call).await {
        Err(_) => {
            return Err(WireError::new(
                ErrorCode::RequestTimedOut,
                format!("the share coordinator (broker {node}) did not answer in time"),
            ));
        }
        Ok(Err(s)) => {
            return Err(WireError::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("the share coordinator (broker {node}) did not answer: {}", s.message()),
            ));
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    if r.error_code != 0 {
        let code = ErrorCode::try_from(r.error_code).unwrap_or(ErrorCode::UnknownServerError);
        return Err(WireError::new(code, r.error_message));
    }
    let resp = Resp::decode(r.response).map_err(|e| {
        WireError::new(ErrorCode::UnknownServerError, format!("broker {node}'s answer: {e}"))
    })?;
    checked(resp)
}

pub(crate) async fn heartbeat(
    shared: &Arc<Shared>,
    req: v1::ShareGroupHeartbeatRequest,
) -> Result<v1::ShareGroupHeartbeatResponse, WireError> {
    match coordinator(shared, &req.group).await? {
        None => ShareService::new(shared.clone()).heartbeat(req).await,
        Some(node) => remote(shared, node, pb::ForwardKind::Heartbeat, &req, Duration::ZERO).await,
    }
}

pub(crate) async fn fetch(
    shared: &Arc<Shared>,
    req: v1::ShareFetchRequest,
) -> Result<v1::ShareFetchResponse, WireError> {
    match coordinator(shared, &req.group).await? {
        None => ShareService::new(shared.clone()).fetch(req).await,
        Some(node) => {
            let wait = Duration::from_millis(u64::from(req.max_wait_ms));
            remote(shared, node, pb::ForwardKind::Fetch, &req, wait).await
        }
    }
}

pub(crate) async fn acknowledge(
    shared: &Arc<Shared>,
    req: v1::ShareAcknowledgeRequest,
) -> Result<v1::ShareAcknowledgeResponse, WireError> {
    match coordinator(shared, &req.group).await? {
        None => ShareService::new(shared.clone()).acknowledge(req).await,
        Some(node) => {
            remote(shared, node, pb::ForwardKind::Acknowledge, &req, Duration::ZERO).await
        }
    }
}

fn answer<Resp: Message>(r: Result<Resp, WireError>) -> pb::ForwardResponse {
    match r {
        Ok(resp) => pb::ForwardResponse {
            error_code: 0,
            error_message: String::new(),
            response: resp.encode_to_vec().into(),
        },
        Err(e) => pb::ForwardResponse {
            error_code: e.code as i32,
            error_message: e.message,
            response: Default::default(),
        },
    }
}

fn undecodable(e: prost::DecodeError) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, format!("forwarded request: {e}"))
}

/// The coordinator's side of `ShareBroker.Forward`.
pub(crate) async fn serve(shared: &Arc<Shared>, req: pb::ForwardRequest) -> pb::ForwardResponse {
    let service = ShareService::new(shared.clone());
    match pb::ForwardKind::try_from(req.kind) {
        Ok(pb::ForwardKind::Heartbeat) => match v1::ShareGroupHeartbeatRequest::decode(req.request)
        {
            Ok(r) => answer(service.heartbeat(r).await),
            Err(e) => answer::<v1::ShareGroupHeartbeatResponse>(Err(undecodable(e))),
        },
        Ok(pb::ForwardKind::Fetch) => match v1::ShareFetchRequest::decode(req.request) {
            Ok(r) => answer(service.fetch(r).await),
            Err(e) => answer::<v1::ShareFetchResponse>(Err(undecodable(e))),
        },
        Ok(pb::ForwardKind::Acknowledge) => {
            match v1::ShareAcknowledgeRequest::decode(req.request) {
                Ok(r) => answer(service.acknowledge(r).await),
                Err(e) => answer::<v1::ShareAcknowledgeResponse>(Err(undecodable(e))),
            }
        }
        _ => answer::<v1::ShareFetchResponse>(Err(WireError::new(
            ErrorCode::InvalidRequest,
            format!("unknown forward kind {}", req.kind),
        ))),
    }
}
