//! Share groups (KIP-932, "queues"): a [`ShareConsumer`] joins a share group, polls records the
//! coordinator hands it under an acquisition lock, and acknowledges each one (accept, release,
//! reject, renew), explicitly or implicitly (every record of a poll accepted by the next poll).
//! Any number of members may consume the same partitions. Administration on [`Admin`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use silt_core::batch::Header;
use silt_proto::v1::{self, ErrorCode};
use tokio::task::JoinHandle;

use crate::group::link::GroupLink;
use crate::{Admin, Client, ClientError};

/// Deadline of one coordinator call, coordinator moves included.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// How a consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// Every record of a poll not acknowledged otherwise is accepted by the next poll (or
    /// `commit`/`close`).
    #[default]
    Implicit,
    /// Only what [`ShareConsumer::acknowledge`] says is sent; an unacknowledged record goes back
    /// to the group when its lock expires.
    Explicit,
}

/// How a record is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AckKind {
    /// Processed: never delivered again.
    Accept,
    /// Give it back now: delivered again (to any member) at once.
    Release,
    /// Unprocessable: never delivered again; written to the topic's dead-letter topic if it has
    /// one.
    Reject,
    /// Still working on it: the lock starts over (the record stays unacknowledged).
    Renew,
}

impl AckKind {
    fn wire(self) -> i32 {
        match self {
            AckKind::Accept => v1::AcknowledgeType::Accept as i32,
            AckKind::Release => v1::AcknowledgeType::Release as i32,
            AckKind::Reject => v1::AcknowledgeType::Reject as i32,
            AckKind::Renew => v1::AcknowledgeType::Renew as i32,
        }
    }
}

/// Where a share group starts on a partition it has not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareStart {
    /// New records only (Kafka's default `share.auto.offset.reset`).
    #[default]
    Latest,
    /// From the log start.
    Earliest,
}

/// Settings of a share group member.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    pub group: String,
    pub topics: Vec<String>,
    pub client_id: String,
    pub ack_mode: AckMode,
    /// Where the group starts on a partition it has no state for (the first member decides).
    pub start: ShareStart,
    /// Most records one poll returns.
    pub max_records: u32,
    /// Longest a poll waits at the broker for records.
    pub max_wait: Duration,
}

impl ShareConfig {
    pub fn new(group: &str, topics: &[&str]) -> ShareConfig {
        ShareConfig {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            client_id: "silt-share".to_string(),
            ack_mode: AckMode::Implicit,
            start: ShareStart::Latest,
            max_records: 500,
            max_wait: Duration::from_millis(500),
        }
    }
}

/// A record a share consumer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// 1 on the first delivery.
    pub delivery_count: u32,
}

impl ShareRecord {
    /// The value of the last header named `key`.
    pub fn header(&self, key: &str) -> Option<&Bytes> {
        self.headers.iter().rev().find(|h| h.key == key).and_then(|h| h.value.as_ref())
    }
}

/// An acknowledgement the coordinator refused (INVALID_RECORD_STATE: the lock had expired and
/// the record went back to the group), or that was lost with the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFailure {
    pub topic: String,
    pub partition: u32,
    pub code: Option<ErrorCode>,
    pub message: String,
}

#[derive(Debug, Default)]
struct Membership {
    member_id: String,
    epoch: i32,
    interval: Duration,
    assignment: Vec<(String, u32)>,
}

/// A member of a share group.
pub struct ShareConsumer {
    link: GroupLink,
    config: ShareConfig,
    member: Arc<Mutex<Membership>>,
    heartbeat: JoinHandle<()>,
    /// Acknowledgements not sent yet, by (topic, partition, offset).
    pending: BTreeMap<(String, u32, i64), AckKind>,
    /// Records of the last poll (implicit mode accepts those not acknowledged otherwise).
    delivered: Vec<(String, u32, i64)>,
    failures: Vec<AckFailure>,
}

