//! Share groups over the Kafka listener (KIP-932 v1): ShareGroupHeartbeat, ShareFetch and
//! ShareAcknowledge, answered by Silt's share coordinator (`share::forward`: any broker takes
//! them, the group's coordinator decides). A Kafka share consumer's share sessions are kept per
//! connection and member (the partitions it fetches from this broker); its records come back as
//! record batches of the acquired records with their offsets, and acquired ranges with delivery
//! counts. Acknowledge type 0 (a gap: no record at that offset) is accepted and ignored.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
};
use silt_core::batch::{BatchBuilder, Header, Record};
use silt_proto::v1;
use silt_raft::AclOperation;

use super::errors::{kafka_code, kafka_code_i32};
use super::{Connection, Kafka, message, str_bytes, text};
use crate::error::WireError;

/// Share sessions a connection keeps (beyond this, the oldest are forgotten).
pub(crate) const MAX_SESSIONS: usize = 64;

/// A share session: the partitions one member fetches through this connection.
pub(crate) type Sessions = BTreeMap<(String, String), BTreeSet<(String, u32)>>;

fn ack_batches(
    topic: &str,
    partition: u32,
    first: i64,
    last: i64,
    types: &[i8],
) -> Result<Vec<v1::AcknowledgementBatch>, String> {
    if first < 0 || last < first {
        return Err(format!("acknowledgement range {first}..={last} is empty or negative"));
    }
    let span = (last - first + 1) as usize;
    if types.len() != 1 && types.len() != span {
        return Err(format!("{} acknowledge types for {span} offsets", types.len()));
    }
    let mut out: Vec<v1::AcknowledgementBatch> = Vec::new();
    for i in 0..span {
        let t = i32::from(if types.len() == 1 { types[0] } else { types[i] });
        if t == 0 {
            continue; // a gap: no record at that offset
        }
        let offset = first + i as i64;
        match out.last_mut() {
            Some(b) if b.r#type == t && b.last_offset + 1 == offset => b.last_offset = offset,
            _ => out.push(v1::AcknowledgementBatch {
                topic: topic.to_string(),
                partition,
                first_offset: offset,
                last_offset: offset,
                r#type: t,
            }),
        }
    }
    Ok(out)
}

/// A request's partitions with their acknowledgement batches (first, last, types), by topic id.
type Named = Vec<(uuid::Uuid, i32, Vec<(i64, i64, Vec<i8>)>)>;

/// The [`Named`] of a ShareFetch's or a ShareAcknowledge's topics (types of the same shape).
macro_rules! named {
    ($topics:expr) => {
        $topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    let batches = p
                        .acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                        .collect();
                    (t.topic_id, p.partition_index, batches)
                })
            })
            .collect()
    };
}

/// The partitions a request names (topic id, name, partition) and its acknowledgements as
/// Silt's batches; a Kafka error code and message for an unknown topic id, a negative partition
/// or a malformed batch.
#[allow(clippy::type_complexity)]
fn resolve(
    names: &std::collections::HashMap<uuid::Uuid, String>,
    named: Named,
) -> Result<(Vec<(uuid::Uuid, String, u32)>, Vec<v1::AcknowledgementBatch>), (i16, String)> {
    let mut out = Vec::new();
    let mut acks = Vec::new();
    for (id, index, batches) in named {
        let name = names
            .get(&id)
            .ok_or_else(|| (K::UnknownTopicId.code(), format!("unknown topic id {id}")))?;
        let partition = u32::try_from(index)
            .map_err(|_| (K::InvalidRequest.code(), "negative partition".to_string()))?;
        for (first, last, types) in batches {
            acks.extend(
                ack_batches(name, partition, first, last, &types)
                    .map_err(|why| (K::InvalidRequest.code(), why))?,
            );
        }
        out.push((id, name.clone(), partition));
    }
    Ok((out, acks))
}

/// The outcome of each partition's acknowledgements, as Kafka's code and message.
fn ack_codes(results: &[v1::PartitionAckResult]) -> BTreeMap<(String, u32), (i16, String)> {
    results
        .iter()
        .map(|a| {
            (
                (a.topic.clone(), a.partition),
                (kafka_code_i32(a.error_code), a.error_message.clone()),
            )
        })
        .collect()
}

