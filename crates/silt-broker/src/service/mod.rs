//! The gRPC services: `Data` (produce, fetch, list offsets), `Metadata` and `Admin`. Each handler
//! checks its input, works per partition, and answers every partition with an `ErrorCode`.

mod admin;
mod fetch;
pub(crate) mod metadata;
mod produce;
mod reassign;
#[cfg(feature = "fault-injection")]
pub use produce::CRASH_BEFORE_ANSWER_FILE;
pub(crate) mod produce_budget;
mod security;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use silt_proto::v1;
use tonic::{Request, Response, Status};

use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use silt_raft::{AclOperation, ResourceType};

pub(crate) use admin::{AdminService, MAX_PARTITIONS};
pub(crate) use metadata::MetadataService;
pub(crate) use security::SecurityService;

/// Kafka's `transaction.timeout.ms` default.
const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;

/// The `Data` service: produce, fetch and offset lookups.
#[derive(Debug, Clone)]
pub(crate) struct DataService {
    shared: Arc<Shared>,
}

impl DataService {
    pub fn new(shared: Arc<Shared>) -> DataService {
        DataService { shared }
    }
}

#[tonic::async_trait]
impl v1::data_server::Data for DataService {
    async fn produce(
        &self,
        req: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        let started = std::time::Instant::now();
        let budget = req.extensions().get::<produce_budget::Reservation>().cloned();
        let access = Access::of(&req);
        let req = req.into_inner();
        let m = &self.shared.metrics;
        let bytes: usize =
            req.topics.iter().flat_map(|t| &t.partitions).map(produce::data_bytes).sum();
        let resp = produce::produce(&self.shared, &access, req, budget.unwrap_or_default()).await;
        let errors =
            resp.topics.iter().flat_map(|t| &t.partitions).filter(|p| p.error_code != 0).count();
        m.produce_requests.fetch_add(1, Ordering::Relaxed);
        m.produce_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        m.produce_partition_errors.fetch_add(errors as u64, Ordering::Relaxed);
        m.produce_latency.observe(started.elapsed());
        Ok(Response::new(resp))
    }

    async fn fetch(
        &self,
        req: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let started = std::time::Instant::now();
        let access = Access::of(&req);
        let resp = fetch::fetch(&self.shared, &access, req.into_inner()).await;
        let bytes: usize =
            resp.topics.iter().flat_map(|t| &t.partitions).map(|p| p.record_batches.len()).sum();
        let m = &self.shared.metrics;
        m.fetch_requests.fetch_add(1, Ordering::Relaxed);
        m.fetch_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        m.fetch_latency.observe(started.elapsed());
        Ok(Response::new(resp))
    }

    async fn list_offsets(
        &self,
        req: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        let access = Access::of(&req);
        Ok(Response::new(fetch::list_offsets(&self.shared, &access, req.into_inner()).await))
    }

    async fn init_producer_id(
        &self,
        req: Request<v1::InitProducerIdRequest>,
    ) -> Result<Response<v1::InitProducerIdResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match &req.transactional_id {
            Some(id) => self.init_transactional(&access, id, req.transaction_timeout_ms).await,
            None => self.init_idempotent(&access).await,
        };
        Ok(Response::new(match r {
            Ok((producer_id, epoch)) => v1::InitProducerIdResponse {
                error_code: v1::ErrorCode::None as i32,
                error_message: String::new(),
                producer_id,
                producer_epoch: i32::from(epoch),
            },
            Err(e) => v1::InitProducerIdResponse {
                error_code: e.code as i32,
                error_message: e.message,
                producer_id: -1,
                producer_epoch: -1,
            },
        }))
    }
}

impl DataService {
    /// A new producer id at epoch 0 (Kafka's rule: WRITE on some topic).
    async fn init_idempotent(&self, access: &Access) -> Result<(i64, i16), WireError> {
        if !access.may_any(&self.shared, AclOperation::Write, ResourceType::Topic) {
            return Err(WireError::new(
                v1::ErrorCode::ClusterAuthorizationFailed,
                format!("{} may write no topic: no producer id", access.name()),
            ));
        }
        self.shared.serving()?;
        Ok((crate::cluster::next_producer_id(&self.shared).await?, 0))
    }

    /// The transactional id's producer id at a bumped epoch, from its coordinator.
    async fn init_transactional(
        &self,
        access: &Access,
        id: &str,
        timeout_ms: u32,
    ) -> Result<(i64, i16), WireError> {
        access.transactional_id(&self.shared, AclOperation::Write, id)?;
        crate::txn::check_id(id)?;
        self.shared.serving()?;
        let timeout_ms = match timeout_ms {
            0 => DEFAULT_TRANSACTION_TIMEOUT_MS,
            t => u64::from(t),
        };
        crate::txn::coordinator::init_producer_id(&self.shared, id, timeout_ms).await
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