impl std::fmt::Debug for ShareConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareConsumer").field("group", &self.config.group).finish()
    }
}

async fn heartbeat(
    link: &GroupLink,
    config: &ShareConfig,
    member_id: String,
    epoch: i32,
) -> Result<v1::ShareGroupHeartbeatResponse, ClientError> {
    let req = v1::ShareGroupHeartbeatRequest {
        group: config.group.clone(),
        member_id,
        member_epoch: epoch,
        client_id: config.client_id.clone(),
        subscribed_topics: config.topics.clone(),
        offset_reset: match config.start {
            ShareStart::Latest => v1::ShareOffsetReset::Latest as i32,
            ShareStart::Earliest => v1::ShareOffsetReset::Earliest as i32,
        },
    };
    link.call_share(CALL_DEADLINE, |mut c| {
        let req = req.clone();
        async move { c.share_group_heartbeat(req).await }
    })
    .await
}

fn apply(m: &mut Membership, r: v1::ShareGroupHeartbeatResponse) {
    m.member_id = r.member_id;
    m.epoch = r.member_epoch;
    m.interval = Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(100)));
    m.assignment = r
        .assignment
        .into_iter()
        .flat_map(|t| t.partitions.into_iter().map(move |p| (t.topic.clone(), p)))
        .collect();
}

/// Whether an error means "join again".
fn rejoin(e: &ClientError) -> bool {
    matches!(e.code(), Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch))
}

impl ShareConsumer {
    /// Joins the share group and keeps the membership alive in the background.
    pub async fn join(client: &Client, config: ShareConfig) -> Result<ShareConsumer, ClientError> {
        if config.topics.is_empty() {
            return Err(ClientError::InvalidArgument("subscribe to at least one topic".into()));
        }
        let link = GroupLink::share(client.clone(), &config.group);
        let r = heartbeat(&link, &config, String::new(), 0).await?;
        let mut m = Membership::default();
        apply(&mut m, r);
        let member = Arc::new(Mutex::new(m));
        let task = {
            let (link, config, member) = (link.clone(), config.clone(), member.clone());
            tokio::spawn(async move {
                loop {
                    let (id, epoch, interval) = {
                        let m = member.lock().unwrap_or_else(|p| p.into_inner());
                        (m.member_id.clone(), m.epoch, m.interval)
                    };
                    tokio::time::sleep(interval).await;
                    let r = match heartbeat(&link, &config, id.clone(), epoch).await {
                        Err(e) if rejoin(&e) => heartbeat(&link, &config, id, 0).await,
                        r => r,
                    };
                    match r {
                        Ok(r) => apply(&mut member.lock().unwrap_or_else(|p| p.into_inner()), r),
                        Err(e) => tracing::debug!(error = %e, "share group heartbeat failed"),
                    }
                }
            })
        };
        Ok(ShareConsumer {
            link,
            config,
            member,
            heartbeat: task,
            pending: BTreeMap::new(),
            delivered: Vec::new(),
            failures: Vec::new(),
        })
    }

    /// This member's id.
    pub fn member_id(&self) -> String {
        self.member.lock().unwrap_or_else(|p| p.into_inner()).member_id.clone()
    }