/// Record batches holding `records` (acquired, of one partition, in offset order): one batch per
/// run of consecutive offsets, each stamped with its first offset.
fn batches(records: &[&v1::AcquiredRecord]) -> Bytes {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let mut b = BatchBuilder::new();
        let first = records[i].record.as_ref().map_or(0, |r| r.offset);
        let mut next = first;
        while i < records.len() {
            let Some(r) = records[i].record.as_ref() else {
                i += 1;
                continue;
            };
            if r.offset != next {
                break;
            }
            b.push(&Record {
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|h| Header { key: h.key.clone(), value: h.value.clone() })
                    .collect(),
                timestamp_ms: r.timestamp_ms,
            });
            next += 1;
            i += 1;
        }
        if let Some(mut batch) = b.build_vec() {
            silt_core::batch::patch_base_offset_and_epoch(
                &mut batch,
                silt_core::Offset(first as u64),
                silt_core::LeaderEpoch(0),
            );
            out.extend_from_slice(&batch);
        }
    }
    Bytes::from(out)
}

/// Acquired ranges (consecutive offsets with one delivery count).
fn acquired_ranges(records: &[&v1::AcquiredRecord]) -> Vec<AcquiredRecords> {
    let mut out: Vec<AcquiredRecords> = Vec::new();
    for a in records {
        let Some(r) = &a.record else { continue };
        let count = i16::try_from(a.delivery_count).unwrap_or(i16::MAX);
        match out.last_mut() {
            Some(l) if l.last_offset + 1 == r.offset && l.delivery_count == count => {
                l.last_offset = r.offset;
            }
            _ => out.push(
                AcquiredRecords::default()
                    .with_first_offset(r.offset)
                    .with_last_offset(r.offset)
                    .with_delivery_count(count),
            ),
        }
    }
    out
}

fn authorized(k: &Kafka, group: &str, topics: &[String]) -> Result<(), WireError> {
    let access = super::access();
    access.group(&k.shared, AclOperation::Read, group)?;
    for t in topics {
        access.topic(&k.shared, AclOperation::Read, t)?;
    }
    Ok(())
}

