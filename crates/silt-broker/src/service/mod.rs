//! The gRPC services: `Data` (produce, fetch, list offsets), `Metadata` and `Admin`. Each handler
//! checks its input, works per partition, and answers every partition with an `ErrorCode`.

mod admin;
mod fetch;
mod metadata;
mod produce;

use std::sync::Arc;

use silt_proto::v1;
use tonic::{Request, Response, Status};

use crate::broker::Shared;

pub(crate) use admin::AdminService;
pub(crate) use metadata::MetadataService;

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
        Ok(Response::new(produce::produce(&self.shared, req.into_inner()).await))
    }

    async fn fetch(
        &self,
        req: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        Ok(Response::new(fetch::fetch(&self.shared, req.into_inner()).await))
    }

    async fn list_offsets(
        &self,
        req: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        Ok(Response::new(fetch::list_offsets(&self.shared, req.into_inner()).await))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
