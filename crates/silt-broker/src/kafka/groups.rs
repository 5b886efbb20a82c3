//! Consumer groups over the Kafka listener, answered by the `Groups` service: FindCoordinator,
//! OffsetCommit, OffsetFetch, ListGroups, DeleteGroups and ConsumerGroupHeartbeat (KIP-848),
//! which maps one to one onto Silt's server-side assignment, so a Kafka member and a gRPC member
//! can share a group. The classic protocol (JoinGroup/SyncGroup) is not built yet.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use silt_proto::v1::groups_server::Groups;
use silt_proto::v1::{self, ErrorCode};

use super::errors::{kafka_code, kafka_code_i32};
use super::{Connection, Kafka, str_bytes, text};

/// Kafka's FindCoordinator key types.
const GROUP_KEY: i8 = 0;

/// The `(error_code, message)` of a Silt response, as Kafka's code.
fn code_of(error_code: i32) -> i16 {
    kafka_code_i32(error_code)
}

/// Runs a `Groups` call; a gRPC-level failure (none is expected in process) is an unknown
/// server error.
macro_rules! call {
    ($k:expr, $method:ident, $req:expr) => {
        match $k.groups.$method(super::request($req)).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                tracing::warn!(%status, "Kafka listener: the Groups service failed");
                Err(kafka_code(ErrorCode::UnknownServerError))
            }
        }
    };
}

/// `FindCoordinator`: the broker leading the group's `__consumer_offsets` partition, at its
/// Kafka address. Transaction coordinators wait for transactions (issue 18).
pub(crate) async fn find_coordinator(
    k: &Kafka,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> =
        if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = if req.key_type != GROUP_KEY {
            Err((
                K::InvalidRequest.code(),
                "only group coordinators (key type 0) are served".into(),
            ))
        } else {
            locate(k, &key).await
        };
        coordinators.push(match found {
            Ok((id, host, port)) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(id))
                .with_host(host)
                .with_port(port),
            Err((code, why)) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1)
                .with_error_code(code)
                .with_error_message(Some(str_bytes(why))),
        });
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let mut r = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        r.error_message = c.error_message;
    }
    r
}

async fn locate(k: &Kafka, group: &StrBytes) -> Result<(i32, StrBytes, i32), (i16, String)> {
    let r = call!(k, find_coordinator, v1::FindCoordinatorRequest { group: text(group) })
        .map_err(|code| (code, "the coordinator lookup failed".to_string()))?;
    if r.error_code != 0 {
        return Err((code_of(r.error_code), r.error_message));
    }
    let image = k.shared.cluster.image();
    let not_available = || {
        (K::CoordinatorNotAvailable.code(), format!("broker {} has no Kafka listener", r.node_id))
    };
    let b = image.brokers.get(&r.node_id).ok_or_else(not_available)?;
    let (host, port) =
        super::metadata::kafka_endpoint(&b.kafka_address).ok_or_else(not_available)?;
    let id = i32::try_from(r.node_id).map_err(|_| not_available())?;
    Ok((id, host, port))
}

