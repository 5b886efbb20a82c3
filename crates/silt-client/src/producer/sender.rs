//! Sending sealed batches: group them per leader broker, one `Produce` request per group with
//! at most `max_in_flight` requests at once, and retry retriable failures with exponential
//! backoff (refreshing metadata) until `retries` or `delivery_timeout_ms` runs out.
//!
//! Order per partition survives retries: each partition is a lane (see [`super::lanes`]) with
//! up to `max_in_flight` batches in flight when idempotent (the leader refuses a batch whose
//! predecessor it has not appended, and a retry waits until every older batch of its partition
//! is resolved), or one at a time without idempotence (nothing else would stop a retry from
//! landing after a later batch). Different partitions go in parallel, up to `max_in_flight`
//! requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silt_proto::v1::{self, ErrorCode};
use tokio::sync::{Semaphore, watch};

use super::accumulator::Sealed;
use super::idempotence::{Idempotence, needs_new_identity};
use super::lanes::{Lane, Ticket};
use super::{Acks, ProducerConfig, RecordMetadata, Waiter};
use crate::{Client, ClientError, ProduceError};

/// A batch on its way, with what its attempts taught us.
struct InFlight {
    batch: Sealed<Waiter>,
    /// Its place in the partition's lane, given back when it is resolved (dropped).
    ticket: Ticket,
    /// The identity generation it is stamped with (idempotence).
    generation: u64,
    attempts: u32,
    started: Instant,
    /// An earlier attempt may have stored it (so a final failure is "unknown", not "not stored").
    maybe_stored: bool,
    last_error: Option<ProduceError>,
    /// Whether every older batch of its partition was resolved when it was last sent.
    sent_as_head: bool,
    /// The leader refused its idempotent sequence last time (nothing appended).
    refused: bool,
}

impl InFlight {
    fn new(batch: Sealed<Waiter>, ticket: Ticket, generation: u64) -> InFlight {
        InFlight {
            batch,
            ticket,
            generation,
            attempts: 0,
            started: Instant::now(),
            maybe_stored: false,
            last_error: None,
            sent_as_head: false,
            refused: false,
        }
    }

    /// Refused for its sequence while older batches were still in flight: the leader had not
    /// appended them yet; resent once they are resolved, with no backoff.
    fn refused_behind(&self) -> bool {
        self.refused && !self.sent_as_head
    }
}

/// The backoff before retry number `attempt` (1-based): `base` doubling, capped at 1 s.
pub(crate) fn backoff(base_ms: u64, attempt: u32) -> Duration {
    let ms = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(1000).max(base_ms.min(1000)))
}

/// What bounds the requests in flight: a permit per request, a lane per partition; and the
/// idempotent producer's identity, when idempotence is on.
#[derive(Debug)]
pub(super) struct Pipeline {
    inflight: Arc<Semaphore>,
    lanes: std::sync::Mutex<HashMap<(String, u32), Arc<Lane>>>,
    per_lane: usize,
    idempotence: Option<Arc<Idempotence>>,
}

impl Pipeline {
    pub(super) fn new(max_in_flight: usize, idempotent: bool) -> Pipeline {
        Pipeline {
            inflight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            lanes: std::sync::Mutex::new(HashMap::new()),
            per_lane: if idempotent { max_in_flight.clamp(1, MAX_IDEMPOTENT_IN_FLIGHT) } else { 1 },
            idempotence: idempotent.then(Arc::default),
        }
    }

    fn lane(&self, topic: &str, partition: u32) -> Arc<Lane> {
        let mut m = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((topic.to_string(), partition)).or_insert_with(|| Lane::new(self.per_lane)).clone()
    }
}

/// Batches of one partition in flight with idempotence: the brokers remember a producer's last
/// five batches per partition, so a retry of any of them is recognised (Kafka's limit too).
const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;

