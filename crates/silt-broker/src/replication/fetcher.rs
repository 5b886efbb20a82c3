//! The follower's side of replication: one fetcher task per leader broker, carrying every
//! partition this broker follows there. A partition that starts following (a new leader epoch)
//! first asks `OffsetForLeaderEpoch` and truncates its divergent suffix, again until its latest
//! epoch is the one the leader answered (KIP-279); then the fetcher long-polls `ReplicaFetch`
//! with each partition's log end (synced, for `fsync` topics) and appends what comes back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use silt_core::{LeaderEpoch, Offset};
use silt_proto::internal::replication_client::ReplicationClient;
use silt_proto::internal::{
    EpochQuery, OffsetForLeaderEpochRequest, ReplicaFetchPartition, ReplicaFetchRequest,
};
use silt_proto::v1::ErrorCode;
use silt_raft::ClusterImage;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::broker::Shared;
use crate::partition::{EpochEnd, PartitionHandle};

/// How long a follower's fetch waits at the leader for new records.
const FETCH_MAX_WAIT_MS: u32 = 500;
/// Record bytes per fetch response, and per partition in it.
const FETCH_MAX_BYTES: u32 = 16 * 1024 * 1024;
const PARTITION_MAX_BYTES: u32 = 4 * 1024 * 1024;
/// Largest replication message either way (a response carries at most FETCH_MAX_BYTES).
pub(crate) const MAX_REPLICATION_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Pause after an error before the partition is tried again.
const RETRY: Duration = Duration::from_millis(100);
/// Pause after a failed call to the leader.
const CALL_RETRY: Duration = Duration::from_millis(250);

/// A partition this broker follows on some leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Followed {
    pub topic: String,
    /// The topic's id (KIP-516), sent with every request for the partition.
    pub topic_id: String,
    pub partition: u32,
    pub leader_epoch: LeaderEpoch,
    /// Bytes per second this replica copies while a move adds it; 0: unthrottled.
    pub throttle_bytes_per_sec: u64,
}

/// The fetcher tasks, one per leader broker.
#[derive(Debug, Default)]
pub(crate) struct Fetchers {
    tasks: HashMap<u64, (tokio::task::JoinHandle<()>, watch::Sender<Vec<Followed>>)>,
}

impl Drop for Fetchers {
    fn drop(&mut self) {
        for (task, _) in self.tasks.values() {
            task.abort();
        }
    }
}

impl Fetchers {
    /// Starts, updates and stops fetchers to match `image` (after the roles are applied).
    pub fn update(&mut self, shared: &Arc<Shared>, image: &ClusterImage) {
        let me = shared.config.node_id;
        let mut by_leader: BTreeMap<u64, Vec<Followed>> = BTreeMap::new();
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if let Some(l) = p.leader
                    && l != me
                    && p.replicas.contains(&me)
                    // An offline replica (a failed sync) copies nothing until a restart.
                    && shared.replicas.partition(name, i as u32).is_some_and(|h| !h.state().offline)
                {
                    by_leader.entry(l).or_default().push(Followed {
                        topic: name.clone(),
                        topic_id: t.topic_id(),
                        partition: i as u32,
                        leader_epoch: LeaderEpoch(p.leader_epoch),
                        // Only the copying a move adds is throttled, until the new replica is
                        // in sync (then the HW, and acks=all writes, wait for it).
                        throttle_bytes_per_sec: p
                            .reassignment
                            .as_ref()
                            .filter(|r| r.adding().contains(&me) && !p.isr.contains(&me))
                            .map_or(0, |r| r.throttle_bytes_per_sec),
                    });
                }
            }
        }
        self.tasks.retain(|leader, (task, _)| {
            let keep = by_leader.contains_key(leader);
            if !keep {
                task.abort();
            }
            keep
        });
        for (leader, list) in by_leader {
            match self.tasks.get(&leader) {
                Some((_, tx)) => {
                    tx.send_if_modified(|cur| {
                        let changed = *cur != list;
                        *cur = list;
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(list);
                    let task = tokio::spawn(run(shared.clone(), leader, rx));
                    self.tasks.insert(leader, (task, tx));
                }
            }
        }
    }
}