/// `OffsetCommit`. Silt commits a request whole or not at all, so a refusal is every partition's
/// answer. A commit with no member (`member_id` empty, generation -1: a consumer using `assign`)
/// is accepted while the group has no members, as in Kafka.
pub(crate) async fn offset_commit(k: &Kafka, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    let mut early: BTreeMap<(usize, i32), i16> = BTreeMap::new();
    for (ti, t) in req.topics.iter().enumerate() {
        for p in &t.partitions {
            match u32::try_from(p.partition_index) {
                Ok(partition) => offsets.push(v1::OffsetCommit {
                    topic: t.name.0.to_string(),
                    partition,
                    offset: p.committed_offset,
                    metadata: p.committed_metadata.as_ref().map(text).unwrap_or_default(),
                }),
                Err(_) => {
                    early.insert((ti, p.partition_index), K::UnknownTopicOrPartition.code());
                }
            }
        }
    }
    let mut member_id = text(&req.member_id);
    let mut member_epoch = u32::try_from(req.generation_id_or_member_epoch).unwrap_or(0);
    // A classic group checks member and generation itself; its offsets are then committed as
    // a member-less commit (Silt's own protocol has no members in a classic group).
    let now = k.shared.coordinator.now_ms();
    let classic = k.shared.coordinator.classic.read(&req.group_id.0, now, |g| {
        g.map(|g| g.check_commit(&member_id, req.generation_id_or_member_epoch))
    });
    let code = if !early.is_empty() {
        // Kafka answers per partition; Silt refuses the whole commit when one is bad.
        K::UnknownTopicOrPartition.code()
    } else if let Some(Err(e)) = &classic {
        super::classic::classic_code(e)
    } else {
        if classic.is_some() {
            (member_id, member_epoch) = (String::new(), 0);
        }
        let commit = v1::CommitOffsetsRequest {
            group: req.group_id.0.to_string(),
            member_epoch,
            member_id: member_id.clone(),
            offsets,
        };
        match call!(k, commit_offsets, commit) {
            Ok(r) if r.error_code == ErrorCode::GroupNotEmpty as i32 && member_id.is_empty() => {
                // A member-less commit into a group with members: Kafka's answer.
                K::UnknownMemberId.code()
            }
            Ok(r) => code_of(r.error_code),
            Err(code) => code,
        }
    };
    let topics = req
        .topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        let code = early.get(&(ti, p.partition_index)).copied().unwrap_or(code);
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets: `topics` `None` asks for every committed partition.
async fn fetch_group(
    k: &Kafka,
    group: &GroupId,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<(TopicName, Vec<(i32, i64, String)>)>, i16> {
    let partitions = topics
        .iter()
        .flatten()
        .map(|(name, parts)| v1::TopicPartitions {
            topic: name.0.to_string(),
            partitions: parts.iter().filter_map(|p| u32::try_from(*p).ok()).collect(),
        })
        .collect();
    let r = call!(
        k,
        fetch_offsets,
        v1::FetchOffsetsRequest { group: group.0.to_string(), partitions, require_stable }
    )?;
    if r.error_code != 0 {
        return Err(code_of(r.error_code));
    }
    let mut by_topic: BTreeMap<String, HashMap<i32, (i64, String)>> = BTreeMap::new();
    for o in r.offsets {
        by_topic.entry(o.topic).or_default().insert(o.partition as i32, (o.offset, o.metadata));
    }
    Ok(match topics {
        // In the order asked; partitions Silt cannot hold (negative) have no offset.
        Some(list) => list
            .into_iter()
            .map(|(name, parts)| {
                let have = by_topic.get(&name.0.to_string());
                let parts = parts
                    .into_iter()
                    .map(|p| {
                        let (offset, meta) =
                            have.and_then(|h| h.get(&p)).cloned().unwrap_or((-1, String::new()));
                        (p, offset, meta)
                    })
                    .collect();
                (name, parts)
            })
            .collect(),
        None => by_topic
            .into_iter()
            .map(|(name, parts)| {
                let mut parts: Vec<_> =
                    parts.into_iter().map(|(p, (offset, meta))| (p, offset, meta)).collect();
                parts.sort_unstable_by_key(|p| p.0);
                (TopicName(str_bytes(name)), parts)
            })
            .collect(),
    })
}

/// OffsetFetch's topics and partitions: one pair of types up to v7, another from v8, of the
/// same fields.
macro_rules! offset_topics {
    ($topic:ty, $partition:ty, $found:expr) => {
        $found
            .into_iter()
            .map(|(name, parts)| {
                <$topic>::default().with_name(name).with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, offset, meta)| {
                            <$partition>::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(-1)
                                .with_metadata(Some(str_bytes(meta)))
                        })
                        .collect(),
                )
            })
            .collect()
    };
}