    /// The partitions this member is assigned (every partition of its topics).
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.member.lock().unwrap_or_else(|p| p.into_inner()).assignment.clone()
    }

    /// Queues an acknowledgement of `record`, sent with the next poll or [`commit`](Self::commit).
    pub fn acknowledge(&mut self, record: &ShareRecord, kind: AckKind) {
        self.pending.insert((record.topic.clone(), record.partition, record.offset), kind);
    }

    /// Acknowledgements the coordinator refused since the last call (their records went back to
    /// the group: another member may process them again).
    pub fn take_failures(&mut self) -> Vec<AckFailure> {
        std::mem::take(&mut self.failures)
    }

    /// The queued acknowledgements as ranges (implicit mode first accepts the last poll's
    /// records not acknowledged otherwise).
    fn drain_acks(&mut self) -> Vec<v1::AcknowledgementBatch> {
        if self.config.ack_mode == AckMode::Implicit {
            for key in self.delivered.drain(..) {
                self.pending.entry(key).or_insert(AckKind::Accept);
            }
        } else {
            self.delivered.clear();
        }
        let mut out: Vec<v1::AcknowledgementBatch> = Vec::new();
        for ((topic, partition, offset), kind) in std::mem::take(&mut self.pending) {
            match out.last_mut() {
                Some(b)
                    if b.topic == topic
                        && b.partition == partition
                        && b.r#type == kind.wire()
                        && b.last_offset + 1 == offset =>
                {
                    b.last_offset = offset;
                }
                _ => out.push(v1::AcknowledgementBatch {
                    topic,
                    partition,
                    first_offset: offset,
                    last_offset: offset,
                    r#type: kind.wire(),
                }),
            }
        }
        out
    }

    fn note(&mut self, results: Vec<v1::PartitionAckResult>) {
        for r in results.into_iter().filter(|r| r.error_code != 0) {
            self.failures.push(AckFailure {
                topic: r.topic,
                partition: r.partition,
                code: ErrorCode::try_from(r.error_code).ok(),
                message: r.error_message,
            });
        }
    }

    fn lost(&mut self, acks: &[v1::AcknowledgementBatch], e: &ClientError) {
        for a in acks {
            self.failures.push(AckFailure {
                topic: a.topic.clone(),
                partition: a.partition,
                code: e.code(),
                message: format!("acknowledgement lost: {e}"),
            });
        }
    }

    async fn join_again(&self) -> Result<(), ClientError> {
        let id = self.member_id();
        let r = heartbeat(&self.link, &self.config, id, 0).await?;
        apply(&mut self.member.lock().unwrap_or_else(|p| p.into_inner()), r);
        Ok(())
    }

    /// Sends the queued acknowledgements, then waits up to `max_wait` for records and returns
    /// them (locked to this member for the broker's lock duration).
    pub async fn poll(&mut self) -> Result<Vec<ShareRecord>, ClientError> {
        let acks = self.drain_acks();
        let req = v1::ShareFetchRequest {
            group: self.config.group.clone(),
            member_id: self.member_id(),
            member_epoch: 0,
            acknowledgements: acks.clone(),
            max_records: self.config.max_records,
            max_wait_ms: self.config.max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
            max_bytes: 0,
            partitions: Vec::new(),
        };
        let r = self
            .link
            .call_share(CALL_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.share_fetch(req).await }
            })
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // The acknowledgements went nowhere: their records return to the group.
                self.lost(&acks, &e);
                if rejoin(&e) {
                    self.join_again().await?;
                    return Ok(Vec::new());
                }
                return Err(e);
            }
        };
        self.note(r.acknowledgements);
        let records: Vec<ShareRecord> = r
            .records
            .into_iter()
            .filter_map(|a| {
                let rec = a.record?;
                Some(ShareRecord {
                    topic: a.topic,
                    partition: a.partition,
                    offset: rec.offset,
                    timestamp_ms: rec.timestamp_ms,
                    key: rec.key,
                    value: rec.value,
                    headers: rec
                        .headers
                        .into_iter()
                        .map(|h| Header { key: h.key, value: h.value })
                        .collect(),
                    delivery_count: a.delivery_count,
                })
            })
            .collect();
        self.delivered.extend(records.iter().map(|r| (r.topic.clone(), r.partition, r.offset)));
        Ok(records)
    }

    /// Sends the queued acknowledgements (implicit mode: the last poll's records accepted) and
    /// waits until the coordinator has persisted them. Returns those it refused.
    pub async fn commit(&mut self) -> Result<Vec<AckFailure>, ClientError> {
        let acks = self.drain_acks();
        if !acks.is_empty() {
            let req = v1::ShareAcknowledgeRequest {
                group: self.config.group.clone(),
                member_id: self.member_id(),
                member_epoch: 0,
                acknowledgements: acks.clone(),
            };
            let r = self
                .link
                .call_share(CALL_DEADLINE, |mut c| {
                    let req = req.clone();
                    async move { c.share_acknowledge(req).await }
                })
                .await;
            match r {
                Ok(r) => self.note(r.acknowledgements),
                Err(e) => {
                    self.lost(&acks, &e);
                    return Err(e);
                }
            }
        }
        Ok(self.take_failures())
    }

    /// Commits what is queued (implicit mode: accepts the last poll), then leaves: records
    /// still held go back to the group at once.
    pub async fn close(mut self) -> Result<Vec<AckFailure>, ClientError> {
        let failures = self.commit().await;
        self.heartbeat.abort();
        let req = v1::ShareGroupHeartbeatRequest {
            group: self.config.group.clone(),
            member_id: self.member_id(),
            member_epoch: -1,
            ..Default::default()
        };
        let _ = self
            .link
            .call_share(Duration::from_secs(5), |mut c| {
                let req = req.clone();
                async move { c.share_group_heartbeat(req).await }
            })
            .await;
        failures
    }
}