/// One followed partition's fetch state.
struct State {
    epoch: LeaderEpoch,
    topic_id: String,
    handle: PartitionHandle,
    /// The next fetch offset (this replica's log end); None until truncated for `epoch`.
    offset: Option<Offset>,
    retry_at: Option<Instant>,
    throttle_bytes_per_sec: u64,
}

type Key = (String, u32);

/// Who sends replication requests: this broker and its registration.
#[derive(Debug, Clone, Copy)]
struct Sender {
    id: u64,
    broker_epoch: u64,
}

async fn run(shared: Arc<Shared>, leader: u64, mut wanted: watch::Receiver<Vec<Followed>>) {
    let me = shared.config.node_id;
    let mut states: HashMap<Key, State> = HashMap::new();
    let mut client: Option<(String, ReplicationClient<Channel>)> = None;
    tracing::info!(node = me, leader, "replica fetcher started");
    loop {
        let list = wanted.borrow_and_update().clone();
        states.retain(|k, s| {
            list.iter().any(|f| (&f.topic, f.partition) == (&k.0, k.1) && f.leader_epoch == s.epoch)
        });
        for f in &list {
            let key = (f.topic.clone(), f.partition);
            if let Some(s) = states.get_mut(&key) {
                s.throttle_bytes_per_sec = f.throttle_bytes_per_sec;
                continue;
            }
            if let Some(handle) = shared.replicas.partition(&f.topic, f.partition) {
                states.insert(
                    key,
                    State {
                        epoch: f.leader_epoch,
                        topic_id: f.topic_id.clone(),
                        handle,
                        offset: None,
                        retry_at: None,
                        throttle_bytes_per_sec: f.throttle_bytes_per_sec,
                    },
                );
            }
        }
        let Some(addr) = shared.peer_address(leader) else {
            wait(&mut wanted, Some(Instant::now() + CALL_RETRY)).await;
            continue;
        };
        if client.as_ref().is_none_or(|(a, _)| *a != addr) {
            match connect(&shared.cluster, &addr) {
                Ok(c) => client = Some((addr.clone(), c)),
                Err(e) => {
                    tracing::warn!(leader, %addr, error = %e, "bad leader address");
                    wait(&mut wanted, Some(Instant::now() + CALL_RETRY)).await;
                    continue;
                }
            }
        }
        let rpc = &mut client.as_mut().expect("invariant: just set").1;
        let now = Instant::now();
        let due = |s: &State| s.retry_at.is_none_or(|t| t <= now);
        // This process's registration, so the leader refuses fetches of a replaced one.
        let sender = Sender { id: me, broker_epoch: shared.cluster.epoch.load(Ordering::SeqCst) };
        let ok = if states.values().any(|s| s.offset.is_none() && due(s)) {
            truncate(sender, rpc, &mut states).await
        } else if states.values().any(|s| s.offset.is_some() && due(s)) {
            fetch(sender, rpc, &mut states).await
        } else {
            let next = states.values().filter_map(|s| s.retry_at).min();
            wait(&mut wanted, next.or(Some(now + Duration::from_secs(1)))).await;
            continue;
        };
        if !ok {
            wait(&mut wanted, Some(Instant::now() + CALL_RETRY)).await;
        }
    }
}

/// Waits for a change of the followed partitions, or until `until`.
async fn wait(wanted: &mut watch::Receiver<Vec<Followed>>, until: Option<Instant>) {
    let until = until.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
    let _ = tokio::time::timeout_at(until, wanted.changed()).await;
}

