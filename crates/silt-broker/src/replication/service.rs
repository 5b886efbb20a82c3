//! The leader's side of replication: the `Replication` gRPC service. `ReplicaFetch` records each
//! follower's position (which moves the HW) and long-polls until some partition has records for
//! it or a higher HW than it knows; `OffsetForLeaderEpoch` tells a follower where its latest
//! epoch ended here.
//!
//! A fetch answer is bounded in total: the partitions are read one after another, from a start
//! that rotates between requests, against a running byte budget; only the first partition with
//! data may exceed its share (one whole batch), later ones that do not fit answer no records
//! this time (their fetch still counts for the follower's position). Before, each partition got
//! `max(total / n, 64 KiB)` and always at least one batch, so ~33 lagging partitions with 1 MiB
//! batches overflowed the 32 MiB message limit and the follower failed the same request forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use silt_core::{LeaderEpoch, Offset};
use silt_proto::internal::replication_server::Replication;
use silt_proto::internal::{
    EpochEnd, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ReplicaFetchPartition,
    ReplicaFetchPartitionResponse, ReplicaFetchRequest, ReplicaFetchResponse,
};
use silt_proto::v1::ErrorCode;
use tonic::{Request, Response, Status};

use crate::broker::Shared;
use crate::error::WireError;
use crate::partition::long_poll::long_poll;
use crate::partition::{PartitionHandle, ReplicaRead};

/// The longest a follower's fetch waits for records.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Record bytes a follower gets per partition when the request leaves room.
const MIN_PARTITION_BYTES: usize = 64 * 1024;
/// Room left in a fetch answer for everything but the records.
const RESPONSE_OVERHEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct ReplicationService {
    shared: Arc<Shared>,
    /// Where the next fetch starts reading, so no partition is always last in line.
    rotation: Arc<AtomicUsize>,
}

impl ReplicationService {
    pub fn new(shared: Arc<Shared>) -> ReplicationService {
        ReplicationService { shared, rotation: Arc::default() }
    }

    /// Reads every partition of `req` one after another from `start` (rotating), within `total`
    /// record bytes (see the module doc). Answers in request order.
    async fn read_within(
        &self,
        req: &ReplicaFetchRequest,
        handles: &[Result<PartitionHandle, WireError>],
        total: usize,
        start: usize,
    ) -> Vec<Result<ReplicaRead, WireError>> {
        let n = req.partitions.len();
        let share = (total / n.max(1)).max(MIN_PARTITION_BYTES).min(total);
        let mut out: Vec<Option<Result<ReplicaRead, WireError>>> = (0..n).map(|_| None).collect();
        let mut used = 0usize;
        for k in 0..n {
            let i = (start + k) % n;
            let (p, h) = (&req.partitions[i], &handles[i]);
            let left = total.saturating_sub(used);
            let r = match h {
                Err(e) => Err(e.clone()),
                Ok(h) => h
                    .replica_fetch(
                        req.replica_id,
                        req.broker_epoch,
                        LeaderEpoch(p.leader_epoch),
                        Offset(p.fetch_offset),
                        (p.max_bytes as usize).clamp(1, share).min(left.max(1)),
                    )
                    .await
                    .map_err(WireError::from),
            };
            out[i] = Some(r.map(|mut r| {
                // A whole batch is returned even past the limit: only the first one with data
                // may do that; later ones wait for the next request.
                if used > 0 && r.data.len() > left {
                    r.data = bytes::Bytes::new();
                }
                used += r.data.len();
                r
            }));
        }
        out.into_iter().map(|r| r.expect("invariant: every partition was read")).collect()
    }

    /// Refuses requests from an older registration of the sending broker (KIP-903): a process
    /// that was replaced, or fenced, must not count towards the HW or the ISR. A sender newer
    /// than this broker's image means the image lags: retry. 0 (not sent) is not checked.
    fn check_sender(&self, replica: u64, broker_epoch: u64) -> Result<(), WireError> {
        let c = &self.shared.cluster;
        if broker_epoch == 0 {
            return Ok(());
        }
        match c.image().brokers.get(&replica) {
            Some(b) if b.epoch == broker_epoch && !b.fenced => Ok(()),
            Some(b) if b.epoch < broker_epoch => Err(WireError::new(
                ErrorCode::BrokerNotAvailable,
                format!(
                    "broker {replica} epoch {broker_epoch} is newer than this broker knows; retry"
                ),
            )),
            _ => Err(WireError::new(
                ErrorCode::StaleBrokerEpoch,
                format!("broker {replica} epoch {broker_epoch} is not its current registration"),
            )),
        }
    }

