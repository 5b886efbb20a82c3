//! The broker-to-broker side of transactions (`silt.internal.v1.TxnBroker`, on the internal
//! listener): a partition leader asks the coordinator to add its partition to a producer's
//! transaction before appending the producer's first transactional batch (KIP-890 v2
//! verification), and the coordinator asks partition leaders to write markers. Either side
//! calls itself in process when it is both.

use std::sync::Arc;
use std::time::Duration;

use silt_core::batch::Marker;
use silt_core::txn::Tp;
use silt_proto::internal::txn_broker_client::TxnBrokerClient;
use silt_proto::internal::{self as pb};
use silt_proto::v1::ErrorCode;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::coordinator;
use crate::broker::Shared;
use crate::error::WireError;
use crate::service::metadata::view;

/// Longest wait for one broker-to-broker transaction call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of broker `node`'s `TxnBroker` service.
fn client(shared: &Shared, node: u64) -> Result<TxnBrokerClient<Channel>, WireError> {
    Ok(TxnBrokerClient::new(shared.peers.channel(shared, node)?))
}

fn answer_of(r: Result<(), WireError>) -> pb::TxnAnswer {
    match r {
        Ok(()) => pb::TxnAnswer { error_code: 0, error_message: String::new() },
        Err(e) => pb::TxnAnswer { error_code: e.code as i32, error_message: e.message },
    }
}

fn from_answer(r: Result<Response<pb::TxnAnswer>, Status>, node: u64) -> Result<(), WireError> {
    match r {
        Ok(a) => {
            let a = a.into_inner();
            if a.error_code == 0 {
                return Ok(());
            }
            let code = ErrorCode::try_from(a.error_code).unwrap_or(ErrorCode::UnknownServerError);
            Err(WireError::new(code, a.error_message))
        }
        Err(s) => Err(WireError::new(
            ErrorCode::BrokerNotAvailable,
            format!("broker {node} did not answer: {}", s.message()),
        )),
    }
}

/// Partition leader: has `id`'s coordinator add `tp` to the producer's transaction at `epoch`
/// (remembered, so the transaction's later batches here skip the call).
pub(crate) async fn verify(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    tp: &Tp,
) -> Result<(), WireError> {
    if shared.txn.is_verified(id, tp, producer_id, epoch) {
        return Ok(());
    }
    let loc = coordinator::locate(&view(shared), id)?;
    let r = match loc.leader {
        None => Err(crate::groups::coordinator::not_available(
            "the transactional id's coordinator partition has no leader",
        )),
        Some(me) if me == shared.config.node_id => {
            coordinator::add_partition(shared, id, producer_id, epoch, tp.clone()).await
        }
        Some(node) => {
            let mut c = client(shared, node)?;
            let req = pb::AddPartitionRequest {
                transactional_id: id.to_string(),
                producer_id,
                producer_epoch: i32::from(epoch),
                topic: tp.0.clone(),
                partition: tp.1,
            };
            let r = tokio::time::timeout(CALL_TIMEOUT, c.add_partition(req)).await;
            match r {
                Ok(r) => from_answer(r, node),
                Err(_) => Err(WireError::new(
                    ErrorCode::RequestTimedOut,
                    format!("the coordinator (broker {node}) did not answer in time"),
                )),
            }
        }
    };
    if r.is_ok() {
        shared.txn.set_verified(id, tp, producer_id, epoch);
    }
    r
}

/// Coordinator: writes `marker` to partition `tp` through its leader (here or remote); a
/// partition whose topic is gone needs none.
pub(crate) async fn write_marker(
    shared: &Shared,
    tp: &Tp,
    marker: Marker,
) -> Result<(), WireError> {
    let v = view(shared);
    let Some(t) = v.topics.get(&tp.0) else { return Ok(()) };
    let leader = t.partitions.get(tp.1 as usize).and_then(|p| p.leader).ok_or_else(|| {
        WireError::new(ErrorCode::BrokerNotAvailable, format!("{}/{} has no leader", tp.0, tp.1))
    })?;
    if leader == shared.config.node_id {
        return write_here(shared, tp, marker).await;
    }
    let mut c = client(shared, leader)?;
    let req = pb::WriteMarkerRequest {
        topic: tp.0.clone(),
        partition: tp.1,
        producer_id: marker.producer_id,
        producer_epoch: i32::from(marker.producer_epoch),
        commit: marker.commit,
        coordinator_epoch: marker.coordinator_epoch,
    };
    match tokio::time::timeout(CALL_TIMEOUT, c.write_marker(req)).await {
        Ok(r) => from_answer(r, leader),
        Err(_) => Err(WireError::new(
            ErrorCode::RequestTimedOut,
            format!("broker {leader} did not write the marker in time"),
        )),
    }
}

async fn write_here(shared: &Shared, tp: &Tp, marker: Marker) -> Result<(), WireError> {
    let handle = shared.leader_handle(&tp.0, tp.1)?;
    handle.write_marker(marker).await?;
    if tp.0 == crate::groups::records::OFFSETS_TOPIC {
        crate::groups::txn_offsets::on_marker(shared, tp.1, &marker).await;
    }
    Ok(())
}

/// The internal `TxnBroker` service.
#[derive(Debug, Clone)]
pub(crate) struct TxnBrokerService {
    shared: Arc<Shared>,
}

impl TxnBrokerService {
    pub fn new(shared: Arc<Shared>) -> TxnBrokerService {
        TxnBrokerService { shared }
    }
}

fn epoch16(epoch: i32) -> Result<i16, WireError> {
    i16::try_from(epoch).map_err(|_| {
        WireError::new(ErrorCode::InvalidRequest, format!("producer epoch {epoch} out of range"))
    })
}

#[tonic::async_trait]
impl pb::txn_broker_server::TxnBroker for TxnBrokerService {
    async fn add_partition(
        &self,
        req: Request<pb::AddPartitionRequest>,
    ) -> Result<Response<pb::TxnAnswer>, Status> {
        let r = req.into_inner();
        let shared = &self.shared;
        let out = match epoch16(r.producer_epoch) {
            Ok(epoch) => {
                let tp = (r.topic, r.partition);
                coordinator::add_partition(shared, &r.transactional_id, r.producer_id, epoch, tp)
                    .await
            }
            Err(e) => Err(e),
        };
        Ok(Response::new(answer_of(out)))
    }

    async fn write_marker(
        &self,
        req: Request<pb::WriteMarkerRequest>,
    ) -> Result<Response<pb::TxnAnswer>, Status> {
        let r = req.into_inner();
        let out = match epoch16(r.producer_epoch) {
            Ok(producer_epoch) => {
                let marker = Marker {
                    commit: r.commit,
                    producer_id: r.producer_id,
                    producer_epoch,
                    coordinator_epoch: r.coordinator_epoch,
                };
                write_here(&self.shared, &(r.topic, r.partition), marker).await
            }
            Err(e) => Err(e),
        };
        Ok(Response::new(answer_of(out)))
    }
}