pub(crate) async fn heartbeat(
    k: &Kafka,
    conn: &mut Connection,
    req: ShareGroupHeartbeatRequest,
) -> ShareGroupHeartbeatResponse {
    let failed = |e: WireError| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(kafka_code(e.code))
            .with_error_message(message(e.message))
            .with_member_epoch(req.member_epoch)
    };
    let group = req.group_id.0.to_string();
    let topics: Vec<String> = req
        .subscribed_topic_names
        .as_ref()
        .map(|n| n.iter().map(|t| t.0.to_string()).collect())
        .unwrap_or_default();
    // A null subscription means "unchanged": the last one this connection sent for the member.
    let key = (group.clone(), text(&req.member_id));
    let topics = if req.subscribed_topic_names.is_none() {
        conn.share_topics.get(&key).cloned().unwrap_or_default()
    } else {
        topics
    };
    if let Err(e) = authorized(k, &group, &topics) {
        return failed(e);
    }
    let hb = v1::ShareGroupHeartbeatRequest {
        group: group.clone(),
        member_id: key.1.clone(),
        member_epoch: req.member_epoch,
        client_id: conn.client_id.clone(),
        subscribed_topics: topics.clone(),
        offset_reset: v1::ShareOffsetReset::Latest as i32,
    };
    let r = match crate::share::forward::heartbeat(&k.shared, hb).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    if req.member_epoch < 0 {
        conn.share_topics.remove(&key);
        conn.share_sessions.remove(&key);
        return ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(req.member_id.clone()))
            .with_member_epoch(req.member_epoch);
    }
    if conn.share_topics.len() >= MAX_SESSIONS {
        conn.share_topics.clear();
    }
    conn.share_topics.insert(key, topics);
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
    ShareGroupHeartbeatResponse::default()
        .with_member_id(Some(str_bytes(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(i32::try_from(r.heartbeat_interval_ms).unwrap_or(i32::MAX))
        .with_assignment(Some(Assignment::default().with_topic_partitions(assignment)))
}

pub(crate) async fn fetch(
    k: &Kafka,
    conn: &mut Connection,
    req: ShareFetchRequest,
) -> ShareFetchResponse {
    let failed = |code: i16, why: String| {
        ShareFetchResponse::default().with_error_code(code).with_error_message(message(why))
    };
    let group = req.group_id.as_ref().map(|g| g.0.to_string()).unwrap_or_default();
    let member = req.member_id.as_ref().map(text).unwrap_or_default();
    let names = super::data::names_by_id(k);
    let key = (group.clone(), member.clone());
    // The share session: epoch 0 starts one with the request's partitions, later epochs add
    // theirs and drop the forgotten ones, -1 ends it (acknowledgements only).
    let mut session = if req.share_session_epoch == 0 {
        BTreeSet::new()
    } else {
        conn.share_sessions.get(&key).cloned().unwrap_or_default()
    };
    let parts: Named = named!(req.topics);
    let (named, acks) = match resolve(&names, parts) {
        Ok(r) => r,
        Err((code, why)) => return failed(code, why),
    };
    session.extend(named.iter().map(|(_, t, p)| (t.clone(), *p)));
    for f in &req.forgotten_topics_data {
        if let Some(name) = names.get(&f.topic_id) {
            for p in &f.partitions {
                session.remove(&(name.clone(), *p as u32));
            }
        }
    }
    let topics: Vec<String> = session.iter().map(|(t, _)| t.clone()).collect();
    if let Err(e) = authorized(k, &group, &topics) {
        return failed(kafka_code(e.code), e.message);
    }
    let closing = req.share_session_epoch == -1;
    if closing {
        conn.share_sessions.remove(&key);
    } else {
        if conn.share_sessions.len() >= MAX_SESSIONS {
            conn.share_sessions.clear();
        }
        conn.share_sessions.insert(key, session.clone());
    }
    let mut partitions: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (t, p) in &session {
        partitions.entry(t.clone()).or_default().push(*p);
    }
    let request = v1::ShareFetchRequest {
        group,
        member_id: member,
        member_epoch: 0,
        acknowledgements: acks,
        // Closing the session: acknowledge only.
        max_records: u32::try_from(req.max_records.max(0)).unwrap_or(0),
        max_wait_ms: u32::try_from(req.max_wait_ms.max(0)).unwrap_or(0),
        max_bytes: u32::try_from(req.max_bytes.max(0)).unwrap_or(0),
        partitions: partitions
            .into_iter()
            .map(|(topic, partitions)| v1::TopicPartitions { topic, partitions })
            .collect(),
    };
    let r = if closing {
        // Ending the session: acknowledge only, hand nothing out.
        let ack = v1::ShareAcknowledgeRequest {
            group: request.group,
            member_id: request.member_id,
            member_epoch: 0,
            acknowledgements: request.acknowledgements,
        };
        crate::share::forward::acknowledge(&k.shared, ack).await.map(|a| v1::ShareFetchResponse {
            acknowledgements: a.acknowledgements,
            ..Default::default()
        })
    } else {
        crate::share::forward::fetch(&k.shared, request).await
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => return failed(kafka_code(e.code), e.message),
    };
    // One answer per partition named or holding records.
    let image = k.shared.cluster.image();
    let mut by_tp: BTreeMap<(String, u32), Vec<&v1::AcquiredRecord>> = BTreeMap::new();
    for a in &r.records {
        by_tp.entry((a.topic.clone(), a.partition)).or_default().push(a);
    }
    let ack_results = ack_codes(&r.acknowledgements);
    let mut tps: BTreeSet<(String, u32)> = named.iter().map(|(_, t, p)| (t.clone(), *p)).collect();
    tps.extend(by_tp.keys().cloned());
    let mut topics: BTreeMap<String, Vec<PartitionData>> = BTreeMap::new();
    for tp in tps {
        let records = by_tp.get(&tp).map(Vec::as_slice).unwrap_or_default();
        let (ack_code, ack_message) = ack_results.get(&tp).cloned().unwrap_or((0, String::new()));
        let mut p = PartitionData::default()
            .with_partition_index(tp.1 as i32)
            .with_acknowledge_error_code(ack_code)
            .with_acknowledge_error_message(message(ack_message));
        if !records.is_empty() {
            p = p
                .with_records(Some(batches(records)))
                .with_acquired_records(acquired_ranges(records));
        }
        topics.entry(tp.0).or_default().push(p);
    }
    let responses = topics
        .into_iter()
        .filter_map(|(t, partitions)| {
            let id = super::metadata::topic_uuid(image.topics.get(&t)?);
            Some(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(id)
                    .with_partitions(partitions),
            )
        })
        .collect();
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(i32::try_from(r.lock_duration_ms).unwrap_or(i32::MAX))
        .with_responses(responses)
}

pub(crate) async fn acknowledge(
    k: &Kafka,
    req: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    let failed = |code: i16, why: String| {
        ShareAcknowledgeResponse::default().with_error_code(code).with_error_message(message(why))
    };
    let group = req.group_id.as_ref().map(|g| g.0.to_string()).unwrap_or_default();
    let member = req.member_id.as_ref().map(text).unwrap_or_default();
    let names = super::data::names_by_id(k);
    let parts: Named = named!(req.topics);
    let (named, acks) = match resolve(&names, parts) {
        Ok(r) => r,
        Err((code, why)) => return failed(code, why),
    };
    let topics: Vec<String> = named.iter().map(|(_, t, _)| t.clone()).collect();
    if let Err(e) = authorized(k, &group, &topics) {
        return failed(kafka_code(e.code), e.message);
    }
    let request = v1::ShareAcknowledgeRequest {
        group,
        member_id: member,
        member_epoch: 0,
        acknowledgements: acks,
    };
    let r = match crate::share::forward::acknowledge(&k.shared, request).await {
        Ok(r) => r,
        Err(e) => return failed(kafka_code(e.code), e.message),
    };
    let results = ack_codes(&r.acknowledgements);
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<AckPartitionData>> = BTreeMap::new();
    for (id, t, p) in named {
        let (code, why) = results.get(&(t, p)).cloned().unwrap_or((0, String::new()));
        by_topic.entry(id).or_default().push(
            AckPartitionData::default()
                .with_partition_index(p as i32)
                .with_error_code(code)
                .with_error_message(message(why)),
        );
    }
    ShareAcknowledgeResponse::default().with_responses(
        by_topic
            .into_iter()
            .map(|(id, partitions)| {
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(id)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledge_types_become_runs_and_gaps_are_skipped() {
        let b = ack_batches("t", 0, 10, 15, &[1, 1, 0, 2, 2, 1]).unwrap();
        let runs: Vec<_> = b.iter().map(|b| (b.first_offset, b.last_offset, b.r#type)).collect();
        assert_eq!(runs, vec![(10, 11, 1), (13, 14, 2), (15, 15, 1)]);
        let one = ack_batches("t", 0, 3, 5, &[3]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].first_offset, one[0].last_offset, one[0].r#type), (3, 5, 3));
        assert!(ack_batches("t", 0, 3, 5, &[1, 1]).is_err());
        assert!(ack_batches("t", 0, 5, 3, &[1]).is_err());
    }

    #[test]
    fn acquired_records_become_batches_at_their_offsets() {
        let rec = |o: i64, c: u32| v1::AcquiredRecord {
            topic: "t".into(),
            partition: 0,
            record: Some(v1::FetchedRecord {
                offset: o,
                timestamp_ms: 7,
                key: None,
                value: Some(Bytes::from(format!("v{o}"))),
                headers: vec![],
            }),
            delivery_count: c,
        };
        let list = [rec(4, 2), rec(5, 2), rec(9, 1)];
        let refs: Vec<&v1::AcquiredRecord> = list.iter().collect();
        let ranges: Vec<_> = acquired_ranges(&refs)
            .iter()
            .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
            .collect();
        assert_eq!(ranges, vec![(4, 5, 2), (9, 9, 1)]);
        let data = batches(&refs);
        let offsets: Vec<(u64, String)> = silt_core::batch::BatchIter::new(data)
            .flat_map(|b| silt_core::batch::RecordIter::new(b.unwrap()).unwrap())
            .map(|r| {
                let r = r.unwrap();
                (r.offset.0, String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            })
            .collect();
        assert_eq!(offsets, vec![(4, "v4".into()), (5, "v5".into()), (9, "v9".into())]);
    }
}
