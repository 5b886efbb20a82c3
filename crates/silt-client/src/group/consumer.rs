//! `GroupConsumer`: a member of a consumer group. A background task heartbeats the coordinator
//! with the partitions the consumer owns and receives its assignment; `poll` reconciles (gives up
//! revoked partitions after committing them and telling the listener, then confirms at once; takes
//! new ones at their committed offsets), then fetches. Commits go through a [`Committer`], a
//! cloneable handle any task can use; pending async commits of a revoked partition are dropped
//! and its position committed synchronously before the release is confirmed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silt_proto::v1::{self, ErrorCode};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::committer::{COMMIT_DEADLINE, Committer};
use super::link::GroupLink;
use crate::consumer::resolve;
use crate::{Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, Seek, TopicPartition};

/// How long joining keeps retrying (the first member of a cluster creates `__consumer_offsets`).
const JOIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long one heartbeat keeps retrying before the loop logs it and tries again.
const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(5);

/// When records count as processed, made explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Offsets are committed after the application has processed the records (the next poll,
    /// an explicit commit, a revocation, close): a crash replays the uncommitted tail, nothing is
    /// skipped.
    AtLeastOnce,
    /// `poll` commits the offsets after the records it returns before returning them: a crash
    /// may skip records being processed, none is delivered twice.
    AtMostOnce,
}

/// Who commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// The consumer commits what was delivered every `interval` (at the start of a poll), on
    /// revocation and on close.
    Auto { interval: Duration },
    /// The application commits ([`GroupConsumer::commit`] or a [`Committer`]).
    Manual,
}

/// A group member's settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    /// Static membership: a restart with the same id within the session keeps the partitions.
    pub instance_id: Option<String>,
    pub client_id: String,
    /// 0 = the broker's `group_session_timeout_ms`.
    pub session_timeout_ms: u32,
    /// "range", "roundrobin" or "sticky"; None = the group's (sticky for a new group).
    pub assignor: Option<String>,
    pub delivery: Delivery,
    pub commit: CommitMode,
    /// Where a partition without a committed offset starts.
    pub reset: Seek,
    pub fetch: ConsumerConfig,
}

impl GroupConfig {
    /// At-least-once with auto-commit every 5 s, new partitions from the earliest offset.
    pub fn new(group: &str) -> GroupConfig {
        GroupConfig {
            group: group.to_string(),
            instance_id: None,
            client_id: "silt-client".to_string(),
            session_timeout_ms: 0,
            assignor: None,
            delivery: Delivery::AtLeastOnce,
            commit: CommitMode::Auto { interval: Duration::from_secs(5) },
            reset: Seek::Earliest,
            fetch: ConsumerConfig::default(),
        }
    }
}

/// A member's identity in its group, as transactional offset commits carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group: String,
    pub member_id: String,
    pub member_epoch: u32,
}

/// A boxed future for the listener's methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Told about partitions arriving and leaving (default: nothing to do).
pub trait RebalanceListener: Send {
    /// New partitions, positioned at their committed offsets; called before records of them
    /// are returned.
    fn on_assigned<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }

    /// Partitions about to go to another member: the last chance to commit them (auto-commit
    /// has already committed what was delivered).
    fn on_revoked<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
        committer: &'a Committer,
    ) -> BoxFuture<'a, ()> {
        let _ = (partitions, committer);
        Box::pin(async {})
    }

    /// Partitions taken away because this member was fenced (too long silent): they may already
    /// be consumed elsewhere, and commits for them fail.
    fn on_lost<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }
}

