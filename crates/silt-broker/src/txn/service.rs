//! The client-facing `Transactions` service: coordinator lookup, EndTxn, listings.

use std::sync::Arc;

use silt_proto::v1::{self, ErrorCode};
use silt_raft::AclOperation;
use tonic::{Request, Response, Status};

use super::coordinator::{self, by_topic, locate};
use super::records::state_name;
use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use crate::service::metadata::view;

/// Longest transactional id (Kafka has none; Silt bounds what it stores per id).
const MAX_ID_BYTES: usize = 249;

/// A transactional id the brokers accept: 1 to 249 bytes.
pub(crate) fn check_id(id: &str) -> Result<(), WireError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            format!("a transactional id has 1 to {MAX_ID_BYTES} bytes, not {}", id.len()),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) struct TransactionsService {
    shared: Arc<Shared>,
}

impl TransactionsService {
    pub fn new(shared: Arc<Shared>) -> TransactionsService {
        TransactionsService { shared }
    }

    async fn find(&self, id: &str) -> Result<v1::FindTxnCoordinatorResponse, WireError> {
        self.shared.serving()?;
        check_id(id)?;
        coordinator::ensure_topic(&self.shared).await?;
        let loc = locate(&view(&self.shared), id)?;
        let node_id = loc.leader.ok_or_else(|| {
            WireError::new(ErrorCode::CoordinatorNotAvailable, "no leader for the id's partition")
        })?;
        Ok(v1::FindTxnCoordinatorResponse {
            error_code: 0,
            error_message: String::new(),
            node_id,
            address: loc.address,
            partition: loc.partition,
        })
    }
}

fn state_of(shared: &Shared, id: &str, t: &silt_core::txn::Txn) -> v1::TransactionState {
    let open = matches!(
        t.state,
        silt_core::txn::TxnState::Ongoing
            | silt_core::txn::TxnState::PrepareCommit
            | silt_core::txn::TxnState::PrepareAbort
    );
    v1::TransactionState {
        transactional_id: id.to_string(),
        producer_id: t.producer_id,
        producer_epoch: i32::from(t.epoch),
        state: state_name(t.state).to_string(),
        timeout_ms: u32::try_from(t.timeout_ms).unwrap_or(u32::MAX),
        start_time_ms: if open { t.started_ms as i64 } else { 0 },
        partitions: by_topic(&t.partitions)
            .into_iter()
            .map(|(topic, partitions)| v1::TopicPartitions { topic: topic.to_string(), partitions })
            .collect(),
        coordinator: shared.config.node_id,
    }
}

fn parts<T>(r: &Result<T, WireError>) -> (i32, String) {
    match r {
        Ok(_) => (0, String::new()),
        Err(e) => (e.code as i32, e.message.clone()),
    }
}

#[tonic::async_trait]
impl v1::transactions_server::Transactions for TransactionsService {
    async fn find_coordinator(
        &self,
        req: Request<v1::FindTxnCoordinatorRequest>,
    ) -> Result<Response<v1::FindTxnCoordinatorResponse>, Status> {
        let access = Access::of(&req);
        let id = req.into_inner().transactional_id;
        let r = match access.transactional_id(&self.shared, AclOperation::Describe, &id) {
            Ok(()) => self.find(&id).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = parts(&r);
        Ok(Response::new(r.unwrap_or(v1::FindTxnCoordinatorResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn end_txn(
        &self,
        req: Request<v1::EndTxnRequest>,
    ) -> Result<Response<v1::EndTxnResponse>, Status> {
        let access = Access::of(&req);
        let r = req.into_inner();
        let id = r.transactional_id;
        let out = match access.transactional_id(&self.shared, AclOperation::Write, &id) {
            Ok(()) => match i16::try_from(r.producer_epoch) {
                Ok(epoch) => {
                    coordinator::end_txn(&self.shared, &id, r.producer_id, epoch, r.commit).await
                }
                Err(_) => Err(WireError::new(ErrorCode::InvalidRequest, "epoch out of range")),
            },
            Err(e) => Err(e),
        };
        let (error_code, error_message) = parts(&out);
        let (producer_id, epoch) = out.unwrap_or((-1, -1));
        Ok(Response::new(v1::EndTxnResponse {
            error_code,
            error_message,
            producer_id,
            producer_epoch: i32::from(epoch),
        }))
    }

    async fn list_transactions(
        &self,
        req: Request<v1::ListTransactionsRequest>,
    ) -> Result<Response<v1::ListTransactionsResponse>, Status> {
        let access = Access::of(&req);
        let transactions = coordinator::listed(&self.shared)
            .into_iter()
            .filter(|l| {
                access.transactional_id(&self.shared, AclOperation::Describe, &l.id).is_ok()
            })
            .map(|l| state_of(&self.shared, &l.id, &l.txn))
            .collect();
        Ok(Response::new(v1::ListTransactionsResponse { transactions }))
    }

    async fn describe_transaction(
        &self,
        req: Request<v1::DescribeTransactionRequest>,
    ) -> Result<Response<v1::DescribeTransactionResponse>, Status> {
        let access = Access::of(&req);
        let id = req.into_inner().transactional_id;
        let r = match access.transactional_id(&self.shared, AclOperation::Describe, &id) {
            Ok(()) => coordinator::describe(&self.shared, &id).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = parts(&r);
        Ok(Response::new(v1::DescribeTransactionResponse {
            error_code,
            error_message,
            transaction: r.ok().map(|t| state_of(&self.shared, &id, &t)),
        }))
    }

    async fn commit_offsets(
        &self,
        req: Request<v1::TxnCommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        // WRITE on the transactional id, READ on the group and on every topic (Kafka's rights
        // for TxnOffsetCommit).
        let access = Access::of(&req);
        let req = req.into_inner();
        let shared = &self.shared;
        let allowed = access
            .transactional_id(shared, AclOperation::Write, &req.transactional_id)
            .and_then(|()| access.group(shared, AclOperation::Read, &req.group))
            .and_then(|()| {
                req.offsets
                    .iter()
                    .try_for_each(|o| access.topic(shared, AclOperation::Read, &o.topic))
            });
        let r = match allowed.and_then(|()| check_id(&req.transactional_id)) {
            Ok(()) => crate::groups::txn_offsets::commit(shared, &req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = parts(&r);
        let partitions = req
            .offsets
            .iter()
            .map(|o| v1::CommitOffsetsResult {
                topic: o.topic.clone(),
                partition: o.partition,
                error_code,
                error_message: error_message.clone(),
            })
            .collect();
        Ok(Response::new(v1::CommitOffsetsResponse { error_code, error_message, partitions }))
    }
}
