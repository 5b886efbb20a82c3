//! Share groups across a share coordinator kill (issue 20), with three `siltd` processes: four
//! members work through a replicated topic (RF 3, min ISR 2), accepting most records and
//! rejecting some into a dead-letter topic, while the broker coordinating their share group is
//! killed with SIGKILL and restarted. An acknowledgement the coordinator confirmed is never
//! undone: no record whose ACCEPT was confirmed is delivered again; nothing is lost: in the end
//! every record was accepted by a member or is in the dead-letter topic, and the coordinator
//! holds none as pending.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_client::{
    AckKind, AckMode, Acks, Client, ProducerConfig, ProducerRecord, ShareConfig, ShareConsumer,
    ShareStart,
};
use silt_proto::v1;
use silt_tests::cluster::{ClusterSettings, ProcessCluster};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");
const RECORDS: u64 = 4_000;
const MEMBERS: usize = 4;
const GROUP: &str = "workers";

fn rejected(v: u64) -> bool {
    v % 100 == 7
}

#[derive(Debug, Default)]
struct Ledger {
    /// Records whose ACCEPT the coordinator confirmed.
    confirmed: BTreeSet<u64>,
    /// Records a member accepted (confirmed or not).
    accepted: BTreeSet<u64>,
    /// Deliveries of records already confirmed accepted: must stay empty.
    undone: Vec<u64>,
    deliveries: u64,
}

async fn coordinator(addr: &str) -> Option<u64> {
    let mut c = v1::share_client::ShareClient::connect(format!("http://{addr}")).await.ok()?;
    let r = c
        .find_share_coordinator(v1::FindShareCoordinatorRequest { group: GROUP.into() })
        .await
        .ok()?
        .into_inner();
    (r.error_code == 0).then_some(r.node_id)
}

async fn member(
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let config = ShareConfig {
        ack_mode: AckMode::Explicit,
        start: ShareStart::Earliest,
        max_records: 50,
        max_wait: Duration::from_millis(200),
        ..ShareConfig::new(GROUP, &["work"])
    };
    let mut c = loop {
        match ShareConsumer::join(&client, config.clone()).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let records = match c.poll().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut accepted = Vec::new();
        {
            let mut l = ledger.lock().unwrap();
            for r in &records {
                let v: u64 = String::from_utf8_lossy(r.value.as_deref().unwrap()).parse().unwrap();
                l.deliveries += 1;
                if l.confirmed.contains(&v) {
                    l.undone.push(v);
                }
                if rejected(v) {
                    c.acknowledge(r, AckKind::Reject);
                } else {
                    c.acknowledge(r, AckKind::Accept);
                    accepted.push((r.partition, v));
                }
            }
        }
        match c.commit().await {
            Ok(failures) => {
                let failed: BTreeSet<u32> = failures.iter().map(|f| f.partition).collect();
                let mut l = ledger.lock().unwrap();
                for (p, v) in accepted {
                    l.accepted.insert(v);
                    if !failed.contains(&p) {
                        l.confirmed.insert(v);
                    }
                }
            }
            Err(_) => {
                // Outcome unknown (the coordinator died): these may come back, legitimately.
                let mut l = ledger.lock().unwrap();
                l.accepted.extend(accepted.into_iter().map(|(_, v)| v));
            }
        }
    }
    let _ = c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_coordinator_kill_neither_undoes_an_acknowledgement_nor_loses_a_record() {
    let mut settings = ClusterSettings::new(SILTD);
    settings.extra = "share_record_lock_duration_ms = 4000\n\
                      share_session_timeout_ms = 6000\n\
                      share_heartbeat_interval_ms = 1000\n"
        .into();
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    let admin = client.admin();
    let rf3 = |dlq: Option<&str>| {
        let mut c = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        if let Some(d) = dlq {
            c.insert("share.dead.letter.topic".into(), d.into());
        }
        c
    };
    admin.create_topic("work.dlq", 1, 3, rf3(None)).await.expect("dlq created");
    admin.create_topic("work", 2, 3, rf3(Some("work.dlq"))).await.expect("topic created");
    let producer = client
        .try_producer(ProducerConfig { acks: Acks::All, linger_ms: 5, ..ProducerConfig::default() })
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..RECORDS {
        let r =
            ProducerRecord::new("work", Bytes::from(i.to_string())).with_partition((i % 2) as u32);
        acks.push(producer.send(r).await.expect("queued"));
    }
    for a in acks {
        a.await.expect("acknowledged");
    }
    producer.close().await.unwrap();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..MEMBERS)
        .map(|_| tokio::spawn(member(client.clone(), ledger.clone(), stop.clone())))
        .collect();
    // Kill the coordinator once the members are well into the work.
    let started = Instant::now();
    while ledger.lock().unwrap().confirmed.len() < (RECORDS / 4) as usize {
        assert!(started.elapsed() < Duration::from_secs(60), "members make progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = coordinator(&cluster.bootstrap()[0]).await.expect("a coordinator");
    cluster.kill9(victim);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(victim);

    // Done when every record was accepted by a member and the coordinator has every record of
    // both partitions behind its start offset. (An ACCEPT whose answer was lost with the
    // coordinator may have been applied: such a record is done without a confirmation.)
    let want_accepted: BTreeSet<u64> = (0..RECORDS).filter(|v| !rejected(*v)).collect();
    let per_partition = (RECORDS / 2) as i64;
    let all_done = |d: &v1::DescribeShareGroupResponse| {
        d.partitions.len() == 2 && d.partitions.iter().all(|p| p.start_offset == per_partition)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut described = None;
    while Instant::now() < deadline {
        let accepted = ledger.lock().unwrap().accepted.is_superset(&want_accepted);
        if accepted
            && let Ok(d) = admin.describe_share_group(GROUP).await
            && all_done(&d)
        {
            described = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(l.undone.is_empty(), "confirmed-accepted records delivered again: {:?}", l.undone);
    let missing: Vec<_> = want_accepted.difference(&l.accepted).take(10).collect();
    let share_lines = || {
        let mut out = String::new();
        for id in 1..=3 {
            for line in cluster.log_of(id).lines().filter(|l| l.contains("share_group")) {
                out.push_str(&format!("b{id}: {line}\n"));
            }
        }
        out
    };
    assert!(
        missing.is_empty() && described.is_some(),
        "records never accepted (first 10): {missing:?}; the group: {:?}\n{}\n{}",
        admin.describe_share_group(GROUP).await,
        share_lines(),
        cluster.logs()
    );

    // Every rejected record is in the dead-letter topic (at least once).
    let mut reader = ShareConsumer::join(
        &client,
        ShareConfig { start: ShareStart::Earliest, ..ShareConfig::new("dlq-check", &["work.dlq"]) },
    )
    .await
    .unwrap();
    let want_dead: BTreeSet<u64> = (0..RECORDS).filter(|v| rejected(*v)).collect();
    let mut dead = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dead.is_superset(&want_dead) && Instant::now() < deadline {
        for r in reader.poll().await.unwrap_or_default() {
            dead.insert(
                String::from_utf8_lossy(r.value.as_deref().unwrap()).parse::<u64>().unwrap(),
            );
        }
    }
    assert_eq!(dead, want_dead, "every rejected record dead-lettered, nothing else");
    eprintln!(
        "{} deliveries of {RECORDS} records, {} accepted ({} confirmed), {} dead-lettered; \
         coordinator {victim} killed",
        l.deliveries,
        l.accepted.len(),
        l.confirmed.len(),
        dead.len()
    );
    assert!(cluster.panics().is_empty(), "{:?}", cluster.panics());
}