/// What the heartbeat task and the consumer share.
#[derive(Debug, Default)]
pub(super) struct Membership {
    pub(super) member_id: String,
    pub(super) epoch: u32,
    /// The coordinator's latest answer.
    assignment: BTreeSet<TopicPartition>,
    /// What the consumer reads (reported in heartbeats).
    owned: BTreeSet<TopicPartition>,
    /// The member was fenced: the consumer must drop what it owned.
    lost: bool,
    /// A number per owned partition, new each time the partition is taken: an async commit
    /// sends a partition only if it still has the number it had when the commit was made.
    pub(super) grants: BTreeMap<TopicPartition, u64>,
    next_grant: u64,
    /// The number of the next commit made, and per partition that of the last commit sent.
    pub(super) next_commit: u64,
    pub(super) sent: BTreeMap<TopicPartition, u64>,
    /// The last heartbeat error, for diagnostics.
    last_error: Option<String>,
    /// Stop heartbeating (closed).
    closed: bool,
}

/// A member of a consumer group (see the module doc).
pub struct GroupConsumer {
    config: GroupConfig,
    link: GroupLink,
    inner: Consumer,
    membership: Arc<Mutex<Membership>>,
    /// Shared by every [`Committer`] of this member (see there).
    commit_turn: Arc<tokio::sync::Mutex<()>>,
    wake: Arc<Notify>,
    heartbeats: JoinHandle<()>,
    listener: Option<Box<dyn RebalanceListener>>,
    /// Positions last committed (to skip commits that change nothing).
    committed: BTreeMap<TopicPartition, i64>,
    last_auto_commit: Instant,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        // Without close(): no leave, the coordinator removes the member after its session.
        self.heartbeats.abort();
    }
}

/// What the member subscribes to.
#[derive(Debug, Clone)]
struct Subscription {
    topics: Vec<String>,
    regex: Option<String>,
}

impl GroupConsumer {
    /// Joins the group subscribed to `topics`; partitions arrive through `poll`.
    pub async fn subscribe(
        client: &Client,
        config: GroupConfig,
        topics: Vec<String>,
    ) -> Result<GroupConsumer, ClientError> {
        Self::start(client, config, Subscription { topics, regex: None }).await
    }

    /// Joins the group subscribed to every topic whose whole name matches `regex`.
    pub async fn subscribe_regex(
        client: &Client,
        config: GroupConfig,
        regex: &str,
    ) -> Result<GroupConsumer, ClientError> {
        Self::start(client, config, Subscription { topics: Vec::new(), regex: Some(regex.into()) })
            .await
    }

    async fn start(
        client: &Client,
        config: GroupConfig,
        sub: Subscription,
    ) -> Result<GroupConsumer, ClientError> {
        if sub.topics.is_empty() && sub.regex.is_none() {
            return Err(ClientError::InvalidArgument("subscribe to at least one topic".into()));
        }
        let link = GroupLink::new(client.clone(), &config.group);
        let membership = Arc::new(Mutex::new(Membership::default()));
        let wake = Arc::new(Notify::new());
        // The first heartbeat here, so a bad subscription or group id fails the call.
        let first = heartbeat_once(&link, &config, &sub, &membership, JOIN_DEADLINE).await?;
        let heartbeats = tokio::spawn(heartbeat_loop(
            link.clone(),
            config.clone(),
            sub,
            membership.clone(),
            wake.clone(),
            first,
        ));
        let mut inner = client.consumer(config.fetch.clone());
        inner.reset_out_of_range = Some(config.reset);
        Ok(GroupConsumer {
            inner,
            config,
            link,
            membership,
            commit_turn: Arc::default(),
            wake,
            heartbeats,
            listener: None,
            committed: BTreeMap::new(),
            last_auto_commit: Instant::now(),
        })
    }

    /// Sets the rebalance listener.
    pub fn set_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// A handle for commits from any task.
    pub fn committer(&self) -> Committer {
        Committer {
            link: self.link.clone(),
            membership: self.membership.clone(),
            turn: self.commit_turn.clone(),
        }
    }

    /// This member's id (empty until joined).
    pub fn member_id(&self) -> String {
        self.lock().member_id.clone()
    }

