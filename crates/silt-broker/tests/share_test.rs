//! Share groups through one broker (docs/share-groups.md): members competing for the records of
//! one partition, each record accepted once; RELEASE, REJECT, expired locks and the delivery
//! limit, with dead letters; acknowledged state surviving a restart; bad requests refused.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use silt_client::{
    AckKind, AckMode, Client, ProducerConfig, ProducerRecord, ShareConfig, ShareConsumer,
    ShareStart,
};
use silt_proto::v1::{self, ErrorCode};

async fn fill(client: &Client, topic: &str, n: usize) {
    let p = client.producer(ProducerConfig::default());
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let r = ProducerRecord::new(topic, format!("r-{i}")).with_partition(0);
        acks.push(p.send(r).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
    p.close().await.unwrap();
}

fn config(group: &str, topic: &str, mode: AckMode) -> ShareConfig {
    ShareConfig {
        ack_mode: mode,
        start: ShareStart::Earliest,
        max_wait: Duration::from_millis(100),
        ..ShareConfig::new(group, &[topic])
    }
}

fn value(r: &silt_client::ShareRecord) -> String {
    String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_members_share_one_partition_and_accept_every_record_once() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("jobs", 1, &[]).await.error_code(), ErrorCode::None);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    const N: usize = 100_000;
    fill(&client, "jobs", N).await;
    let mut tasks = Vec::new();
    for m in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = ShareConsumer::join(
                &client,
                ShareConfig { max_records: 100, ..config("workers", "jobs", AckMode::Implicit) },
            )
            .await
            .unwrap();
            let mut got = Vec::new();
            let mut idle = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while idle < 10 && Instant::now() < deadline {
                let records = c.poll().await.unwrap();
                idle = if records.is_empty() { idle + 1 } else { 0 };
                for r in records {
                    assert_eq!(r.delivery_count, 1, "member {m}: a clean run delivers once");
                    got.push(r.offset);
                }
            }
            let failures = c.close().await.unwrap();
            assert!(failures.is_empty(), "member {m}: {failures:?}");
            got
        }));
    }
    let mut all = BTreeSet::new();
    let mut parts = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        parts.push(got.len());
        for o in got {
            assert!(all.insert(o), "offset {o} delivered twice");
        }
    }
    assert_eq!(all.len(), N, "every record delivered: {parts:?}");
    for p in &parts {
        assert!(*p > N / 8 / 4, "each member gets a fair part: {parts:?}");
    }
    let d = client.admin().describe_share_group("workers").await.unwrap();
    assert_eq!(d.partitions.len(), 1);
    assert_eq!(d.partitions[0].start_offset, N as i64, "every record acknowledged");
    assert_eq!(d.partitions[0].in_flight, 0);
    assert_eq!(d.redeliveries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reject_expiry_and_the_delivery_limit_with_dead_letters() {
    let b = TestBroker::start_with(|dir| silt_broker::BrokerConfig {
        share_record_lock_duration_ms: 1_000,
        share_delivery_count_limit: 3,
        ..silt_broker::BrokerConfig::for_test(dir)
    })
    .await;
    assert_eq!(b.create_topic("dlq", 1, &[]).await.error_code(), ErrorCode::None);
    let r = b.create_topic("tasks", 1, &[("share.dead.letter.topic", "dlq")]).await;
    assert_eq!(r.error_code(), ErrorCode::None);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    fill(&client, "tasks", 4).await;

    let mut a =
        ShareConsumer::join(&client, config("g", "tasks", AckMode::Explicit)).await.unwrap();
    let mut first = Vec::new();
    while first.len() < 4 {
        first.extend(a.poll().await.unwrap());
    }
    assert!(first.iter().all(|r| r.delivery_count == 1));
    // r-0 accepted, r-1 released (back at once), r-2 rejected (dead letter), r-3 held.
    a.acknowledge(&first[0], AckKind::Accept);
    a.acknowledge(&first[1], AckKind::Release);
    a.acknowledge(&first[2], AckKind::Reject);
    assert!(a.commit().await.unwrap().is_empty());

    let mut b2 =
        ShareConsumer::join(&client, config("g", "tasks", AckMode::Explicit)).await.unwrap();
    let again = b2.poll().await.unwrap();
    assert_eq!(again.len(), 1, "only the released record is available: {again:?}");
    assert_eq!((value(&again[0]).as_str(), again[0].delivery_count), ("r-1", 2));
    // Acknowledging a record another member holds is refused and changes nothing.
    a.acknowledge(&again[0], AckKind::Accept);
    let refused = a.commit().await.unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].code, Some(ErrorCode::InvalidRecordState));

    // a dies holding r-3 (no leave: its heartbeats just stop). b2 renews r-1 meanwhile; once
    // a's lock expires r-3 comes back, to b2.
    drop(a);
    let started = Instant::now();
    let mut expired = Vec::new();
    while expired.is_empty() && started.elapsed() < Duration::from_secs(10) {
        b2.acknowledge(&again[0], AckKind::Renew);
        expired = b2.poll().await.unwrap();
    }
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!((value(&expired[0]).as_str(), expired[0].delivery_count), ("r-3", 2));
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the lock expired");
    // r-1 is still b2's (renewed): accepting it works.
    b2.acknowledge(&again[0], AckKind::Accept);
    // r-3 fails once more (third delivery), then the release archives it.
    b2.acknowledge(&expired[0], AckKind::Release);
    assert!(b2.commit().await.unwrap().is_empty());
    let third = b2.poll().await.unwrap();
    assert_eq!((value(&third[0]).as_str(), third[0].delivery_count), ("r-3", 3));
    b2.acknowledge(&third[0], AckKind::Release);
    assert!(b2.commit().await.unwrap().is_empty());
    assert!(b2.poll().await.unwrap().is_empty(), "archived at the delivery limit");

    // The dead-letter topic has r-2 (rejected) and r-3 (delivery limit), with where they came
    // from.
    let mut reader =
        ShareConsumer::join(&client, config("dlq-reader", "dlq", AckMode::Implicit)).await.unwrap();
    let mut letters: BTreeMap<String, silt_client::ShareRecord> = BTreeMap::new();
    let started = Instant::now();
    while letters.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        for r in reader.poll().await.unwrap() {
            letters.insert(value(&r), r);
        }
    }
    let h = |r: &silt_client::ShareRecord, k: &str| {
        String::from_utf8(r.header(k).unwrap_or_else(|| panic!("header {k}")).to_vec()).unwrap()
    };
    let rejected = &letters["r-2"];
    assert_eq!(h(rejected, "silt.dlq.reason"), "rejected");
    assert_eq!(h(rejected, "silt.dlq.topic"), "tasks");
    assert_eq!(h(rejected, "silt.dlq.offset"), "2");
    assert_eq!(h(rejected, "silt.dlq.delivery.count"), "1");
    let limited = &letters["r-3"];
    assert_eq!(h(limited, "silt.dlq.reason"), "delivery-limit");
    assert_eq!(h(limited, "silt.dlq.delivery.count"), "3");
    assert_eq!(letters.len(), 2);

    let d = client.admin().describe_share_group("g").await.unwrap();
    assert_eq!(d.partitions[0].start_offset, 4, "everything done");
    assert_eq!((d.archived, d.dead_lettered), (2, 2));
    assert_eq!(d.members.len(), 2, "the dead member stays until its session times out");
    reader.close().await.unwrap();
    b2.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_stay_acknowledged_across_a_restart() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("q", 1, &[]).await.error_code(), ErrorCode::None);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    fill(&client, "q", 100).await;
    let mut c = ShareConsumer::join(
        &client,
        ShareConfig { max_records: 30, ..config("keep", "q", AckMode::Explicit) },
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    while held.len() < 60 {
        held.extend(c.poll().await.unwrap());
    }
    // Accept the even offsets of the first 60; leave the odd ones held at the "crash".
    for r in held.iter().filter(|r| r.offset % 2 == 0) {
        c.acknowledge(r, AckKind::Accept);
    }
    assert!(c.commit().await.unwrap().is_empty());
    drop(c);
    let dir = b.dir.clone();
    let tmp = b.stop().await;
    let b = TestBroker::start_in(dir, silt_broker::BrokerConfig::for_test).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let mut c = ShareConsumer::join(&client, config("keep", "q", AckMode::Implicit)).await.unwrap();
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    while seen.len() < 70 && started.elapsed() < Duration::from_secs(20) {
        for r in c.poll().await.unwrap() {
            assert!(r.offset % 2 == 1 || r.offset >= 60, "accepted offset {} came back", r.offset);
            assert!(seen.insert(r.offset));
        }
    }
    assert_eq!(seen.len(), 70, "30 odd offsets held at the restart + 40 never delivered");
    c.close().await.unwrap();
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_share_requests_are_refused() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("t", 1, &[]).await.error_code(), ErrorCode::None);
    let mut s = silt_proto::v1::share_client::ShareClient::connect(format!("http://{}", b.addr))
        .await
        .unwrap();
    // Find the coordinator (creates __share_group_state) until it answers.
    let started = Instant::now();
    loop {
        let r = s
            .find_share_coordinator(v1::FindShareCoordinatorRequest { group: "g".into() })
            .await
            .unwrap()
            .into_inner();
        if r.error_code == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fetch = |member: &str, acks: Vec<v1::AcknowledgementBatch>| v1::ShareFetchRequest {
        group: "g".into(),
        member_id: member.into(),
        acknowledgements: acks,
        ..Default::default()
    };
    let r = s.share_fetch(fetch("ghost", vec![])).await.unwrap().into_inner();
    assert_eq!(r.error_code, ErrorCode::UnknownMemberId as i32, "{r:?}");
    let hb = v1::ShareGroupHeartbeatRequest {
        group: "g".into(),
        subscribed_topics: vec!["t".into()],
        ..Default::default()
    };
    let j = s.share_group_heartbeat(hb.clone()).await.unwrap().into_inner();
    assert_eq!(j.error_code, 0, "{j:?}");
    assert_eq!(j.assignment.len(), 1);
    let ack = |first: i64, last: i64, t: i32| v1::AcknowledgementBatch {
        topic: "t".into(),
        partition: 0,
        first_offset: first,
        last_offset: last,
        r#type: t,
    };
    for bad in [ack(5, 4, 1), ack(-1, 2, 1), ack(0, 0, 9), ack(0, 10_000_000, 1)] {
        let r = s.share_fetch(fetch(&j.member_id, vec![bad.clone()])).await.unwrap().into_inner();
        assert_eq!(r.error_code, ErrorCode::InvalidRequest as i32, "{bad:?}: {r:?}");
    }
    // An acknowledgement of an offset never delivered: INVALID_RECORD_STATE for the partition.
    let r = s.share_fetch(fetch(&j.member_id, vec![ack(0, 0, 1)])).await.unwrap().into_inner();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.acknowledgements[0].error_code, ErrorCode::InvalidRecordState as i32);
    let r = s
        .share_group_heartbeat(v1::ShareGroupHeartbeatRequest { group: String::new(), ..hb })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error_code, ErrorCode::InvalidGroupId as i32);
    // A group with members cannot be deleted; after leaving it can.
    let r = s
        .delete_share_group(v1::DeleteShareGroupRequest { group: "g".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error_code, ErrorCode::GroupNotEmpty as i32, "{r:?}");
    let leave = v1::ShareGroupHeartbeatRequest {
        group: "g".into(),
        member_id: j.member_id.clone(),
        member_epoch: -1,
        ..Default::default()
    };
    assert_eq!(s.share_group_heartbeat(leave).await.unwrap().into_inner().error_code, 0);
    let r = s
        .delete_share_group(v1::DeleteShareGroupRequest { group: "g".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error_code, 0, "{r:?}");
    // A dead-letter topic name is checked like any topic name.
    let r = b.create_topic("t2", 1, &[("share.dead.letter.topic", "bad name")]).await;
    assert_eq!(r.error_code(), ErrorCode::InvalidConfig);
}