/// `OffsetFetch`: one group (v1-v7) or several (v8+). No transactions, so `require_stable`
/// needs no wait. The member id and epoch of v9 are not checked.
pub(crate) async fn offset_fetch(
    k: &Kafka,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version < 8 {
        let topics = req.topics.map(|list| {
            list.into_iter().map(|t| (t.name, t.partition_indexes)).collect::<Vec<_>>()
        });
        return match fetch_group(k, &req.group_id, topics, req.require_stable).await {
            Ok(found) => OffsetFetchResponse::default().with_topics(offset_topics!(
                OffsetFetchResponseTopic,
                OffsetFetchResponsePartition,
                found
            )),
            Err(code) => OffsetFetchResponse::default().with_error_code(code),
        };
    }
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let topics =
            g.topics.map(|list| list.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
        let answer = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        groups.push(match fetch_group(k, &g.group_id, topics, req.require_stable).await {
            Ok(found) => answer.with_topics(offset_topics!(
                OffsetFetchResponseTopics,
                OffsetFetchResponsePartitions,
                found
            )),
            Err(code) => answer.with_error_code(code),
        });
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// Silt's state names as Kafka's consumer-group states.
pub(super) fn kafka_state(state: &str) -> &'static str {
    match state {
        "empty" => "Empty",
        "stable" => "Stable",
        "reconciling" => "Reconciling",
        _ => "Dead",
    }
}

/// `ListGroups`: the groups this broker coordinates (as in Kafka; clients ask every broker).
pub(crate) async fn list_groups(k: &Kafka, req: ListGroupsRequest) -> ListGroupsResponse {
    let r = match call!(k, list_groups, v1::ListGroupsRequest {}) {
        Ok(r) if r.error_code == 0 => r,
        Ok(r) => return ListGroupsResponse::default().with_error_code(code_of(r.error_code)),
        Err(code) => return ListGroupsResponse::default().with_error_code(code),
    };
    let wanted = |state: &str| {
        req.states_filter.is_empty()
            || req.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
    };
    let consumer = req.types_filter.is_empty()
        || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case("consumer"));
    let classic_type = req.types_filter.is_empty()
        || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case("classic"));
    let now = k.shared.coordinator.now_ms();
    let classic = k.shared.coordinator.classic.sweep(now, |_| true);
    let listed = |group: String, state: &'static str, kind: &'static str| {
        ListedGroup::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_group_state(StrBytes::from_static_str(state))
            .with_group_type(StrBytes::from_static_str(kind))
    };
    let mut groups: Vec<ListedGroup> = r
        .groups
        .into_iter()
        .map(|g| (g.group, kafka_state(&g.state)))
        .filter(|(group, state)| {
            consumer && wanted(state) && !classic.iter().any(|c| &c.0 == group)
        })
        .map(|(group, state)| listed(group, state, "consumer"))
        .collect();
    groups.extend(
        classic
            .into_iter()
            .filter(|(_, state, _)| classic_type && wanted(state.name()))
            .map(|(group, state, _)| listed(group, state.name(), "classic")),
    );
    ListGroupsResponse::default().with_groups(groups)
}

