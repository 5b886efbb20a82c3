//! The broker's produce memory budget (Kafka's `queued.max.request.bytes`): every `Produce`
//! request reserves its size from one per-broker pool **before its body is read**, and gives the
//! reservation back once its data is appended to the log (or refused). When the pool is spent, a
//! request waits before reading its body, so HTTP/2 flow control stops the sender: a flood
//! (acks=0 above all, which answers before appending) queues on the client, not in the broker.
//!
//! The size comes from the gRPC message prefix (1 flag byte, 4 length bytes, big endian), read
//! from the first bytes of the body: at most one HTTP/2 frame is held before the reservation.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// The gRPC path whose bodies are budgeted.
const PRODUCE_PATH: &str = "/silt.v1.Data/Produce";
/// gRPC's length prefix: compressed flag and message length.
const GRPC_PREFIX_BYTES: usize = 5;

/// The per-broker pool of produce bytes.
#[derive(Debug, Clone)]
pub struct ProduceBudget {
    pool: Arc<Semaphore>,
    capacity: usize,
    /// The largest message a request may carry (the service refuses larger ones itself).
    max_message: usize,
}

impl ProduceBudget {
    /// A pool of `capacity` bytes; `capacity >= max_message` (checked by the config).
    pub fn new(capacity: usize, max_message: usize) -> ProduceBudget {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        ProduceBudget { pool: Arc::new(Semaphore::new(capacity)), capacity, max_message }
    }

    /// Bytes reserved now (received or queued produce data not yet appended).
    pub fn in_use(&self) -> usize {
        self.capacity - self.pool.available_permits()
    }

    /// Waits for `bytes` (capped at the pool's size, so one request never waits forever).
    async fn reserve(&self, bytes: usize) -> Reservation {
        let n = bytes.clamp(1, self.capacity).min(u32::MAX as usize) as u32;
        let permit = self.pool.clone().acquire_many_owned(n).await.ok();
        Reservation(Arc::new(Mutex::new(permit)))
    }
}

/// Produce bytes held from the pool; released when the last part is dropped. Travels in the
/// request's extensions to the handler, which splits it per partition and hands each part to
/// the partition worker with the data.
#[derive(Debug, Clone, Default)]
pub struct Reservation(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Reservation {
    /// Takes up to `bytes` of this reservation out as its own part (held until dropped).
    pub fn split(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let p = g.as_mut()?;
        let n = bytes.min(p.num_permits());
        if n == 0 {
            return None;
        }
        if n == p.num_permits() { g.take() } else { p.split(n) }
    }
}

/// Wraps the `Data` service: budgets `Produce` bodies, passes everything else through.
#[derive(Debug, Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: ProduceBudget,
}

impl<S> Budgeted<S> {
    pub fn new(inner: S, budget: ProduceBudget) -> Budgeted<S> {
        Budgeted { inner, budget }
    }
}

impl<S: NamedService> NamedService for Budgeted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Budgeted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path() != PRODUCE_PATH {
            return Box::pin(inner.call(req));
        }
        let budget = self.budget.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match read_budgeted(body, &budget).await {
                Ok((bytes, reservation)) => {
                    parts.extensions.insert(reservation);
                    inner.call(http::Request::from_parts(parts, Body::new(full(bytes)))).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

fn full(bytes: Bytes) -> http_body_util::Full<Bytes> {
    http_body_util::Full::new(bytes)
}

/// Reads the first bytes of a produce body, reserves the message's size, then reads the rest
/// (never more than the prefix announced).
async fn read_budgeted(
    mut body: Body,
    budget: &ProduceBudget,
) -> Result<(Bytes, Reservation), tonic::Status> {
    let mut buf = BytesMut::new();
    let mut reservation = None;
    let mut expected = usize::MAX;
    loop {
        if reservation.is_none() && buf.len() >= GRPC_PREFIX_BYTES {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > budget.max_message {
                return Err(tonic::Status::resource_exhausted(format!(
                    "produce request of {len} bytes exceeds max_request_bytes = {}",
                    budget.max_message
                )));
            }
            expected = GRPC_PREFIX_BYTES + len;
            reservation = Some(budget.reserve(expected).await);
        }
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(tonic::Status::cancelled(format!("request body: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > expected {
                        return Err(tonic::Status::invalid_argument(
                            "produce body longer than its message (one message per request)",
                        ));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    // A body shorter than a prefix holds nothing (tonic refuses it).
    Ok((buf.freeze(), reservation.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spent_pool_makes_the_next_request_wait_until_data_is_appended() {
        let budget = ProduceBudget::new(1000, 1000);
        let r = budget.reserve(800).await;
        assert_eq!(budget.in_use(), 800);
        let part = r.split(300).expect("a part");
        drop(r);
        assert_eq!(budget.in_use(), 300, "the handler's unsplit rest is given back when it ends");
        let wait = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, budget.reserve(800)).await.is_err(),
            "800 more bytes do not fit while a partition still holds 300"
        );
        drop(part);
        let again = tokio::time::timeout(wait, budget.reserve(800)).await;
        let again = again.expect("appended data gave its bytes back");
        assert!(again.split(10_000).is_some(), "a part larger than what is held takes it all");
        assert!(again.split(1).is_none(), "nothing is left");
        assert!(Reservation::default().split(1).is_none());
    }

    #[tokio::test]
    async fn a_request_larger_than_the_pool_still_runs_alone() {
        let budget = ProduceBudget::new(100, 1000);
        let r = budget.reserve(1000).await;
        assert_eq!(budget.in_use(), 100);
        drop(r);
        assert_eq!(budget.in_use(), 0);
    }
}
