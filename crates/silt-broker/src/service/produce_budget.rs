//! The broker's produce memory budget (Kafka's `queued.max.request.bytes`): every `Produce`
//! request reserves its size from one per-broker pool **before its body is read**, and gives the
//! reservation back once its data is appended to the log (or refused). When the pool is spent, a
//! request waits before reading its body, so HTTP/2 flow control stops the sender: a flood
//! (acks=0 above all, which answers before appending) queues on the client, not in the broker.
//!
//! The size comes from the gRPC message prefix (1 flag byte, 4 length bytes, big endian), read
//! from the first bytes of the body: at most one HTTP/2 frame is held before the reservation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
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

/// The per-broker pool of produce bytes, and each connection's share of it.
#[derive(Debug, Clone)]
pub struct ProduceBudget {
    pool: Arc<Semaphore>,
    capacity: usize,
    /// The most one connection may hold (so one client cannot take the whole pool).
    per_connection: usize,
    connections: Arc<Mutex<Connections>>,
    /// The largest message a request may carry (the service refuses larger ones itself).
    max_message: usize,
}

/// Each connection's semaphore, by remote address; idle ones are pruned as the map grows.
#[derive(Debug, Default)]
struct Connections {
    by_peer: HashMap<SocketAddr, Arc<Semaphore>>,
    prune_at: usize,
}

/// Map sizes below which idle connections are not pruned.
const PRUNE_FLOOR: usize = 256;

impl ProduceBudget {
    /// A pool of `capacity` bytes, at most `per_connection` of them per connection; both at
    /// least `max_message` (checked by the config).
    pub fn new(capacity: usize, per_connection: usize, max_message: usize) -> ProduceBudget {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        ProduceBudget {
            pool: Arc::new(Semaphore::new(capacity)),
            capacity,
            per_connection: per_connection.clamp(1, capacity),
            connections: Arc::default(),
            max_message,
        }
    }

    /// Bytes reserved now (received or queued produce data not yet appended).
    pub fn in_use(&self) -> usize {
        self.capacity - self.pool.available_permits()
    }

    /// This connection's semaphore (created on first use).
    fn connection(&self, peer: SocketAddr) -> Arc<Semaphore> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if c.by_peer.len() >= c.prune_at.max(PRUNE_FLOOR) {
            let full = self.per_connection;
            c.by_peer.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
            c.prune_at = 2 * c.by_peer.len();
        }
        c.by_peer
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_connection)))
            .clone()
    }

    /// Waits for `bytes` from the connection's share, then from the pool (each capped at its
    /// size, so one request never waits forever; always in this order, so no two requests
    /// wait for each other).
    pub(crate) async fn reserve(&self, bytes: usize, peer: Option<SocketAddr>) -> Reservation {
        let take = |limit: usize| bytes.clamp(1, limit).min(u32::MAX as usize) as u32;
        let conn = match peer {
            Some(p) => {
                let s = self.connection(p);
                s.acquire_many_owned(take(self.per_connection)).await.ok()
            }
            None => None,
        };
        let pool = self.pool.clone().acquire_many_owned(take(self.capacity)).await.ok();
        Reservation(Arc::new(Mutex::new(Some(Held { pool, conn }))))
    }
}

/// Produce bytes held from the pool (and the connection's share); given back when dropped.
#[derive(Debug)]
pub struct Held {
    pool: Option<OwnedSemaphorePermit>,
    conn: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn bytes(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Splits `n` bytes (fewer than held) off both permits.
    fn split(&mut self, n: usize) -> Held {
        let split = |p: &mut Option<OwnedSemaphorePermit>| {
            p.as_mut().and_then(|p| p.split(n.min(p.num_permits().saturating_sub(1))))
        };
        Held { pool: split(&mut self.pool), conn: split(&mut self.conn) }
    }
}

/// A request's reservation; released when the last part is dropped. Travels in the request's
/// extensions to the handler, which splits it per partition and hands each part to the
/// partition worker with the data.
#[derive(Debug, Clone, Default)]
pub struct Reservation(Arc<Mutex<Option<Held>>>);

impl Reservation {
    /// Takes up to `bytes` of this reservation out as its own part (held until dropped).
    pub fn split(&self, bytes: usize) -> Option<Held> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let held = g.as_mut()?;
        let n = bytes.min(held.bytes());
        if n == 0 {
            return None;
        }
        if n == held.bytes() { g.take() } else { Some(held.split(n)) }
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
            let peer = parts
                .extensions
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|c| c.remote_addr())
                .or_else(|| parts.extensions.get::<crate::auth::connection::ConnInfo>()?.remote);
            match read_budgeted(body, &budget, peer).await {
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
    peer: Option<SocketAddr>,
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
            reservation = Some(budget.reserve(expected, peer).await);
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
        let budget = ProduceBudget::new(1000, 1000, 1000);
        let r = budget.reserve(800, None).await;
        assert_eq!(budget.in_use(), 800);
        let part = r.split(300).expect("a part");
        drop(r);
        assert_eq!(budget.in_use(), 300, "the handler's unsplit rest is given back when it ends");
        let wait = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, budget.reserve(800, None)).await.is_err(),
            "800 more bytes do not fit while a partition still holds 300"
        );
        drop(part);
        let again = tokio::time::timeout(wait, budget.reserve(800, None)).await;
        let again = again.expect("appended data gave its bytes back");
        assert!(again.split(10_000).is_some(), "a part larger than what is held takes it all");
        assert!(again.split(1).is_none(), "nothing is left");
        assert!(Reservation::default().split(1).is_none());
    }

    #[tokio::test]
    async fn a_request_larger_than_the_pool_still_runs_alone() {
        let budget = ProduceBudget::new(100, 100, 1000);
        let r = budget.reserve(1000, None).await;
        assert_eq!(budget.in_use(), 100);
        drop(r);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn one_connection_cannot_take_the_whole_pool() {
        let budget = ProduceBudget::new(1000, 600, 500);
        let (a, b): (SocketAddr, SocketAddr) =
            ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        let first = budget.reserve(500, Some(a)).await;
        let wait = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, budget.reserve(500, Some(a))).await.is_err(),
            "a second 500 would put connection a over its 600"
        );
        let other = tokio::time::timeout(wait, budget.reserve(500, Some(b))).await;
        assert!(other.is_ok(), "another connection still gets its share");
        assert_eq!(budget.in_use(), 1000);
        let part = first.split(200).expect("a part");
        drop(first);
        drop(other);
        let again = tokio::time::timeout(wait, budget.reserve(400, Some(a))).await;
        assert!(again.is_ok(), "200 held + 400 fit in a's 600");
        assert!(
            tokio::time::timeout(wait, budget.reserve(100, Some(a))).await.is_err(),
            "a's share is spent while its parts are held"
        );
        drop(part);
    }
}