fn connect(
    cluster: &crate::cluster::Cluster,
    addr: &str,
) -> Result<ReplicationClient<Channel>, String> {
    let channel = cluster
        .internal_endpoint(addr)?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(32 * 1024 * 1024))
        .initial_connection_window_size(Some(64 * 1024 * 1024))
        .connect_lazy();
    Ok(ReplicationClient::new(channel)
        .max_decoding_message_size(MAX_REPLICATION_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_REPLICATION_MESSAGE_BYTES))
}

/// Bytes to ask for per fetch of a partition: a quarter second's worth when throttled (at
/// least 16 KiB; a batch larger than that still comes whole).
fn max_bytes(throttle_bytes_per_sec: u64) -> u32 {
    if throttle_bytes_per_sec == 0 {
        return PARTITION_MAX_BYTES;
    }
    (throttle_bytes_per_sec / 4).clamp(16 * 1024, u64::from(PARTITION_MAX_BYTES)) as u32
}

/// How long a throttled partition waits after copying `copied` bytes, so that it copies at
/// most its rate on average.
fn throttle_pause(throttle_bytes_per_sec: u64, copied: u64) -> Option<Duration> {
    (throttle_bytes_per_sec > 0 && copied > 0)
        .then(|| Duration::from_secs_f64(copied as f64 / throttle_bytes_per_sec as f64))
}

fn retry_later(s: &mut State, after: Duration) {
    s.retry_at = Some(Instant::now() + after);
}

/// One round of truncation for every partition that starts following: asks the leader where
/// our latest epoch ended there, and cuts what lies beyond. A partition whose epochs do not agree
/// yet stays without a fetch offset, so the next round asks again (KIP-279). False when the
/// leader could not be asked.
async fn truncate(
    me: Sender,
    rpc: &mut ReplicationClient<Channel>,
    states: &mut HashMap<Key, State>,
) -> bool {
    let now = Instant::now();
    let mut queries = Vec::new();
    for (key, s) in states.iter_mut() {
        if s.offset.is_some() || s.retry_at.is_some_and(|t| t > now) {
            continue;
        }
        match s.handle.latest_epoch().await {
            Ok((Some(epoch), _)) => queries.push(EpochQuery {
                topic: key.0.clone(),
                partition: key.1,
                current_leader_epoch: s.epoch.0,
                leader_epoch: epoch.0,
                topic_id: s.topic_id.clone(),
            }),
            // An empty log has nothing to diverge: the fetch corrects a start the leader lacks.
            Ok((None, end)) => s.offset = Some(end),
            Err(e) => {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "cannot read the local epoch");
                retry_later(s, RETRY);
            }
        }
    }
    if queries.is_empty() {
        return true;
    }
    let req = OffsetForLeaderEpochRequest {
        replica_id: me.id,
        partitions: queries,
        broker_epoch: me.broker_epoch,
    };
    let resp = match tokio::time::timeout(Duration::from_secs(5), rpc.offset_for_leader_epoch(req))
        .await
    {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!(error = %status, "OffsetForLeaderEpoch failed");
            return false;
        }
        Err(_) => return false,
    };
    for a in resp.partitions {
        let Some(s) = states.get_mut(&(a.topic.clone(), a.partition)) else { continue };
        if a.error_code != ErrorCode::None as i32 {
            tracing::debug!(topic = %a.topic, partition = a.partition, code = a.error_code, message = %a.error_message, "leader cannot answer OffsetForLeaderEpoch yet");
            retry_later(s, RETRY);
            continue;
        }
        let end = EpochEnd {
            found: a.epoch.map(|e| (LeaderEpoch(e), Offset(a.end_offset))),
            log_start: Offset(a.log_start_offset),
        };
        match s.handle.truncate_by_epoch(s.epoch, end).await {
            Ok(t) if t.converged => {
                s.offset = Some(t.log_end);
                s.retry_at = None;
            }
            Ok(t) => {
                // KIP-279: we never had the epoch the leader answered, so the leader's copy of
                // our older epoch may end earlier still. Ask again (the run loop does, at once)
                // with our new latest epoch, which this round strictly lowered.
                tracing::debug!(topic = %a.topic, partition = a.partition, log_end = t.log_end.0, "epochs not yet agreed; asking OffsetForLeaderEpoch again");
                s.offset = None;
                s.retry_at = None;
            }
            Err(e) => {
                tracing::warn!(topic = %a.topic, partition = a.partition, error = %e, "truncation failed");
                retry_later(s, RETRY);
            }
        }
    }
    true
}

