//! The `Groups` gRPC service: input checks, then the coordinator's slot for the group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use silt_proto::v1::{self, ErrorCode};
use tonic::{Request, Response, Status};

use super::coordinator::{
    self as coord, Coordinated, append_queued, committed, coordinate, group_entry, write,
};
use super::records::{Entry, OffsetValue};
use super::state::{Committed, GroupError, Heartbeat, Tp, assignor_name, state_name};
use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use crate::service::metadata::view;
use silt_raft::AclOperation;

/// Longest group id, instance id or client id.
const MAX_ID_BYTES: usize = 255;
/// Most topics a member may subscribe to, and most partitions in one request.
const MAX_ITEMS: usize = 10_000;
/// Longest offset metadata.
const MAX_METADATA_BYTES: usize = 4096;
/// The heartbeat interval while a member's partitions are moving.
const PENDING_HEARTBEAT_MS: u64 = 100;

#[derive(Debug, Clone)]
pub(crate) struct GroupsService {
    shared: Arc<Shared>,
}

impl GroupsService {
    pub fn new(shared: Arc<Shared>) -> GroupsService {
        GroupsService { shared }
    }
}

impl From<GroupError> for WireError {
    fn from(e: GroupError) -> WireError {
        let code = match &e {
            GroupError::UnknownMember(_) => ErrorCode::UnknownMemberId,
            GroupError::FencedEpoch { .. } => ErrorCode::FencedMemberEpoch,
            GroupError::NotOwned { .. } => ErrorCode::StaleMemberEpoch,
            GroupError::NotEmpty(_) => ErrorCode::GroupNotEmpty,
            GroupError::Invalid(_) => ErrorCode::InvalidGroupId,
        };
        WireError::new(code, e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, message)
}

pub(super) fn check_group(group: &str) -> Result<(), WireError> {
    if group.is_empty() || group.len() > MAX_ID_BYTES {
        return Err(WireError::new(
            ErrorCode::InvalidGroupId,
            format!("group ids are 1-{MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn to_tps(list: Vec<v1::TopicPartitions>) -> Result<BTreeSet<Tp>, WireError> {
    let mut out = BTreeSet::new();
    for t in list {
        for p in t.partitions {
            out.insert((t.topic.clone(), p));
            if out.len() > MAX_ITEMS {
                return Err(invalid(format!("more than {MAX_ITEMS} partitions")));
            }
        }
    }
    Ok(out)
}

fn from_tps(set: &BTreeSet<Tp>) -> Vec<v1::TopicPartitions> {
    let mut out: Vec<v1::TopicPartitions> = Vec::new();
    for (t, p) in set {
        match out.last_mut() {
            Some(last) if last.topic == *t => last.partitions.push(*p),
            _ => out.push(v1::TopicPartitions { topic: t.clone(), partitions: vec![*p] }),
        }
    }
    out
}

/// Checks offsets to commit against the topics that exist.
pub(super) fn check_offsets(
    topics: &BTreeMap<String, u32>,
    offsets: &[v1::OffsetCommit],
) -> Result<Vec<(Tp, OffsetValue)>, WireError> {
    if offsets.len() > MAX_ITEMS {
        return Err(invalid(format!("more than {MAX_ITEMS} offsets")));
    }
    let now = crate::service::now_ms();
    offsets
        .iter()
        .map(|o| {
            let n = topics.get(&o.topic).ok_or_else(|| {
                WireError::new(ErrorCode::UnknownTopic, format!("unknown topic {}", o.topic))
            })?;
            if o.partition >= *n {
                return Err(WireError::new(
                    ErrorCode::UnknownPartition,
                    format!("topic {} has no partition {}", o.topic, o.partition),
                ));
            }
            if o.offset < 0 {
                return Err(WireError::new(
                    ErrorCode::OffsetOutOfRange,
                    format!("offset {} is negative", o.offset),
                ));
            }
            if o.metadata.len() > MAX_METADATA_BYTES {
                return Err(invalid(format!("offset metadata over {MAX_METADATA_BYTES} bytes")));
            }
            Ok((
                (o.topic.clone(), o.partition),
                OffsetValue {
                    offset: o.offset,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: now,
                },
            ))
        })
        .collect()
}

pub(super) fn offset_entries(group: &str, offsets: &[(Tp, OffsetValue)]) -> Vec<Entry> {
    offsets
        .iter()
        .map(|((topic, partition), v)| Entry::Offset {
            group: group.to_string(),
            topic: topic.clone(),
            partition: *partition,
            value: Some(v.clone()),
        })
        .collect()
}

/// Applies committed offsets written at `base` (one record each, in order).
fn apply_committed(c: &mut Coordinated, group: &str, offsets: Vec<(Tp, OffsetValue)>, base: u64) {
    let g = c.slot.groups.entry(group.to_string()).or_default();
    for (i, (tp, v)) in offsets.into_iter().enumerate() {
        let at = base + i as u64;
        g.apply_offset(tp, Some(Committed::from_record(v, at)), at);
    }
}

impl GroupsService {
    /// Committing (or resetting) offsets: READ on the group and on every topic named.
    fn may_commit(
        &self,
        access: &Access,
        group: &str,
        offsets: &[v1::OffsetCommit],
    ) -> Result<(), WireError> {
        access.group(&self.shared, AclOperation::Read, group)?;
        for o in offsets {
            access.topic(&self.shared, AclOperation::Read, &o.topic)?;
        }
        Ok(())
    }

    async fn find(
        &self,
        req: v1::FindCoordinatorRequest,
    ) -> Result<v1::FindCoordinatorResponse, WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        coord::ensure_offsets_topic(&self.shared).await?;
        let loc = coord::locate(&view(&self.shared), &req.group)?;
        let node_id = loc.leader.ok_or_else(|| {
            WireError::new(
                ErrorCode::CoordinatorNotAvailable,
                "no leader for the group's partition yet",
            )
        })?;
        Ok(v1::FindCoordinatorResponse {
            error_code: 0,
            error_message: String::new(),
            node_id,
            address: loc.address,
            partition: loc.partition,
        })
    }

    async fn heartbeat(
        &self,
        req: v1::GroupHeartbeatRequest,
    ) -> Result<v1::GroupHeartbeatResponse, WireError> {
        self.shared.serving()?; // a stale image must not place groups
        let shared = &self.shared;
        let c = &shared.config;
        check_group(&req.group)?;
        if req.member_id.len() > MAX_ID_BYTES
            || req.client_id.len() > MAX_ID_BYTES
            || req.instance_id.as_ref().is_some_and(|i| i.is_empty() || i.len() > MAX_ID_BYTES)
        {
            return Err(invalid(format!(
                "member, instance and client ids are at most {MAX_ID_BYTES} bytes"
            )));
        }
        if req.subscribed_topics.len() > MAX_ITEMS {
            return Err(invalid(format!("more than {MAX_ITEMS} subscribed topics")));
        }
        if req.subscribed_topics.is_empty() && req.subscribed_topic_regex.is_none() {
            return Err(invalid("subscribe to at least one topic or a regex"));
        }
        let session = match req.session_timeout_ms {
            0 => c.group_session_timeout_ms,
            s => u64::from(s),
        };
        if !(c.group_min_session_timeout_ms..=c.group_max_session_timeout_ms).contains(&session) {
            return Err(invalid(format!(
                "session timeout {session} ms is outside {}..={} ms",
                c.group_min_session_timeout_ms, c.group_max_session_timeout_ms
            )));
        }
        let assignor = match req.assignor.as_str() {
            "" => None,
            a => Some(a.parse().map_err(|e: String| WireError::new(ErrorCode::InvalidGroupId, e))?),
        };
        let hb = Heartbeat {
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            instance_id: req.instance_id,
            client_id: req.client_id,
            topics: req.subscribed_topics.into_iter().collect(),
            regex: req.subscribed_topic_regex,
            assignor,
            session_timeout_ms: session,
            owned: to_tps(req.owned)?,
            client_member_id: req.client_member_id,
        };
        if shared.coordinator.classic.has_members(&req.group) {
            return Err(WireError::new(
                ErrorCode::InconsistentGroupProtocol,
                format!("group {} has members of Kafka's classic protocol", req.group),
            ));
        }
        let v = view(shared);
        let topics = coord::subscribable_topics(&v);
        let mut co = coordinate(shared, &v, &req.group).await?;
        let now = shared.coordinator.now_ms();
        let node = shared.config.node_id;
        let g = co.slot.groups.entry(req.group.clone()).or_default();
        let out = match g.heartbeat(hb, now, &topics, || shared.coordinator.new_member_id(node)) {
            Ok(out) => out,
            Err(e) => {
                if g.members.is_empty() && g.offsets.is_empty() {
                    co.slot.groups.remove(&req.group);
                }
                return Err(e.into());
            }
        };
        if out.changed {
            tracing::info!(group = %req.group, member = %out.member_id, epoch = out.member_epoch, assignment = ?out.assignment, "member assignment changed");
            let entry = group_entry(&co.slot, &req.group);
            write(shared, &mut co, &[entry]).await?;
        }
        let interval =
            if out.pending { PENDING_HEARTBEAT_MS } else { c.group_heartbeat_interval_ms };
        Ok(v1::GroupHeartbeatResponse {
            error_code: 0,
            error_message: String::new(),
            member_id: out.member_id,
            member_epoch: out.member_epoch,
            heartbeat_interval_ms: interval as u32,
            assignment: from_tps(&out.assignment),
        })
    }

    async fn leave(&self, req: v1::LeaveGroupRequest) -> Result<(), WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        let shared = &self.shared;
        let v = view(shared);
        let topics = coord::subscribable_topics(&v);
        let mut co = coordinate(shared, &v, &req.group).await?;
        let g = co
            .slot
            .groups
            .get_mut(&req.group)
            .ok_or_else(|| GroupError::UnknownMember(req.member_id.clone()))?;
        g.leave(&req.member_id, req.instance_id.as_deref(), &topics)?;
        let entry = group_entry(&co.slot, &req.group);
        write(shared, &mut co, &[entry]).await?;
        Ok(())
    }

    async fn commit(&self, req: v1::CommitOffsetsRequest) -> Result<(), WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        let shared = &self.shared;
        let v = view(shared);
        let offsets = check_offsets(&coord::subscribable_topics(&v), &req.offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let co = coordinate(shared, &v, &req.group).await?;
        match co.slot.groups.get(&req.group) {
            Some(g) => {
                g.check_commit(&req.member_id, req.member_epoch, offsets.iter().map(|(tp, _)| tp))?
            }
            None if req.member_id.is_empty() => {}
            None => return Err(GroupError::UnknownMember(req.member_id.clone()).into()),
        }
        // Queue under the lock (log order = check order), wait without it, so commits of many
        // members are committed together.
        let rx = append_queued(&co.handle, &offset_entries(&req.group, &offsets)).await?;
        let _in_flight = coord::InFlight::new(&co.slot);
        let (partition, epoch) = (co.partition, co.leader_epoch);
        drop(co);
        let appended = committed(shared, rx).await?;
        // A fresh view: leadership may have moved while the commit was waited for.
        let mut co = match coord::coordinate_partition(shared, &view(shared), partition).await {
            Ok(co) if co.leader_epoch == epoch => co,
            // Leadership moved: the next coordinator reads the commit from the log.
            _ => return Ok(()),
        };
        apply_committed(&mut co, &req.group, offsets, appended.base_offset.0);
        Ok(())
    }

    async fn fetch_offsets(
        &self,
        req: v1::FetchOffsetsRequest,
    ) -> Result<Vec<v1::CommittedOffset>, WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        let wanted = to_tps(req.partitions)?;
        let co = coordinate(&self.shared, &view(&self.shared), &req.group).await?;
        if req.require_stable
            && super::txn_offsets::unstable(&co.slot, &req.group, wanted.iter(), wanted.is_empty())
        {
            return Err(WireError::new(
                ErrorCode::UnstableOffsetCommit,
                "a transaction holding offsets of these partitions has not ended yet",
            ));
        }
        let empty = BTreeMap::new();
        let have = co.slot.groups.get(&req.group).map_or(&empty, |g| &g.offsets);
        let one = |tp: &Tp| match have.get(tp) {
            Some(c) => v1::CommittedOffset {
                topic: tp.0.clone(),
                partition: tp.1,
                offset: c.offset,
                metadata: c.metadata.clone(),
                commit_timestamp_ms: c.timestamp_ms,
            },
            None => v1::CommittedOffset {
                topic: tp.0.clone(),
                partition: tp.1,
                offset: -1,
                metadata: String::new(),
                commit_timestamp_ms: -1,
            },
        };
        Ok(if wanted.is_empty() {
            have.keys().map(one).collect()
        } else {
            wanted.iter().map(one).collect()
        })
    }

    async fn list(&self) -> Result<Vec<v1::GroupListing>, WireError> {
        self.shared.serving()?; // a stale image must not place groups
        let shared = &self.shared;
        let v = view(shared);
        let Some(n) = coord::offsets_partitions(&v) else { return Ok(Vec::new()) };
        let me = shared.config.node_id;
        let mut out = Vec::new();
        for p in 0..n {
            if coord::locate_partition(&v, p).ok().and_then(|l| l.leader) != Some(me) {
                continue;
            }
            let co = coord::coordinate_partition(shared, &v, p).await?;
            for (name, g) in &co.slot.groups {
                out.push(v1::GroupListing {
                    group: name.clone(),
                    state: state_name(g).to_string(),
                    members: g.members.len() as u32,
                    coordinator: me,
                });
            }
        }
        Ok(out)
    }

    async fn describe(
        &self,
        req: v1::DescribeGroupRequest,
    ) -> Result<v1::DescribeGroupResponse, WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        let shared = &self.shared;
        let co = coordinate(shared, &view(shared), &req.group).await?;
        let g = co.slot.groups.get(&req.group).ok_or_else(|| {
            WireError::new(ErrorCode::GroupIdNotFound, format!("no group {}", req.group))
        })?;
        let members = g
            .members
            .values()
            .map(|m| v1::GroupMember {
                member_id: m.rec.id.clone(),
                instance_id: m.rec.instance_id.clone(),
                client_id: m.rec.client_id.clone(),
                member_epoch: m.rec.epoch,
                subscribed_topics: m.rec.topics.iter().cloned().collect(),
                subscribed_topic_regex: m.rec.regex.clone(),
                assignment: from_tps(&m.rec.assigned),
                target: from_tps(&g.target.get(&m.rec.id).cloned().unwrap_or_default()),
            })
            .collect();
        let mut partitions = g.subscribed_partitions(&coord::subscribable_topics(&view(shared)));
        partitions.extend(g.offsets.keys().cloned());
        let offsets = partitions
            .into_iter()
            .map(|tp| {
                let hw = coord::local_high_watermark(shared, &tp.0, tp.1).unwrap_or(-1);
                let committed = g.offsets.get(&tp).map_or(-1, |c| c.offset);
                let owner = g.members.values().find(|m| m.rec.assigned.contains(&tp));
                v1::PartitionLag {
                    committed,
                    high_watermark: hw,
                    lag: if hw < 0 || committed < 0 { -1 } else { hw - committed },
                    owner: owner.map(|m| m.rec.id.clone()).unwrap_or_default(),
                    topic: tp.0,
                    partition: tp.1,
                }
            })
            .collect();
        Ok(v1::DescribeGroupResponse {
            error_code: 0,
            error_message: String::new(),
            group: req.group.clone(),
            state: state_name(g).to_string(),
            group_epoch: g.epoch,
            assignor: assignor_name(g.assignor).to_string(),
            members,
            offsets,
            coordinator: shared.config.node_id,
        })
    }

    async fn reset(&self, req: v1::ResetOffsetsRequest) -> Result<(), WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        let shared = &self.shared;
        let v = view(shared);
        let offsets = check_offsets(&coord::subscribable_topics(&v), &req.offsets)?;
        let mut co = coordinate(shared, &v, &req.group).await?;
        if let Some(g) = co.slot.groups.get(&req.group) {
            g.check_commit("", 0, &[])?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let appended = write(shared, &mut co, &offset_entries(&req.group, &offsets)).await?;
        apply_committed(&mut co, &req.group, offsets, appended.base_offset.0);
        Ok(())
    }

    async fn delete(&self, req: v1::DeleteGroupRequest) -> Result<(), WireError> {
        self.shared.serving()?; // a stale image must not place groups
        check_group(&req.group)?;
        if self.shared.coordinator.classic.has_members(&req.group) {
            return Err(WireError::new(
                ErrorCode::GroupNotEmpty,
                format!("group {} has members of Kafka's classic protocol", req.group),
            ));
        }
        let shared = &self.shared;
        let mut co = coordinate(shared, &view(shared), &req.group).await?;
        let g = co.slot.groups.get(&req.group).ok_or_else(|| {
            WireError::new(ErrorCode::GroupIdNotFound, format!("no group {}", req.group))
        })?;
        g.check_commit("", 0, &[])?;
        let mut entries: Vec<Entry> = g
            .offsets
            .keys()
            .map(|(topic, partition)| Entry::Offset {
                group: req.group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            })
            .collect();
        entries.push(Entry::Group { group: req.group.clone(), value: None });
        write(shared, &mut co, &entries).await?;
        co.slot.groups.remove(&req.group);
        tracing::info!(group = %req.group, "deleted group");
        Ok(())
    }
}

/// `(error_code, error_message)` of a result.
fn status<T>(r: &Result<T, WireError>) -> (i32, String) {
    match r {
        Ok(_) => (0, String::new()),
        Err(e) => (e.code as i32, e.message.clone()),
    }
}

#[tonic::async_trait]
impl v1::groups_server::Groups for GroupsService {
    async fn find_coordinator(
        &self,
        req: Request<v1::FindCoordinatorRequest>,
    ) -> Result<Response<v1::FindCoordinatorResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Describe, &req.group) {
            Ok(()) => self.find(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::FindCoordinatorResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn group_heartbeat(
        &self,
        req: Request<v1::GroupHeartbeatRequest>,
    ) -> Result<Response<v1::GroupHeartbeatResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Read, &req.group) {
            Ok(()) => self.heartbeat(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::GroupHeartbeatResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn leave_group(
        &self,
        req: Request<v1::LeaveGroupRequest>,
    ) -> Result<Response<v1::LeaveGroupResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Read, &req.group) {
            Ok(()) => self.leave(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::LeaveGroupResponse { error_code, error_message }))
    }

    async fn commit_offsets(
        &self,
        req: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let parts: Vec<(String, u32)> =
            req.offsets.iter().map(|o| (o.topic.clone(), o.partition)).collect();
        let r = match self.may_commit(&access, &req.group, &req.offsets) {
            Ok(()) => self.commit(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        let partitions = parts
            .into_iter()
            .map(|(topic, partition)| v1::CommitOffsetsResult {
                topic,
                partition,
                error_code,
                error_message: error_message.clone(),
            })
            .collect();
        Ok(Response::new(v1::CommitOffsetsResponse { error_code, error_message, partitions }))
    }

    async fn fetch_offsets(
        &self,
        req: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Describe, &req.group) {
            // Offsets of topics the principal may not describe are left out.
            Ok(()) => GroupsService::fetch_offsets(self, req).await.map(|offsets| {
                let may = |t: &str| access.topic(&self.shared, AclOperation::Describe, t).is_ok();
                offsets.into_iter().filter(|o| may(&o.topic)).collect()
            }),
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::FetchOffsetsResponse {
            error_code,
            error_message,
            offsets: r.unwrap_or_default(),
        }))
    }

    async fn list_groups(
        &self,
        req: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        // Kafka's rule: every group with DESCRIBE on the cluster, else those the principal
        // may describe.
        let access = Access::of(&req);
        let all = access.may_cluster(&self.shared, AclOperation::Describe);
        let r = self.list().await.map(|groups| {
            let may =
                |g: &str| all || access.group(&self.shared, AclOperation::Describe, g).is_ok();
            groups.into_iter().filter(|g| may(&g.group)).collect()
        });
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::ListGroupsResponse {
            error_code,
            error_message,
            groups: r.unwrap_or_default(),
        }))
    }

    async fn describe_group(
        &self,
        req: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::DescribeGroupResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Describe, &req.group) {
            Ok(()) => self.describe(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::DescribeGroupResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn reset_offsets(
        &self,
        req: Request<v1::ResetOffsetsRequest>,
    ) -> Result<Response<v1::ResetOffsetsResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match self.may_commit(&access, &req.group, &req.offsets) {
            Ok(()) => self.reset(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::ResetOffsetsResponse { error_code, error_message }))
    }

    async fn delete_group(
        &self,
        req: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Delete, &req.group) {
            Ok(()) => self.delete(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::DeleteGroupResponse { error_code, error_message }))
    }
}