impl Drop for ShareConsumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// A share group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupListing {
    pub group: String,
    pub members: u32,
    /// Records held by members now.
    pub in_flight: u64,
    pub coordinator: u64,
}

impl Admin {
    fn share_link(&self, group: &str) -> GroupLink {
        GroupLink::share(self.client.clone(), group)
    }

    /// Every share group of the cluster (each broker lists those it coordinates).
    pub async fn list_share_groups(&self) -> Result<Vec<ShareGroupListing>, ClientError> {
        let meta = self.client.metadata(&[]).await?;
        let mut out: BTreeMap<String, ShareGroupListing> = BTreeMap::new();
        for b in meta.brokers.iter().filter(|b| b.alive) {
            let mut c = self.share_link("").share_client(&b.address)?;
            let call = c.list_share_groups(v1::ListShareGroupsRequest {});
            let r = tokio::time::timeout(CALL_DEADLINE, call)
                .await
                .map_err(|_| ClientError::Timeout)??;
            let r = r.into_inner();
            if r.error_code != 0 {
                return Err(ClientError::server(r.error_code, &r.error_message));
            }
            for g in r.groups {
                out.insert(
                    g.group.clone(),
                    ShareGroupListing {
                        group: g.group,
                        members: g.members,
                        in_flight: g.in_flight,
                        coordinator: b.node_id,
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Members, share-partitions (start and end offsets, records in flight, lag) and counters
    /// of a share group.
    pub async fn describe_share_group(
        &self,
        group: &str,
    ) -> Result<v1::DescribeShareGroupResponse, ClientError> {
        let req = v1::DescribeShareGroupRequest { group: group.to_string() };
        let mut r = self
            .share_link(group)
            .call_share(CALL_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.describe_share_group(req).await }
            })
            .await?;
        // The coordinator knows high watermarks only of partitions it hosts; ask the leaders.
        for p in r.partitions.iter_mut().filter(|p| p.lag < 0) {
            let tp = crate::TopicPartition { topic: p.topic.clone(), partition: p.partition };
            if let Ok(hw) = crate::consumer::resolve(&self.client, &tp, crate::Seek::Latest).await {
                p.lag = (hw - p.start_offset).max(0);
            }
        }
        Ok(r)
    }

    /// Deletes the state of a share group without members.
    pub async fn delete_share_group(&self, group: &str) -> Result<(), ClientError> {
        let req = v1::DeleteShareGroupRequest { group: group.to_string() };
        self.share_link(group)
            .call_share(CALL_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.delete_share_group(req).await }
            })
            .await?;
        Ok(())
    }
}