/// Sends `sealed` batches (at most one per partition) in the background: each takes a ticket
/// in its partition's lane (waiting for room), is stamped in that order when idempotent, and
/// the request group holds one in-flight permit.
pub(super) async fn dispatch(
    client: &Client,
    config: &Arc<ProducerConfig>,
    pipeline: &Pipeline,
    counter: &Arc<watch::Sender<u64>>,
    mut sealed: Vec<Sealed<Waiter>>,
) {
    if sealed.is_empty() {
        return;
    }
    sealed.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut batches = Vec::with_capacity(sealed.len());
    for mut batch in sealed {
        let Some(ticket) = pipeline.lane(&batch.topic, batch.partition).enter().await else {
            return;
        };
        let generation = match &pipeline.idempotence {
            None => 0,
            Some(idem) => match stamp_in_order(client, idem, &ticket, &mut batch).await {
                Ok(g) => g,
                Err(e) => {
                    for w in batch.waiters {
                        resolve(w, Err(e.clone()), counter);
                    }
                    continue;
                }
            },
        };
        batches.push(InFlight::new(batch, ticket, generation));
    }
    let Ok(permit) = pipeline.inflight.clone().acquire_owned().await else { return };
    let (client, config, counter) = (client.clone(), config.clone(), counter.clone());
    let idem = pipeline.idempotence.clone();
    tokio::spawn(async move {
        let _permit = permit;
        deliver(&client, &config, &counter, idem.as_deref(), batches).await;
    });
}

/// Stamps a new batch under the current identity once no older batch of its partition still
/// holds an older one (which is then restamped or resolved first, keeping the order).
async fn stamp_in_order(
    client: &Client,
    idem: &Idempotence,
    ticket: &Ticket,
    batch: &mut Sealed<Waiter>,
) -> Result<u64, ProduceError> {
    // Each extra round follows an identity reset, which is rare.
    for _ in 0..MAX_STAMP_ROUNDS {
        let generation = idem.generation().await;
        ticket.wait_older_stamped_at_least(generation).await;
        if let Some(g) = idem.stamp(client, batch, generation).await? {
            ticket.stamped(g);
            return Ok(g);
        }
    }
    Err(too_many_resets())
}

/// Sends until every batch is acknowledged or has failed for good.
async fn deliver(
    client: &Client,
    config: &ProducerConfig,
    counter: &watch::Sender<u64>,
    idem: Option<&Idempotence>,
    mut queue: Vec<InFlight>,
) {
    while !queue.is_empty() {
        let mut groups: HashMap<String, Vec<InFlight>> = HashMap::new();
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        for mut b in queue {
            match client.leader(&b.batch.topic, b.batch.partition).await {
                Ok(addr) => groups.entry(addr).or_default().push(b),
                Err(e) => {
                    let retriable =
                        e.code().is_none_or(|c| c.is_retriable() || c == ErrorCode::UnknownTopic);
                    b.last_error = Some(ProduceError {
                        code: e.code(),
                        message: e.to_string(),
                        definitely_not_stored: true,
                    });
                    b.refused = false;
                    if retriable { retry.push(b) } else { failed.push(b) }
                }
            }
        }
        for (addr, group) in groups {
            for request in split_requests(group, config.request_max_bytes) {
                let (again, lost) =
                    send_once(client, config, &addr, request, counter, idem.is_some()).await;
                retry.extend(again);
                failed.extend(lost);
            }
        }
        queue = Vec::new();
        let mut max_attempt = 0;
        for mut b in retry {
            b.attempts += 1;
            let expired = b.started.elapsed() >= Duration::from_millis(config.delivery_timeout_ms);
            if b.attempts > config.retries || expired {
                failed.push(b);
            } else {
                if !b.refused_behind() {
                    max_attempt = max_attempt.max(b.attempts);
                }
                queue.push(b);
            }
        }
        give_up(idem, failed, counter).await;
        if queue.is_empty() {
            break;
        }
        // Only refusals behind older batches in flight: they go again as soon as those are
        // resolved, with no backoff and no metadata refresh.
        if max_attempt > 0 {
            tokio::time::sleep(backoff(config.retry_backoff_ms, max_attempt)).await;
            let mut topics: Vec<String> = queue.iter().map(|b| b.batch.topic.clone()).collect();
            topics.sort();
            topics.dedup();
            if let Err(e) = client.metadata(&topics).await {
                tracing::debug!(error = %e, "metadata refresh before a retry failed");
            }
        }
        // Retries go out in each partition's order: every older batch resolved first.
        for b in &queue {
            b.ticket.wait_head().await;
        }
        if let Some(idem) = idem {
            let mut kept = Vec::with_capacity(queue.len());
            for mut b in queue {
                match restamp_if_refused(client, idem, &mut b).await {
                    Ok(()) => kept.push(b),
                    Err(e) => {
                        b.last_error = Some(e);
                        fail(b, counter);
                    }
                }
            }
            queue = kept;
        }
    }
}