/// One `ReplicaFetch` round for every partition ready to fetch. False when the call failed.
async fn fetch(
    me: Sender,
    rpc: &mut ReplicationClient<Channel>,
    states: &mut HashMap<Key, State>,
) -> bool {
    let now = Instant::now();
    let partitions: Vec<ReplicaFetchPartition> = states
        .iter()
        .filter(|(_, s)| s.offset.is_some() && s.retry_at.is_none_or(|t| t <= now))
        .map(|(k, s)| ReplicaFetchPartition {
            topic: k.0.clone(),
            partition: k.1,
            leader_epoch: s.epoch.0,
            fetch_offset: s.offset.expect("invariant: filtered").0,
            max_bytes: max_bytes(s.throttle_bytes_per_sec),
            high_watermark: s.handle.state().high_watermark.0,
            topic_id: s.topic_id.clone(),
        })
        .collect();
    // A throttled partition waiting out its pause joins the next fetch when its pause ends: the
    // long poll of the others must not hold it back longer.
    let max_wait_ms = states
        .values()
        .filter(|s| s.offset.is_some())
        .filter_map(|s| s.retry_at.filter(|t| *t > now))
        .min()
        .map_or(FETCH_MAX_WAIT_MS, |t| {
            let until = t.saturating_duration_since(now).as_millis();
            u32::try_from(until).unwrap_or(u32::MAX).min(FETCH_MAX_WAIT_MS)
        });
    let req = ReplicaFetchRequest {
        replica_id: me.id,
        broker_epoch: me.broker_epoch,
        max_wait_ms,
        max_bytes: FETCH_MAX_BYTES,
        partitions,
    };
    let timeout = Duration::from_millis(u64::from(FETCH_MAX_WAIT_MS)) + Duration::from_secs(5);
    let resp = match tokio::time::timeout(timeout, rpc.replica_fetch(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!(error = %status, "ReplicaFetch failed");
            return false;
        }
        Err(_) => {
            tracing::debug!("ReplicaFetch timed out");
            return false;
        }
    };
    for p in resp.partitions {
        let Some(s) = states.get_mut(&(p.topic.clone(), p.partition)) else { continue };
        let code = ErrorCode::try_from(p.error_code).unwrap_or(ErrorCode::UnknownServerError);
        match code {
            ErrorCode::None => {
                let copied = p.records.len() as u64;
                match s.handle.append_replicated(s.epoch, p.records, Offset(p.high_watermark)).await
                {
                    Ok(end) => {
                        s.offset = Some(end);
                        // Counted from when the fetch was sent, so the copy runs at the rate.
                        if let Some(pause) = throttle_pause(s.throttle_bytes_per_sec, copied) {
                            s.retry_at = Some(now + pause);
                        }
                        // Follow the leader's log start when it deleted records (below the HW).
                        if p.log_start_offset > s.handle.state().log_start.0
                            && let Err(e) = s.handle.delete_before(Offset(p.log_start_offset)).await
                        {
                            tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "following the leader's log start failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "replicated append failed; truncating again");
                        s.offset = None;
                        retry_later(s, RETRY);
                    }
                }
            }
            ErrorCode::OffsetOutOfRange => {
                // Our position is outside the leader's log: find the common point again.
                s.offset = None;
            }
            _ => {
                tracing::debug!(topic = %p.topic, partition = p.partition, ?code, message = %p.error_message, "leader refused the fetch");
                retry_later(s, RETRY);
            }
        }
    }
    true
}
