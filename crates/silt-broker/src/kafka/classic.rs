//! The classic group protocol over the Kafka listener: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup and DescribeGroups, served by `groups::classic` on the group's coordinator.
//! JoinGroup and SyncGroup wait (on this connection) for the rebalance, as Kafka's do.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use silt_proto::v1;
use silt_proto::v1::groups_server::Groups;
use silt_raft::AclOperation;

use super::errors::kafka_code_i32;
use super::{Connection, Kafka, str_bytes, text};
use crate::groups::classic::{ClassicError, Join};

/// Longest a JoinGroup or SyncGroup waits beyond the group's rebalance timeout.
const WAIT_SLACK: Duration = Duration::from_secs(5);
/// How often a waiting request re-checks deadlines when nothing else wakes it.
const WAIT_TICK: Duration = Duration::from_millis(100);

pub(crate) fn classic_code(e: &ClassicError) -> i16 {
    match e {
        ClassicError::UnknownMember(_) => K::UnknownMemberId.code(),
        ClassicError::IllegalGeneration { .. } => K::IllegalGeneration.code(),
        ClassicError::RebalanceInProgress => K::RebalanceInProgress.code(),
        ClassicError::InconsistentProtocol => K::InconsistentGroupProtocol.code(),
        ClassicError::MemberIdRequired(_) => K::MemberIdRequired.code(),
        ClassicError::GroupFull(_) => K::GroupMaxSizeReached.code(),
        ClassicError::FencedInstance(_) => K::FencedInstanceId.code(),
    }
}

/// The principal may read `group` and this broker coordinates it (or the Kafka error saying why
/// not).
async fn coordinating(k: &Kafka, group: &GroupId) -> Result<(), i16> {
    if let Err(e) = super::access().group(&k.shared, AclOperation::Read, &group.0) {
        return Err(super::errors::kafka_code(e.code));
    }
    let find = v1::FindCoordinatorRequest { group: group.0.to_string() };
    match k.groups.find_coordinator(super::request(find)).await {
        Ok(r) => {
            let r = r.into_inner();
            if r.error_code != 0 {
                Err(kafka_code_i32(r.error_code))
            } else if r.node_id != k.shared.config.node_id {
                Err(K::NotCoordinator.code())
            } else {
                Ok(())
            }
        }
        Err(_) => Err(K::CoordinatorNotAvailable.code()),
    }
}

/// Whether Silt's own (KIP-848) protocol has members in `group`: then classic joins are refused.
async fn consumer_members(k: &Kafka, group: &GroupId) -> bool {
    let req = v1::DescribeGroupRequest { group: group.0.to_string() };
    match k.groups.describe_group(super::request(req)).await {
        Ok(r) => !r.into_inner().members.is_empty(),
        Err(_) => false,
    }
}

/// Waits until `ready` answers (re-checked whenever a classic group changes, and every
/// [`WAIT_TICK`] for deadlines), at most `limit`.
async fn wait_for<T>(
    k: &Kafka,
    limit: Duration,
    mut ready: impl FnMut(u64) -> Option<T>,
) -> Option<T> {
    let classic = &k.shared.coordinator.classic;
    let mut changed = classic.subscribe();
    let mut stopping = k.shared.stopping.subscribe();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(out) = ready(k.shared.coordinator.now_ms()) {
            return Some(out);
        }
        if Instant::now() >= deadline || *stopping.borrow() {
            return None;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = stopping.changed() => {}
            _ = tokio::time::sleep(WAIT_TICK) => {}
        }
    }
}