/// Before a retry, at the head of its partition: a batch the leader refused for its sequence
/// (nothing appended) while it was already the oldest in flight means the leader has no usable
/// state for this identity, which is dropped; a refused batch of a dropped identity is stamped
/// again under the current one. A batch whose outcome may be stored keeps its stamp, so the
/// leader can recognise it.
async fn restamp_if_refused(
    client: &Client,
    idem: &Idempotence,
    b: &mut InFlight,
) -> Result<(), ProduceError> {
    if !std::mem::take(&mut b.refused) {
        return Ok(());
    }
    if b.sent_as_head {
        idem.reset("a leader refused the oldest batch's sequence", b.generation).await;
    }
    let mut generation = idem.generation().await;
    if b.generation == generation {
        return Ok(()); // refused behind an older batch: the same bytes go again
    }
    // A reset between reading the generation and stamping leaves the batch unstamped: again.
    for _ in 0..MAX_STAMP_ROUNDS {
        if let Some(g) = idem.stamp(client, &mut b.batch, generation).await? {
            b.generation = g;
            b.ticket.stamped(g);
            return Ok(());
        }
        generation = idem.generation().await;
    }
    Err(too_many_resets())
}

/// Identity resets a stamp may race with before the batch fails.
const MAX_STAMP_ROUNDS: usize = 100;

fn too_many_resets() -> ProduceError {
    ProduceError {
        code: None,
        message: "the idempotent producer's identity kept changing while stamping a batch".into(),
        definitely_not_stored: true,
    }
}

fn resolve(waiter: Waiter, r: Result<RecordMetadata, ProduceError>, counter: &watch::Sender<u64>) {
    let _ = waiter.send(r);
    counter.send_modify(|n| *n = n.saturating_sub(1));
}

/// Fails batches for good. With idempotence, a batch that was definitely not stored gives its
/// sequences back (the partition's next batch reuses them); one whose outcome is unknown drops
/// the identity (the next batches take a new producer id), as a gap would stop the partition.
async fn give_up(idem: Option<&Idempotence>, failed: Vec<InFlight>, counter: &watch::Sender<u64>) {
    if failed.is_empty() {
        return;
    }
    if let Some(idem) = idem {
        for b in &failed {
            let not_stored =
                !b.maybe_stored && b.last_error.as_ref().is_some_and(|e| e.definitely_not_stored);
            if not_stored {
                idem.release(&b.batch).await;
            } else {
                idem.reset("a batch failed for good with its outcome unknown", b.generation).await;
            }
        }
    }
    for b in failed {
        fail(b, counter);
    }
}

fn fail(b: InFlight, counter: &watch::Sender<u64>) {
    let mut err = b.last_error.unwrap_or_else(|| ProduceError {
        code: None,
        message: "delivery failed".into(),
        definitely_not_stored: false,
    });
    err.definitely_not_stored &= !b.maybe_stored;
    for w in b.batch.waiters {
        resolve(w, Err(err.clone()), counter);
    }
}

/// Splits one broker's batches, in order, into requests of at most `max_bytes` of records (a
/// batch larger than that goes alone): a request for many partitions must stay under the
/// broker's message limit, or the broker resets the stream and nothing is delivered.
fn split_requests(group: Vec<InFlight>, max_bytes: usize) -> Vec<Vec<InFlight>> {
    let mut out: Vec<Vec<InFlight>> = Vec::new();
    let mut size = 0;
    for b in group {
        let len = b.batch.data.len();
        match out.last_mut() {
            Some(last) if size + len <= max_bytes => {
                size += len;
                last.push(b);
            }
            _ => {
                size = len;
                out.push(vec![b]);
            }
        }
    }
    out
}