    /// The partitions this consumer currently reads.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.positions().keys().cloned().collect()
    }

    /// The next offset to be delivered of an owned partition.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.inner.position(tp)
    }

    /// Every owned partition with the next offset to be delivered.
    pub fn positions(&self) -> Vec<(TopicPartition, i64)> {
        self.inner.positions().iter().map(|(tp, o)| (tp.clone(), *o)).collect()
    }

    /// Moves an owned partition's position (e.g. back to what a transaction that was aborted
    /// had consumed from); false when the partition is not owned.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        if self.inner.position(tp).is_none() {
            return false;
        }
        self.inner.set_position(tp.clone(), offset);
        true
    }

    /// The membership a transactional producer sends with the offsets it commits
    /// ([`TransactionalProducer::send_offsets`](crate::TransactionalProducer::send_offsets)),
    /// so a member that lost its partitions cannot commit them.
    pub fn group_metadata(&self) -> GroupMetadata {
        let m = self.lock();
        GroupMetadata {
            group: self.config.group.clone(),
            member_id: m.member_id.clone(),
            member_epoch: m.epoch,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits the positions of every owned partition: everything `poll` has returned counts
    /// as processed. Returns when committed.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let changed: Vec<(TopicPartition, i64)> = self
            .inner
            .positions()
            .iter()
            .filter(|(tp, o)| self.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        self.committer().commit(changed.clone()).await?;
        self.committed.extend(changed);
        Ok(())
    }

    /// Starts committing every owned partition's position; returns at once. A partition
    /// revoked before the commit is sent is dropped from it (the revocation commits it).
    pub fn commit_async(&mut self) -> JoinHandle<Result<(), ClientError>> {
        let all: Vec<(TopicPartition, i64)> =
            self.inner.positions().iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        // Not noted in `committed`: it may be dropped, and the revocation must then commit.
        self.committer().commit_async(all)
    }

    /// Applies the coordinator's latest assignment: gives up revoked partitions (committing
    /// them, telling the listener) and takes new ones at their committed offsets.
    async fn reconcile(&mut self) -> Result<(), ClientError> {
        let (lost, assignment, owned) = {
            let mut m = self.lock();
            let lost = std::mem::take(&mut m.lost);
            (lost, m.assignment.clone(), m.owned.clone())
        };
        if lost {
            self.lock().grants.clear();
            let gone: Vec<TopicPartition> = self.inner.positions().keys().cloned().collect();
            for tp in &gone {
                self.inner.remove(tp);
                self.committed.remove(tp);
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_lost(&gone).await;
            }
            self.lock().owned.retain(|tp| assignment.contains(tp));
            return Ok(());
        }
        let revoked: Vec<TopicPartition> = owned.difference(&assignment).cloned().collect();
        if !revoked.is_empty() {
            // Async commits of these not sent yet are dropped: the new owner may commit further
            // once the release is confirmed. Their positions are committed synchronously here
            // (after any commit in flight: commits are sent one at a time).
            {
                let mut m = self.lock();
                for tp in &revoked {
                    m.grants.remove(tp);
                }
            }
            if self.auto_commits() {
                let offsets: Vec<(TopicPartition, i64)> = revoked
                    .iter()
                    .filter_map(|tp| Some((tp.clone(), self.inner.position(tp)?)))
                    .filter(|(tp, o)| self.committed.get(tp) != Some(o))
                    .collect();
                if let Err(e) = self.committer().commit(offsets).await {
                    tracing::warn!(error = %e, "commit of revoked partitions failed");
                }
            }
            let committer = self.committer();
            if let Some(l) = self.listener.as_mut() {
                l.on_revoked(&revoked, &committer).await;
            }
            for tp in &revoked {
                self.inner.remove(tp);
                self.committed.remove(tp);
            }
            self.lock().owned.retain(|tp| !revoked.contains(tp));
            self.wake.notify_one();
        }
        let added: Vec<TopicPartition> = assignment.difference(&owned).cloned().collect();
        if !added.is_empty() {
            // read_committed: wait out offsets a transaction still holds (KIP-447).
            let stable = self.config.fetch.isolation == crate::Isolation::ReadCommitted;
            let committed = fetch_committed(&self.link, &added, stable).await?;
            for tp in &added {
                let start = match committed.get(tp) {
                    Some(&o) if o >= 0 => o,
                    _ => resolve(self.link.client(), tp, self.config.reset).await?,
                };
                self.inner.set_position(tp.clone(), start);
                self.committed.insert(tp.clone(), start);
            }
            {
                let mut m = self.lock();
                m.owned.extend(added.iter().cloned());
                for tp in &added {
                    let grant = m.next_grant;
                    m.next_grant += 1;
                    m.grants.insert(tp.clone(), grant);
                }
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_assigned(&added).await;
            }
            self.wake.notify_one();
        }
        Ok(())
    }

    fn auto_commits(&self) -> bool {
        self.config.delivery == Delivery::AtLeastOnce
            && matches!(self.config.commit, CommitMode::Auto { .. })
    }

    /// Reconciles the assignment, auto-commits when due, and fetches: the records after the
    /// positions of the owned partitions (empty after the fetch wait when none arrived).
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.reconcile().await?;
        if let CommitMode::Auto { interval } = self.config.commit
            && self.config.delivery == Delivery::AtLeastOnce
            && self.last_auto_commit.elapsed() >= interval
        {
            self.last_auto_commit = Instant::now();
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "auto-commit failed");
            }
        }
        if self.inner.positions().is_empty() {
            // Nothing owned yet: wait for the assignment (bounded by the fetch wait).
            let wait = Duration::from_millis(u64::from(self.config.fetch.max_wait_ms));
            let _ = tokio::time::timeout(wait, assignment_changed(&self.membership)).await;
            return Ok(Vec::new());
        }
        let before: Vec<(TopicPartition, i64)> =
            self.inner.positions().iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        let records = self.inner.poll().await?;
        if self.config.delivery == Delivery::AtMostOnce
            && !records.is_empty()
            && let Err(e) = self.commit().await
        {
            // Not committed: do not deliver; read them again from the old positions.
            for (tp, o) in before {
                self.inner.set_position(tp, o);
            }
            return Err(e);
        }
        Ok(records)
    }

    /// The records as a stream (each poll's records in order; empty polls are skipped); ends at
    /// the first error. Use [`committer`](Self::committer) first for manual commits, and keep
    /// auto-commit for at-least-once: records count as processed when the next one is pulled.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<ConsumerRecord, ClientError>> {
        crate::consumer::records_stream(self)
    }

    /// Commits (auto-commit mode), gives up every partition (the listener's `on_revoked`),
    /// leaves the group, stops heartbeating.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = if self.auto_commits() { self.commit().await } else { Ok(()) };
        let owned: Vec<TopicPartition> = self.inner.positions().keys().cloned().collect();
        if !owned.is_empty() {
            let committer = self.committer();
            if let Some(l) = self.listener.as_mut() {
                l.on_revoked(&owned, &committer).await;
            }
            for tp in &owned {
                self.inner.remove(tp);
            }
            let mut m = self.lock();
            m.owned.clear();
            m.grants.clear();
        }
        let (member_id, instance_id) = {
            let mut m = self.lock();
            m.closed = true;
            (m.member_id.clone(), self.config.instance_id.clone())
        };
        self.heartbeats.abort();
        if !member_id.is_empty() {
            let req =
                v1::LeaveGroupRequest { group: self.config.group.clone(), member_id, instance_id };
            let r = self
                .link
                .call(Duration::from_secs(5), |mut c| {
                    let req = req.clone();
                    async move { c.leave_group(req).await }
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "leaving the group failed; the session will expire");
            }
        }
        committed
    }
}

