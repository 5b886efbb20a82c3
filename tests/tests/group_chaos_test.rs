//! Consumer-group chaos (RELIABILITY.md T14, ISSUE 6): three members of one group consume a
//! topic under `acks=all` load, committing after processing (two of them async, not awaited, so
//! commits overlap revocations and kills — issue 14); a member is killed (no leave) and
//! replaced every few seconds, and the coordinator's broker is killed and restarted in the middle.
//! Checks (C8): committed offsets per partition never go backwards and never pass the high
//! watermark, the union of what the members consumed covers every acknowledged record, nothing
//! consumed was never sent, and no broker panicked.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silt_client::{Acks, Client, ProducerConfig};
use silt_tests::cluster::{ClusterSettings, ProcessCluster};
use silt_tests::group_load::{Commits, OffsetWatch, committed_to_end, drain, spawn_member_with};
use silt_tests::workload::{Feeder, fault_topic_configs};

const TOPIC: &str = "chaos";
const GROUP: &str = "chaos-group";
const PARTITIONS: u32 = 6;
const MEMBERS: usize = 3;

/// How the member in slot `i` (and each replacement of it) commits.
fn commits(i: usize) -> Commits {
    if i.is_multiple_of(2) { Commits::Async } else { Commits::Sync }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_the_coordinator_killed_under_load_lose_nothing() {
    let mut settings = ClusterSettings::new(env!("CARGO_BIN_EXE_siltd-under-test"));
    settings.extra = "offsets_topic_partitions = 4\ngroup_heartbeat_interval_ms = 300\n".into();
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    client.admin().create_topic(TOPIC, PARTITIONS, 3, fault_topic_configs()).await.unwrap();
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(30), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }

    // Load: acks=all sends, about 200/s, each acknowledged value remembered.
    let feeder = Feeder::start(
        client.clone(),
        TOPIC,
        ProducerConfig {
            acks: Acks::All,
            delivery_timeout_ms: 10_000,
            ..ProducerConfig::default()
        },
        Duration::from_millis(5),
    );

    // Committed offsets, watched: never backwards.
    let watch = OffsetWatch::start(client.clone(), GROUP);

    let consumed = Arc::new(Mutex::new(BTreeSet::new()));
    let mut members: Vec<_> = (0..MEMBERS)
        .map(|i| spawn_member_with(client.clone(), GROUP, TOPIC, consumed.clone(), commits(i)))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Faults: every 3 s a member is killed and replaced; the coordinator's broker dies at 9 s
    // and comes back at 15 s.
    let mut killed_members = 0;
    let mut coordinator_killed = None;
    for round in 0..8u64 {
        let victim = (round as usize * 7 + 1) % MEMBERS;
        members[victim].abort();
        killed_members += 1;
        members[victim] =
            spawn_member_with(client.clone(), GROUP, TOPIC, consumed.clone(), commits(victim));
        if round == 3 {
            let coord = find_coordinator(&client).await;
            let id = cluster.brokers.values().find(|b| b.addr == coord).map(|b| b.id).unwrap();
            cluster.kill9(id);
            coordinator_killed = Some(id);
            eprintln!("killed the coordinator, broker {id}");
        }
        if round == 5
            && let Some(id) = coordinator_killed
        {
            cluster.restart(id);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    cluster.wait_alive(3, Duration::from_secs(60)).await;
    let (sent, acked) = feeder.stop().await;

    // Drain: the group (members still running) catches up with everything acknowledged, and
    // its committed offsets reach the end without passing the high watermark.
    if let Err(missing) = drain(&consumed, &acked, Duration::from_secs(90)).await {
        panic!("{missing} acknowledged records never consumed");
    }
    committed_to_end(&client, GROUP, TOPIC, PARTITIONS, Duration::from_secs(30)).await.unwrap();
    let regressions = watch.stop();
    for m in &members {
        m.abort();
    }
    let consumed = consumed.lock().unwrap().clone();
    let phantoms: Vec<_> = consumed.difference(&sent).collect();
    // C3: the idempotent producer's retries appended nothing twice.
    let log = silt_tests::workload::final_read(&cluster.bootstrap(), TOPIC, PARTITIONS).await;
    let mut copies: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for v in log.values() {
        *copies.entry(v.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "group chaos: {killed_members} members killed, coordinator broker {coordinator_killed:?} killed; \
         {} sent, {} acknowledged, {} consumed, 0 lost, {} commit regressions, {} duplicates",
        sent.len(),
        acked.len(),
        consumed.len(),
        regressions.len(),
        duplicates.len()
    );
    assert!(duplicates.is_empty(), "records stored twice: {duplicates:?}");
    assert!(phantoms.is_empty(), "consumed but never sent: {phantoms:?}");
    assert!(regressions.is_empty(), "committed offsets went backwards: {regressions:?}");
    assert!(acked.len() > 1_000, "the load ran: {} acknowledged", acked.len());
    assert!(cluster.panics().is_empty(), "{:?}", cluster.panics());
}

async fn find_coordinator(client: &Client) -> String {
    use silt_proto::v1;
    let addr = client.metadata(&[]).await.unwrap().brokers[0].address.clone();
    let mut g = v1::groups_client::GroupsClient::connect(format!("http://{addr}")).await.unwrap();
    let r = g.find_coordinator(v1::FindCoordinatorRequest { group: GROUP.into() }).await.unwrap();
    r.into_inner().address
}