/// One request to `addr` for `group`; returns the batches to retry.
async fn send_once(
    client: &Client,
    config: &ProducerConfig,
    addr: &str,
    mut group: Vec<InFlight>,
    counter: &watch::Sender<u64>,
    idempotent: bool,
) -> (Vec<InFlight>, Vec<InFlight>) {
    let acks = match config.acks {
        Acks::None => v1::Acks::None,
        Acks::Leader => v1::Acks::Leader,
        Acks::All => v1::Acks::All,
    };
    let mut topics: Vec<v1::TopicProduceData> = Vec::new();
    for b in group.iter_mut() {
        b.sent_as_head = b.ticket.is_head();
        b.refused = false;
        let data = v1::PartitionProduceData {
            partition: b.batch.partition,
            data: Some(v1::partition_produce_data::Data::RecordBatches(b.batch.data.clone())),
        };
        match topics.iter_mut().find(|t| t.topic == b.batch.topic) {
            Some(t) => t.partitions.push(data),
            None => topics.push(v1::TopicProduceData {
                topic: b.batch.topic.clone(),
                partitions: vec![data],
            }),
        }
    }
    let req = v1::ProduceRequest {
        acks: acks as i32,
        timeout_ms: config.request_timeout_ms,
        topics,
        transactional_id: None,
    };
    let deadline = Duration::from_millis(u64::from(config.request_timeout_ms) + 5_000);
    let outcome = match client.data(addr) {
        Ok(mut c) => match tokio::time::timeout(deadline, c.produce(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(ClientError::Transport(status).to_string()),
            Err(_) => Err("produce request timed out".to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let resp = match outcome {
        Ok(r) => r,
        Err(message) => {
            // The request may have reached the broker: outcome unknown.
            let retry = group
                .into_iter()
                .map(|mut b| {
                    b.maybe_stored = true;
                    b.last_error = Some(ProduceError {
                        code: None,
                        message: format!("{addr}: {message}"),
                        definitely_not_stored: false,
                    });
                    b
                })
                .collect();
            return (retry, Vec::new());
        }
    };
    let mut answers: HashMap<(String, u32), v1::PartitionProduceResponse> = HashMap::new();
    for t in resp.topics {
        for p in t.partitions {
            answers.insert((t.topic.clone(), p.partition), p);
        }
    }
    let mut retry = Vec::new();
    let mut failed = Vec::new();
    for mut b in group {
        let Some(a) = answers.remove(&(b.batch.topic.clone(), b.batch.partition)) else {
            b.maybe_stored = true;
            b.last_error = Some(ProduceError {
                code: None,
                message: "the broker's answer left out this partition".into(),
                definitely_not_stored: false,
            });
            retry.push(b);
            continue;
        };
        let code = ErrorCode::try_from(a.error_code).unwrap_or(ErrorCode::UnknownServerError);
        if code == ErrorCode::None {
            let (topic, partition) = (b.batch.topic.clone(), b.batch.partition);
            for (i, (w, ts)) in b.batch.waiters.into_iter().zip(b.batch.timestamps).enumerate() {
                let offset = if a.base_offset >= 0 { a.base_offset + i as i64 } else { -1 };
                resolve(
                    w,
                    Ok(RecordMetadata {
                        topic: topic.clone(),
                        partition,
                        offset,
                        timestamp_ms: ts,
                    }),
                    counter,
                );
            }
            continue;
        }
        let message = if a.error_message.is_empty() {
            code.as_str_name().to_string()
        } else {
            a.error_message
        };
        b.maybe_stored |= !code.definitely_not_stored();
        b.last_error = Some(ProduceError {
            code: Some(code),
            message,
            definitely_not_stored: code.definitely_not_stored(),
        });
        // The topic existed in the metadata `send` checked, so a broker that does not know it
        // yet is lagging behind the metadata quorum: retry like Kafka does.
        let lagging = matches!(code, ErrorCode::UnknownTopic | ErrorCode::UnknownPartition);
        tracing::debug!(
            topic = %b.batch.topic,
            partition = b.batch.partition,
            code = code.as_str_name(),
            head = b.sent_as_head,
            attempt = b.attempts,
            "produce refused"
        );
        if needs_new_identity(code) && idempotent {
            b.refused = true;
            retry.push(b);
        } else if code.is_retriable() || lagging {
            retry.push(b)
        } else {
            failed.push(b)
        }
    }
    (retry, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(100, 1), Duration::from_millis(100));
        assert_eq!(backoff(100, 2), Duration::from_millis(200));
        assert_eq!(backoff(100, 3), Duration::from_millis(400));
        assert_eq!(backoff(100, 5), Duration::from_millis(1000));
        assert_eq!(backoff(100, 60), Duration::from_millis(1000));
    }

    async fn in_flight(partition: u32, len: usize) -> InFlight {
        let sealed = Sealed {
            topic: "t".into(),
            partition,
            data: bytes::Bytes::from(vec![0u8; len]),
            waiters: vec![],
            timestamps: vec![],
        };
        InFlight::new(sealed, Lane::new(1).enter().await.unwrap(), 0)
    }

    #[tokio::test]
    async fn requests_to_one_broker_stay_under_the_limit_in_order() {
        let mut group = Vec::new();
        for p in 0..7 {
            group.push(in_flight(p, 400).await);
        }
        group.push(in_flight(7, 2_000).await);
        let requests = split_requests(group, 1_000);
        let shape: Vec<Vec<u32>> =
            requests.iter().map(|r| r.iter().map(|b| b.batch.partition).collect()).collect();
        // Two batches of 400 fit in 1,000; a batch over the limit goes alone.
        assert_eq!(shape, vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6], vec![7]]);
    }
}