    /// The partition, when the topic id the follower sent (if any) is the topic's here.
    fn handle_for(
        &self,
        topic: &str,
        partition: u32,
        topic_id: &str,
    ) -> Result<PartitionHandle, WireError> {
        if !topic_id.is_empty()
            && let Some(t) = self.shared.cluster.image().topics.get(topic)
            && t.topic_id() != topic_id
        {
            return Err(WireError::new(
                ErrorCode::InconsistentTopicId,
                format!("{topic} has id {} here, not {topic_id}", t.topic_id()),
            ));
        }
        self.handle(topic, partition)
    }

    fn handle(&self, topic: &str, partition: u32) -> Result<PartitionHandle, WireError> {
        self.shared.replicas.partition(topic, partition).ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLeader,
                format!("{topic}/{partition} is not hosted on this broker"),
            )
        })
    }
}

fn error_item(p: &ReplicaFetchPartition, e: WireError) -> ReplicaFetchPartitionResponse {
    ReplicaFetchPartitionResponse {
        topic: p.topic.clone(),
        partition: p.partition,
        error_code: e.code as i32,
        error_message: e.message,
        ..Default::default()
    }
}

fn ok_item(p: &ReplicaFetchPartition, r: ReplicaRead) -> ReplicaFetchPartitionResponse {
    ReplicaFetchPartitionResponse {
        topic: p.topic.clone(),
        partition: p.partition,
        error_code: ErrorCode::None as i32,
        error_message: String::new(),
        high_watermark: r.high_watermark.0,
        log_start_offset: r.log_start.0,
        log_end_offset: r.log_end.0,
        records: r.data,
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn replica_fetch(
        &self,
        req: Request<ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchResponse>, Status> {
        let req = req.into_inner();
        let limit = self
            .shared
            .config
            .max_response_bytes
            .min(super::MAX_REPLICATION_MESSAGE_BYTES)
            .saturating_sub(RESPONSE_OVERHEAD_BYTES);
        let total = (req.max_bytes as usize).clamp(1, limit.max(1));
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let sender = self.check_sender(req.replica_id, req.broker_epoch);
        let handles: Vec<_> = req
            .partitions
            .iter()
            .map(|p| {
                sender.clone().and_then(|()| self.handle_for(&p.topic, p.partition, &p.topic_id))
            })
            .collect();
        let deadline =
            Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms)).min(MAX_WAIT);
        let live = handles.iter().filter_map(|h| h.as_ref().ok());
        let (req, handles) = (&req, &handles);
        let reads = long_poll(live, deadline, &self.shared.stopping, || async move {
            let reads = self.read_within(req, handles, total, start).await;
            let news = reads.iter().zip(&req.partitions).any(|(r, p)| match r {
                Ok(r) => !r.data.is_empty() || r.high_watermark.0 > p.high_watermark,
                Err(_) => true,
            });
            (reads, news)
        })
        .await;
        let partitions = reads
            .into_iter()
            .zip(&req.partitions)
            .map(|(r, p)| match r {
                Ok(r) => ok_item(p, r),
                Err(e) => error_item(p, e),
            })
            .collect();
        Ok(Response::new(ReplicaFetchResponse { partitions }))
    }

    async fn offset_for_leader_epoch(
        &self,
        req: Request<OffsetForLeaderEpochRequest>,
    ) -> Result<Response<OffsetForLeaderEpochResponse>, Status> {
        let req = req.into_inner();
        let sender = self.check_sender(req.replica_id, req.broker_epoch);
        let sender = &sender;
        let answers = join_all(req.partitions.into_iter().map(|q| async move {
            let handle =
                sender.clone().and_then(|()| self.handle_for(&q.topic, q.partition, &q.topic_id));
            let r = match handle {
                Ok(h) => h
                    .epoch_end(LeaderEpoch(q.current_leader_epoch), LeaderEpoch(q.leader_epoch))
                    .await
                    .map_err(WireError::from),
                Err(e) => Err(e),
            };
            match r {
                Ok(end) => EpochEnd {
                    topic: q.topic,
                    partition: q.partition,
                    error_code: ErrorCode::None as i32,
                    error_message: String::new(),
                    epoch: end.found.map(|(e, _)| e.0),
                    end_offset: end.found.map_or(0, |(_, o)| o.0),
                    log_start_offset: end.log_start.0,
                },
                Err(e) => EpochEnd {
                    topic: q.topic,
                    partition: q.partition,
                    error_code: e.code as i32,
                    error_message: e.message,
                    ..Default::default()
                },
            }
        }))
        .await;
        Ok(Response::new(OffsetForLeaderEpochResponse { partitions: answers }))
    }
}