/// Partitions grouped by topic, as the wire carries them.
fn to_wire<'a>(tps: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<v1::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| v1::TopicPartitions { topic: t.to_string(), partitions: ps })
        .collect()
}

/// The committed offsets of `tps` (-1 where none is; every committed partition when empty).
pub(super) async fn fetch_committed(
    link: &GroupLink,
    tps: &[TopicPartition],
    require_stable: bool,
) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
    let req = v1::FetchOffsetsRequest {
        group: link.group.clone(),
        partitions: to_wire(tps),
        require_stable,
    };
    let r = link
        .call(COMMIT_DEADLINE, |mut c| {
            let req = req.clone();
            async move { c.fetch_offsets(req).await }
        })
        .await?;
    Ok(r.offsets
        .into_iter()
        .map(|o| (TopicPartition { topic: o.topic, partition: o.partition }, o.offset))
        .collect())
}

impl crate::consumer::Polls for GroupConsumer {
    fn poll_records(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Vec<ConsumerRecord>, ClientError>> + Send {
        self.poll()
    }
}

/// Waits until the heartbeat task has an assignment that differs from what is owned.
async fn assignment_changed(membership: &Mutex<Membership>) {
    loop {
        {
            let m = membership.lock().unwrap_or_else(|p| p.into_inner());
            if m.lost || m.assignment != m.owned {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One heartbeat; applies the answer. Returns the interval to the next one.
async fn heartbeat_once(
    link: &GroupLink,
    config: &GroupConfig,
    sub: &Subscription,
    membership: &Mutex<Membership>,
    deadline: Duration,
) -> Result<Duration, ClientError> {
    let req = {
        let m = membership.lock().unwrap_or_else(|p| p.into_inner());
        v1::GroupHeartbeatRequest {
            group: config.group.clone(),
            member_id: m.member_id.clone(),
            member_epoch: m.epoch,
            instance_id: config.instance_id.clone(),
            client_id: config.client_id.clone(),
            subscribed_topics: sub.topics.clone(),
            subscribed_topic_regex: sub.regex.clone(),
            assignor: config.assignor.clone().unwrap_or_default(),
            session_timeout_ms: config.session_timeout_ms,
            owned: to_wire(&m.owned),
            client_member_id: false,
        }
    };
    let sent_id = req.member_id.clone();
    let r = link
        .call(deadline, |mut c| {
            let req = req.clone();
            async move { c.group_heartbeat(req).await }
        })
        .await;
    let mut m = membership.lock().unwrap_or_else(|p| p.into_inner());
    match r {
        Ok(resp) => {
            if m.member_id != sent_id {
                // A fence was handled meanwhile; this answer is for the old incarnation.
                return Ok(Duration::ZERO);
            }
            m.member_id = resp.member_id;
            m.epoch = resp.member_epoch;
            m.assignment = resp
                .assignment
                .into_iter()
                .flat_map(|t| {
                    let topic = t.topic;
                    t.partitions
                        .into_iter()
                        .map(move |partition| TopicPartition { topic: topic.clone(), partition })
                })
                .collect();
            m.last_error = None;
            Ok(Duration::from_millis(u64::from(resp.heartbeat_interval_ms.clamp(10, 60_000))))
        }
        Err(e)
            if matches!(
                e.code(),
                Some(ErrorCode::UnknownMemberId) | Some(ErrorCode::FencedMemberEpoch)
            ) =>
        {
            tracing::warn!(group = %config.group, error = %e, "fenced from the group; rejoining");
            m.member_id.clear();
            m.epoch = 0;
            m.assignment.clear();
            m.owned.clear();
            m.lost = true;
            m.last_error = Some(e.to_string());
            Ok(Duration::ZERO)
        }
        Err(e) => {
            m.last_error = Some(e.to_string());
            Err(e)
        }
    }
}

async fn heartbeat_loop(
    link: GroupLink,
    config: GroupConfig,
    sub: Subscription,
    membership: Arc<Mutex<Membership>>,
    wake: Arc<Notify>,
    mut next: Duration,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = wake.notified() => {}
        }
        if membership.lock().unwrap_or_else(|p| p.into_inner()).closed {
            return;
        }
        next = match heartbeat_once(&link, &config, &sub, &membership, HEARTBEAT_DEADLINE).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(group = %config.group, error = %e, "heartbeat failed");
                Duration::from_millis(200)
            }
        };
    }
}