/// `DeleteGroups`: each group must have no members.
pub(crate) async fn delete_groups(k: &Kafka, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let code = match call!(k, delete_group, v1::DeleteGroupRequest { group: g.0.to_string() }) {
            Ok(r) => code_of(r.error_code),
            Err(code) => code,
        };
        results.push(DeletableGroupResult::default().with_group_id(g).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// What a member last sent on this connection: KIP-848 heartbeats leave unchanged fields null.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberState {
    topics: Vec<String>,
    regex: Option<String>,
    owned: Vec<v1::TopicPartitions>,
}

/// `ConsumerGroupHeartbeat` (KIP-848, v1: members name themselves), answered by Silt's
/// own group heartbeat. Member epoch -1 leaves the group, -2 leaves as a static member.
pub(crate) async fn consumer_group_heartbeat(
    k: &Kafka,
    conn: &mut Connection,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let failed = |code: i16, why: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(why)))
            .with_member_epoch(req.member_epoch)
    };
    let group = req.group_id.0.to_string();
    let member_id = text(&req.member_id);
    let key = (group.clone(), member_id.clone());
    if req.member_epoch < 0 {
        conn.members.remove(&key);
        let leave = v1::LeaveGroupRequest {
            group,
            member_id: member_id.clone(),
            instance_id: req.instance_id.as_ref().map(text),
        };
        return match call!(k, leave_group, leave) {
            Ok(r) if r.error_code == 0 => ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(req.member_id.clone()))
                .with_member_epoch(req.member_epoch),
            Ok(r) => failed(code_of(r.error_code), r.error_message),
            Err(code) => failed(code, "leave failed".into()),
        };
    }
    // Unchanged fields come from this connection's last heartbeat of the member, else from the
    // group's record of it (a member that reconnected).
    let mut last = if req.member_epoch == 0 {
        MemberState::default()
    } else {
        match conn.members.get(&key) {
            Some(s) => s.clone(),
            None => recorded(k, &group, &member_id).await,
        }
    };
    if let Some(names) = &req.subscribed_topic_names {
        last.topics = names.iter().map(|n| n.0.to_string()).collect();
        last.regex = None;
    }
    if let Some(r) = &req.subscribed_topic_regex {
        last.regex = Some(text(r));
    }
    if let Some(owned) = &req.topic_partitions {
        let names = super::data::names_by_id(k);
        last.owned = owned
            .iter()
            .filter_map(|t| {
                Some(v1::TopicPartitions {
                    topic: names.get(&t.topic_id)?.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .filter_map(|p| u32::try_from(*p).ok())
                        .collect(),
                })
            })
            .collect();
    }
    let hb = v1::GroupHeartbeatRequest {
        group: group.clone(),
        member_id: member_id.clone(),
        member_epoch: u32::try_from(req.member_epoch).unwrap_or(0),
        instance_id: req.instance_id.as_ref().map(text),
        client_id: conn.client_id.clone(),
        subscribed_topics: last.topics.clone(),
        subscribed_topic_regex: last.regex.clone(),
        // Kafka's server-side assignors: `uniform` (balanced and sticky) is Silt's `sticky`.
        assignor: match req.server_assignor.as_ref().map(text).as_deref() {
            None => String::new(),
            Some("uniform") => "sticky".to_string(),
            Some(other) => other.to_string(),
        },
        session_timeout_ms: 0,
        owned: last.owned.clone(),
        client_member_id: true,
    };
    let r = match call!(k, group_heartbeat, hb) {
        Ok(r) if r.error_code == 0 => r,
        Ok(r) => {
            conn.members.remove(&key);
            return failed(code_of(r.error_code), r.error_message);
        }
        Err(code) => return failed(code, "heartbeat failed".into()),
    };
    conn.members.remove(&key);
    conn.members.insert((group, r.member_id.clone()), last);
    let image = k.shared.cluster.image();
    let assignment = r
        .assignment
        .iter()
        .filter_map(|t| {
            let id = super::metadata::topic_uuid(image.topics.get(&t.topic)?);
            Some(
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_partitions(t.partitions.iter().map(|p| *p as i32).collect()),
            )
        })
        .collect();
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(str_bytes(r.member_id)))
        .with_member_epoch(i32::try_from(r.member_epoch).unwrap_or(i32::MAX))
        .with_heartbeat_interval_ms(i32::try_from(r.heartbeat_interval_ms).unwrap_or(i32::MAX))
        .with_assignment(Some(Assignment::default().with_topic_partitions(assignment)))
}

/// The group's record of a member: its subscription and assignment (what it owns, as far as the
/// coordinator knows).
async fn recorded(k: &Kafka, group: &str, member_id: &str) -> MemberState {
    let Ok(r) = call!(k, describe_group, v1::DescribeGroupRequest { group: group.to_string() })
    else {
        return MemberState::default();
    };
    r.members
        .into_iter()
        .find(|m| m.member_id == member_id)
        .map(|m| MemberState {
            topics: m.subscribed_topics,
            regex: m.subscribed_topic_regex,
            owned: m.assignment,
        })
        .unwrap_or_default()
}
