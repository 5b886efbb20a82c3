//! The `Share` gRPC service: input checks and authorization, then the coordinator's slot for the
//! group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use silt_proto::v1::{self, ErrorCode};
use silt_raft::AclOperation;
use tonic::{Request, Response, Status};

use super::coordinator::{self as coord, persist};
use super::fetch::{AckBatch, MAX_ACK_RANGE, acknowledge, acquire};
use super::group::{Heartbeat, MemberError, Reset, Tp};
use super::state::AckType;
use crate::auth::Access;
use crate::broker::Shared;
use crate::error::WireError;
use crate::groups::coordinator::local_high_watermark;
use crate::service::metadata::view;

const MAX_ID_BYTES: usize = 255;
const MAX_ITEMS: usize = 10_000;
const DEFAULT_MAX_RECORDS: u32 = 500;
const MAX_RECORDS: u32 = 10_000;
const DEFAULT_MAX_BYTES: u32 = 8 * 1024 * 1024;
/// How often a waiting fetch looks again.
const POLL_STEP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub(crate) struct ShareService {
    shared: Arc<Shared>,
}

impl ShareService {
    pub fn new(shared: Arc<Shared>) -> ShareService {
        ShareService { shared }
    }
}

impl From<MemberError> for WireError {
    fn from(e: MemberError) -> WireError {
        let code = match &e {
            MemberError::Unknown(_) => ErrorCode::UnknownMemberId,
            MemberError::Fenced { .. } => ErrorCode::FencedMemberEpoch,
        };
        WireError::new(code, e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, message)
}

fn check_group(group: &str) -> Result<(), WireError> {
    if group.is_empty() || group.len() > MAX_ID_BYTES {
        return Err(WireError::new(
            ErrorCode::InvalidGroupId,
            format!("a share group id is 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_acks(list: Vec<v1::AcknowledgementBatch>) -> Result<Vec<AckBatch>, WireError> {
    if list.len() > MAX_ITEMS {
        return Err(invalid(format!("more than {MAX_ITEMS} acknowledgement batches")));
    }
    list.into_iter()
        .map(|a| {
            let ack = AckType::from_wire(a.r#type)
                .ok_or_else(|| invalid(format!("acknowledge type {} is not 1-4", a.r#type)))?;
            if a.first_offset < 0 || a.last_offset < a.first_offset {
                return Err(invalid(format!(
                    "acknowledgement range {}..={} is empty or negative",
                    a.first_offset, a.last_offset
                )));
            }
            let (first, last) = (a.first_offset as u64, a.last_offset as u64);
            if last - first >= MAX_ACK_RANGE {
                return Err(invalid(format!(
                    "an acknowledgement range spans at most {MAX_ACK_RANGE} offsets"
                )));
            }
            Ok(AckBatch { tp: (a.topic, a.partition), first, last, ack })
        })
        .collect()
}

fn ack_results(results: Vec<(Tp, Result<(), WireError>)>) -> Vec<v1::PartitionAckResult> {
    results
        .into_iter()
        .map(|((topic, partition), r)| {
            let (error_code, error_message) = match r {
                Ok(()) => (0, String::new()),
                Err(e) => (e.code as i32, e.message),
            };
            v1::PartitionAckResult { topic, partition, error_code, error_message }
        })
        .collect()
}

/// Checks `id` is a member of `group` (at `epoch`, 0 = any) and notes it is alive.
fn member(
    c: &mut coord::Coordinated,
    group: &str,
    id: &str,
    epoch: i32,
    now: u64,
) -> Result<(), WireError> {
    let g = c.slot.groups.get_mut(group).ok_or_else(|| MemberError::Unknown(id.to_string()))?;
    g.touch(id, epoch, now)?;
    Ok(())
}

fn to_tps(list: &[Tp]) -> Vec<v1::TopicPartitions> {
    let mut out: Vec<v1::TopicPartitions> = Vec::new();
    for (t, p) in list {
        match out.last_mut() {
            Some(last) if &last.topic == t => last.partitions.push(*p),
            _ => out.push(v1::TopicPartitions { topic: t.clone(), partitions: vec![*p] }),
        }
    }
    out
}

impl ShareService {
    async fn find(
        &self,
        req: v1::FindShareCoordinatorRequest,
    ) -> Result<v1::FindShareCoordinatorResponse, WireError> {
        self.shared.serving()?;
        check_group(&req.group)?;
        coord::ensure_state_topic(&self.shared).await?;
        let loc = coord::locate(&view(&self.shared), &req.group)?;
        let node_id = loc.leader.ok_or_else(|| {
            WireError::new(
                ErrorCode::CoordinatorNotAvailable,
                "no leader for the group's partition yet",
            )
        })?;
        Ok(v1::FindShareCoordinatorResponse {
            error_code: 0,
            error_message: String::new(),
            node_id,
            address: loc.address,
            partition: loc.partition,
        })
    }

    pub(crate) async fn heartbeat(
        &self,
        req: v1::ShareGroupHeartbeatRequest,
    ) -> Result<v1::ShareGroupHeartbeatResponse, WireError> {
        let shared = &self.shared;
        shared.serving()?;
        check_group(&req.group)?;
        if req.member_id.len() > MAX_ID_BYTES || req.client_id.len() > MAX_ID_BYTES {
            return Err(invalid(format!("member and client ids are at most {MAX_ID_BYTES} bytes")));
        }
        if req.subscribed_topics.len() > MAX_ITEMS {
            return Err(invalid(format!("more than {MAX_ITEMS} subscribed topics")));
        }
        let v = view(shared);
        let mut c = coord::coordinate(shared, &v, &req.group).await?;
        let now = shared.share.now_ms();
        if req.member_epoch == -1 {
            // Leaving: its records go back to the group at once.
            let limits = coord::limits(shared);
            let Some(g) = c.slot.groups.get_mut(&req.group) else {
                return Err(MemberError::Unknown(req.member_id).into());
            };
            g.members
                .remove(&req.member_id)
                .ok_or_else(|| MemberError::Unknown(req.member_id.clone()))?;
            let mut changed = Vec::new();
            let mut archived = Vec::new();
            for (tp, sp) in g.partitions.iter_mut() {
                let (n, a) = sp.release_locks(now, Some(&req.member_id), &limits);
                if n > 0 {
                    changed.push(tp.clone());
                    archived.extend(a.into_iter().map(|a| (tp.clone(), a)));
                }
            }
            super::fetch::archive(shared, &mut c, &req.group, &archived).await?;
            persist(shared, &mut c, &req.group, &changed).await?;
            return Ok(v1::ShareGroupHeartbeatResponse {
                member_id: req.member_id,
                member_epoch: -1,
                ..Default::default()
            });
        }
        if req.subscribed_topics.is_empty() {
            return Err(invalid("subscribe to at least one topic"));
        }
        let reset = match v1::ShareOffsetReset::try_from(req.offset_reset) {
            Ok(v1::ShareOffsetReset::Earliest) => Reset::Earliest,
            _ => Reset::Latest,
        };
        let hb = Heartbeat {
            member_id: req.member_id,
            epoch: req.member_epoch,
            client_id: req.client_id,
            topics: req.subscribed_topics.into_iter().collect::<BTreeSet<_>>(),
            reset,
        };
        let existing = coord::existing_topics(&v);
        let node = shared.config.node_id;
        let g = c.slot.groups.entry(req.group.clone()).or_default();
        let joined = hb.epoch == 0;
        let (member_id, member_epoch, assignment) =
            g.heartbeat(hb, now, &existing, || shared.share.new_member_id(node))?;
        if joined {
            tracing::info!(group = %req.group, member = %member_id, "share group member joined");
        }
        Ok(v1::ShareGroupHeartbeatResponse {
            error_code: 0,
            error_message: String::new(),
            member_id,
            member_epoch,
            heartbeat_interval_ms: shared.config.share_heartbeat_interval_ms as u32,
            assignment: to_tps(&assignment),
        })
    }

    pub(crate) async fn fetch(
        &self,
        req: v1::ShareFetchRequest,
    ) -> Result<v1::ShareFetchResponse, WireError> {
        let shared = &self.shared;
        shared.serving()?;
        check_group(&req.group)?;
        let acks = check_acks(req.acknowledgements)?;
        let max_records = match req.max_records {
            0 => DEFAULT_MAX_RECORDS,
            n => n.min(MAX_RECORDS),
        } as usize;
        let max_bytes = match req.max_bytes {
            0 => DEFAULT_MAX_BYTES,
            n => n,
        } as usize;
        let only: BTreeSet<Tp> = req
            .partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.clone(), *p)))
            .collect();
        let wait =
            Duration::from_millis(u64::from(req.max_wait_ms).min(shared.config.max_fetch_wait_ms));
        let deadline = tokio::time::Instant::now() + wait;
        let mut stopping = shared.stopping.subscribe();
        let mut results = Vec::new();
        let mut first = true;
        loop {
            let v = view(shared);
            let mut c = coord::coordinate(shared, &v, &req.group).await?;
            let now = shared.share.now_ms();
            member(&mut c, &req.group, &req.member_id, req.member_epoch, now)?;
            let mut changed = Vec::new();
            if first {
                let acked =
                    acknowledge(shared, &mut c, &req.group, &req.member_id, acks.clone()).await?;
                (results, changed) = acked;
                first = false;
            }
            let (records, created) =
                acquire(shared, &mut c, &req.group, &req.member_id, &only, max_records, max_bytes)
                    .await?;
            changed.extend(created);
            // The state writes are queued in lock order; the wait for their commit runs
            // unlocked, so other members' requests go on meanwhile.
            let queued = if changed.is_empty() {
                None
            } else {
                Some(coord::queue(&mut c, &req.group, &changed).await?)
            };
            drop(c);
            if let Some(q) = queued {
                coord::committed_all(shared, q).await?;
            }
            if !records.is_empty()
                || tokio::time::Instant::now() >= deadline
                || *stopping.borrow_and_update()
            {
                return Ok(v1::ShareFetchResponse {
                    error_code: 0,
                    error_message: String::new(),
                    acknowledgements: ack_results(results),
                    records,
                    lock_duration_ms: shared.config.share_record_lock_duration_ms as u32,
                });
            }
            let step =
                deadline.saturating_duration_since(tokio::time::Instant::now()).min(POLL_STEP);
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    pub(crate) async fn acknowledge(
        &self,
        req: v1::ShareAcknowledgeRequest,
    ) -> Result<v1::ShareAcknowledgeResponse, WireError> {
        let shared = &self.shared;
        shared.serving()?;
        check_group(&req.group)?;
        let acks = check_acks(req.acknowledgements)?;
        let v = view(shared);
        let mut c = coord::coordinate(shared, &v, &req.group).await?;
        let now = shared.share.now_ms();
        member(&mut c, &req.group, &req.member_id, req.member_epoch, now)?;
        let (results, changed) =
            acknowledge(shared, &mut c, &req.group, &req.member_id, acks).await?;
        let queued = coord::queue(&mut c, &req.group, &changed).await?;
        drop(c);
        coord::committed_all(shared, queued).await?;
        Ok(v1::ShareAcknowledgeResponse {
            error_code: 0,
            error_message: String::new(),
            acknowledgements: ack_results(results),
        })
    }

    /// Loads every slot this broker leads (a listing right after a failover sees the groups).
    async fn led_slots(&self) -> Vec<coord::Coordinated> {
        let shared = &self.shared;
        let v = view(shared);
        let Some(n) = coord::state_partitions(&v) else { return Vec::new() };
        let mut out = Vec::new();
        for p in 0..n {
            let Ok(loc) =
                crate::groups::coordinator::locate_in(&v, super::records::SHARE_STATE_TOPIC, p)
            else {
                continue;
            };
            if loc.leader != Some(shared.config.node_id) {
                continue;
            }
            if let Ok(c) = coord::coordinate_partition(shared, loc).await {
                out.push(c);
            }
        }
        out
    }

    async fn list(
        &self,
        may: impl Fn(&str) -> bool,
    ) -> Result<Vec<v1::ShareGroupListing>, WireError> {
        self.shared.serving()?;
        let mut out = Vec::new();
        for c in self.led_slots().await {
            for (name, g) in &c.slot.groups {
                if !may(name) {
                    continue;
                }
                out.push(v1::ShareGroupListing {
                    group: name.clone(),
                    members: g.members.len() as u32,
                    in_flight: g.partitions.values().map(|p| p.acquired() as u64).sum(),
                });
            }
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    async fn describe(
        &self,
        req: v1::DescribeShareGroupRequest,
    ) -> Result<v1::DescribeShareGroupResponse, WireError> {
        let shared = &self.shared;
        shared.serving()?;
        check_group(&req.group)?;
        let v = view(shared);
        let c = coord::coordinate(shared, &v, &req.group).await?;
        let g = c.slot.groups.get(&req.group).ok_or_else(|| {
            WireError::new(ErrorCode::GroupIdNotFound, format!("no share group {}", req.group))
        })?;
        let members = g
            .members
            .iter()
            .map(|(id, m)| v1::ShareMember {
                member_id: id.clone(),
                client_id: m.client_id.clone(),
                member_epoch: m.epoch,
                assignment: to_tps(&m.assignment),
                acquired: g.held_by(id) as u64,
            })
            .collect();
        let partitions = g
            .partitions
            .iter()
            .map(|((t, p), sp)| v1::SharePartitionState {
                topic: t.clone(),
                partition: *p,
                start_offset: sp.start as i64,
                end_offset: sp.end as i64,
                acquired: sp.acquired() as u64,
                in_flight: sp.in_flight() as u64,
                lag: local_high_watermark(shared, t, *p)
                    .map_or(-1, |hw| (hw - sp.start as i64).max(0)),
            })
            .collect();
        Ok(v1::DescribeShareGroupResponse {
            error_code: 0,
            error_message: String::new(),
            group: req.group.clone(),
            state: if g.members.is_empty() { "empty" } else { "stable" }.to_string(),
            members,
            partitions,
            redeliveries: g.counters.redeliveries,
            archived: g.counters.archived,
            dead_lettered: g.counters.dead_lettered,
        })
    }

    async fn delete(&self, req: v1::DeleteShareGroupRequest) -> Result<(), WireError> {
        let shared = &self.shared;
        shared.serving()?;
        check_group(&req.group)?;
        let v = view(shared);
        let mut c = coord::coordinate(shared, &v, &req.group).await?;
        let g = c.slot.groups.get(&req.group).ok_or_else(|| {
            WireError::new(ErrorCode::GroupIdNotFound, format!("no share group {}", req.group))
        })?;
        if !g.members.is_empty() {
            return Err(WireError::new(
                ErrorCode::GroupNotEmpty,
                format!("share group {} has {} members", req.group, g.members.len()),
            ));
        }
        let tps: Vec<Tp> = g.partitions.keys().cloned().collect();
        c.slot.groups.remove(&req.group);
        persist(shared, &mut c, &req.group, &tps).await?;
        tracing::info!(group = %req.group, "share group deleted");
        Ok(())
    }
}

fn status<T>(r: &Result<T, WireError>) -> (i32, String) {
    match r {
        Ok(_) => (0, String::new()),
        Err(e) => (e.code as i32, e.message.clone()),
    }
}

#[tonic::async_trait]
impl v1::share_server::Share for ShareService {
    async fn find_share_coordinator(
        &self,
        req: Request<v1::FindShareCoordinatorRequest>,
    ) -> Result<Response<v1::FindShareCoordinatorResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Describe, &req.group) {
            Ok(()) => self.find(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::FindShareCoordinatorResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn share_group_heartbeat(
        &self,
        req: Request<v1::ShareGroupHeartbeatRequest>,
    ) -> Result<Response<v1::ShareGroupHeartbeatResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let may = access.group(&self.shared, AclOperation::Read, &req.group).and_then(|()| {
            req.subscribed_topics
                .iter()
                .try_for_each(|t| access.topic(&self.shared, AclOperation::Read, t))
        });
        let r = match may {
            Ok(()) => self.heartbeat(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::ShareGroupHeartbeatResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn share_fetch(
        &self,
        req: Request<v1::ShareFetchRequest>,
    ) -> Result<Response<v1::ShareFetchResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Read, &req.group) {
            Ok(()) => self.fetch(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::ShareFetchResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn share_acknowledge(
        &self,
        req: Request<v1::ShareAcknowledgeRequest>,
    ) -> Result<Response<v1::ShareAcknowledgeResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Read, &req.group) {
            Ok(()) => self.acknowledge(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::ShareAcknowledgeResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn list_share_groups(
        &self,
        req: Request<v1::ListShareGroupsRequest>,
    ) -> Result<Response<v1::ListShareGroupsResponse>, Status> {
        let access = Access::of(&req);
        let all = access.may_cluster(&self.shared, AclOperation::Describe);
        let shared = self.shared.clone();
        let may = move |g: &str| all || access.group(&shared, AclOperation::Describe, g).is_ok();
        let r = self.list(may).await;
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::ListShareGroupsResponse {
            error_code,
            error_message,
            groups: r.unwrap_or_default(),
        }))
    }

    async fn describe_share_group(
        &self,
        req: Request<v1::DescribeShareGroupRequest>,
    ) -> Result<Response<v1::DescribeShareGroupResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Describe, &req.group) {
            Ok(()) => self.describe(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(r.unwrap_or(v1::DescribeShareGroupResponse {
            error_code,
            error_message,
            ..Default::default()
        })))
    }

    async fn delete_share_group(
        &self,
        req: Request<v1::DeleteShareGroupRequest>,
    ) -> Result<Response<v1::DeleteShareGroupResponse>, Status> {
        let access = Access::of(&req);
        let req = req.into_inner();
        let r = match access.group(&self.shared, AclOperation::Delete, &req.group) {
            Ok(()) => self.delete(req).await,
            Err(e) => Err(e),
        };
        let (error_code, error_message) = status(&r);
        Ok(Response::new(v1::DeleteShareGroupResponse { error_code, error_message }))
    }
}