pub(crate) async fn join_group(
    k: &Kafka,
    conn: &Connection,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let failed = |code: i16, member: StrBytes| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(member)
            .with_protocol_name(Some(StrBytes::default()))
    };
    if let Err(code) = coordinating(k, &req.group_id).await {
        return failed(code, req.member_id.clone());
    }
    let c = &k.shared.config;
    let session = u64::try_from(req.session_timeout_ms).unwrap_or(0);
    if !(c.group_min_session_timeout_ms..=c.group_max_session_timeout_ms).contains(&session) {
        return failed(K::InvalidSessionTimeout.code(), req.member_id.clone());
    }
    if consumer_members(k, &req.group_id).await {
        return failed(K::InconsistentGroupProtocol.code(), req.member_id.clone());
    }
    let rebalance = if version >= 1 {
        u64::try_from(req.rebalance_timeout_ms).unwrap_or(session)
    } else {
        session
    };
    let join = Join {
        member_id: text(&req.member_id),
        instance_id: req.group_instance_id.as_ref().map(text),
        client_id: conn.client_id.clone(),
        client_host: conn.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance.min(c.group_max_session_timeout_ms.max(300_000)),
        protocol_type: text(&req.protocol_type),
        protocols: req.protocols.iter().map(|p| (text(&p.name), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let group = req.group_id.0.to_string();
    let classic = &k.shared.coordinator.classic;
    let node = k.shared.config.node_id;
    let now = k.shared.coordinator.now_ms();
    let new_id = || format!("{}-{}", conn.client_id, k.shared.coordinator.new_member_id(node));
    let member = match classic.with(&group, now, |g| g.join(join, now, new_id)) {
        Ok(id) => id,
        Err(ClassicError::MemberIdRequired(id)) => {
            return failed(K::MemberIdRequired.code(), str_bytes(id));
        }
        Err(e) => return failed(classic_code(&e), req.member_id.clone()),
    };
    let limit = Duration::from_millis(rebalance) + WAIT_SLACK;
    let joined = wait_for(k, limit, |now| {
        classic.read(&group, now, |g| match g {
            Some(g) => g.joined(&member),
            None => Some(Err(ClassicError::UnknownMember(member.clone()))),
        })
    })
    .await;
    match joined {
        Some(Ok(j)) => {
            let mut r = JoinGroupResponse::default()
                .with_generation_id(j.generation)
                .with_protocol_name(Some(str_bytes(j.protocol)))
                .with_leader(str_bytes(j.leader))
                .with_member_id(str_bytes(j.member_id))
                .with_members(
                    j.members
                        .into_iter()
                        .map(|(id, instance, metadata)| {
                            JoinGroupResponseMember::default()
                                .with_member_id(str_bytes(id))
                                .with_group_instance_id(instance.map(str_bytes))
                                .with_metadata(metadata)
                        })
                        .collect(),
                );
            if version >= 7 {
                r.protocol_type = Some(str_bytes(j.protocol_type));
            }
            r
        }
        Some(Err(e)) => failed(classic_code(&e), str_bytes(member)),
        None => failed(K::RebalanceInProgress.code(), str_bytes(member)),
    }
}

pub(crate) async fn sync_group(k: &Kafka, req: SyncGroupRequest) -> SyncGroupResponse {
    let failed = |code: i16| SyncGroupResponse::default().with_error_code(code);
    if let Err(code) = coordinating(k, &req.group_id).await {
        return failed(code);
    }
    let group = req.group_id.0.to_string();
    let member = text(&req.member_id);
    let classic = &k.shared.coordinator.classic;
    let now = k.shared.coordinator.now_ms();
    let assignment: Vec<(String, Bytes)> =
        req.assignments.iter().map(|a| (text(&a.member_id), a.assignment.clone())).collect();
    let synced = classic.with(&group, now, |g| {
        g.sync(&member, req.generation_id, assignment, now)?;
        let timeout = g.members.get(&member).map_or(0, |m| m.rebalance_timeout_ms);
        Ok::<_, ClassicError>((g.protocol_type.clone(), g.protocol.clone(), timeout))
    });
    let (protocol_type, protocol, timeout) = match synced {
        Ok(s) => s,
        Err(e) => return failed(classic_code(&e)),
    };
    let limit = Duration::from_millis(timeout) + WAIT_SLACK;
    let assigned = wait_for(k, limit, |now| {
        classic.read(&group, now, |g| match g {
            Some(g) => g.synced(&member, req.generation_id),
            None => Some(Err(ClassicError::UnknownMember(member.clone()))),
        })
    })
    .await;
    match assigned {
        Some(Ok(bytes)) => SyncGroupResponse::default()
            .with_protocol_type(Some(str_bytes(protocol_type)))
            .with_protocol_name(protocol.map(str_bytes))
            .with_assignment(bytes),
        Some(Err(e)) => failed(classic_code(&e)),
        None => failed(K::RebalanceInProgress.code()),
    }
}

pub(crate) async fn heartbeat(k: &Kafka, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Err(code) = coordinating(k, &req.group_id).await {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let classic = &k.shared.coordinator.classic;
    let now = k.shared.coordinator.now_ms();
    let member = text(&req.member_id);
    let r = classic.read(&req.group_id.0, now, |g| g.is_some());
    let code = if r {
        match classic.with(&req.group_id.0, now, |g| g.heartbeat(&member, req.generation_id, now)) {
            Ok(()) => 0,
            Err(e) => classic_code(&e),
        }
    } else {
        K::UnknownMemberId.code()
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub(crate) async fn leave_group(
    k: &Kafka,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if let Err(code) = coordinating(k, &req.group_id).await {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let classic = &k.shared.coordinator.classic;
    let now = k.shared.coordinator.now_ms();
    let ids: Vec<(StrBytes, Option<StrBytes>)> = if version >= 3 {
        req.members.iter().map(|m| (m.member_id.clone(), m.group_instance_id.clone())).collect()
    } else {
        vec![(req.member_id.clone(), None)]
    };
    let exists = classic.read(&req.group_id.0, now, |g| g.is_some());
    let members: Vec<MemberResponse> = ids
        .into_iter()
        .map(|(id, instance)| {
            let member = text(&id);
            let instance_only = member.is_empty() && instance.is_some();
            let code = if !exists {
                K::UnknownMemberId.code()
            } else {
                let left = classic.with(&req.group_id.0, now, |g| match &instance {
                    Some(inst) if instance_only => g.leave_instance(inst, now),
                    _ => g.leave(&member, now),
                });
                match left {
                    Ok(()) => 0,
                    Err(e) => classic_code(&e),
                }
            };
            MemberResponse::default()
                .with_member_id(id)
                .with_group_instance_id(instance)
                .with_error_code(code)
        })
        .collect();
    if version >= 3 {
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(members[0].error_code)
    }
}

/// `DescribeGroups`: classic groups with their members' metadata and assignments; Silt's own
/// (consumer-type) groups with their members; unknown groups as `Dead`.
pub(crate) async fn describe_groups(
    k: &Kafka,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let classic = &k.shared.coordinator.classic;
    let mut groups = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        let answer = DescribedGroup::default().with_group_id(id.clone());
        if let Err(code) = coordinating(k, &id).await {
            groups.push(answer.with_error_code(code));
            continue;
        }
        let now = k.shared.coordinator.now_ms();
        let described = classic.read(&id.0, now, |g| {
            g.map(|g| {
                let protocol = g.protocol.clone().unwrap_or_default();
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(str_bytes(m.id.clone()))
                            .with_group_instance_id(m.instance_id.clone().map(str_bytes))
                            .with_client_id(str_bytes(m.client_id.clone()))
                            .with_client_host(str_bytes(m.client_host.clone()))
                            .with_member_metadata(m.metadata(&protocol))
                            .with_member_assignment(m.assignment.clone())
                    })
                    .collect();
                answer
                    .clone()
                    .with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_protocol_type(str_bytes(g.protocol_type.clone()))
                    .with_protocol_data(str_bytes(protocol))
                    .with_members(members)
            })
        });
        if let Some(d) = described {
            groups.push(d);
            continue;
        }
        let req = v1::DescribeGroupRequest { group: id.0.to_string() };
        let silt = k.groups.describe_group(super::request(req)).await.map(|r| r.into_inner());
        groups.push(match silt {
            Ok(d) if d.error_code == 0 => answer
                .with_group_state(StrBytes::from_static_str(super::groups::kafka_state(&d.state)))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocol_data(str_bytes(d.assignor))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(m.instance_id.map(str_bytes))
                                .with_client_id(str_bytes(m.client_id))
                        })
                        .collect(),
                ),
            _ => answer.with_group_state(StrBytes::from_static_str("Dead")),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
