//! Consumer groups against three `siltd` processes (ISSUE 6): members split partitions disjointly
//! and together read everything; two groups each read everything; a killed member's partitions
//! move after its session; a joining member gets partitions with no moment of double ownership;
//! fenced and unknown members cannot commit; committed offsets survive the coordinator's broker
//! being killed; a reset to a timestamp replays from there. The chaos test is in
//! `group_chaos_test.rs`. Tests run one at a time (two cores).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silt_client::{
    Acks, BoxFuture, Client, CommitMode, Committer, GroupConfig, GroupConsumer, ProducerConfig,
    ProducerRecord, RebalanceListener, Seek, TopicPartition,
};
use silt_proto::v1::{self, ErrorCode};
use silt_tests::cluster::{ClusterSettings, ProcessCluster};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC: &str = "work";

async fn setup(partitions: u32) -> (ProcessCluster, Client) {
    let mut settings = ClusterSettings::new(env!("CARGO_BIN_EXE_siltd-under-test"));
    settings.extra = "offsets_topic_partitions = 4\ngroup_heartbeat_interval_ms = 300\n".into();
    let cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    client
        .admin()
        .create_topic(TOPIC, partitions, 3, silt_tests::workload::fault_topic_configs())
        .await
        .expect("topic created");
    for p in 0..partitions {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(30), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    (cluster, client)
}

/// Sends `n` records `prefix-i` with acks=all, keyed so they spread over the partitions.
async fn produce(client: &Client, prefix: &str, n: usize) -> BTreeSet<String> {
    let producer = client.producer(ProducerConfig { acks: Acks::All, ..ProducerConfig::default() });
    let mut sent = BTreeSet::new();
    let mut waits = Vec::new();
    for i in 0..n {
        let v = format!("{prefix}-{i}");
        let rec = ProducerRecord::new(TOPIC, v.clone()).with_key(v.clone());
        waits.push(producer.send(rec).await.expect("queued"));
        sent.insert(v);
    }
    for w in waits {
        w.await.expect("acknowledged");
    }
    producer.close().await.expect("flushed");
    sent
}

fn config(group: &str, session_ms: u32) -> GroupConfig {
    let mut c = GroupConfig::new(group);
    c.session_timeout_ms = session_ms;
    c.commit = CommitMode::Auto { interval: Duration::from_millis(200) };
    c.fetch.max_wait_ms = 200;
    c
}

/// When each member owned each partition: (member, partition) -> [start, end) intervals.
#[derive(Debug, Default)]
struct Ownership {
    intervals: Vec<(usize, u32, Instant, Option<Instant>)>,
}

impl Ownership {
    /// No partition owned by two members at the same moment.
    fn assert_exclusive(&self) {
        for (i, a) in self.intervals.iter().enumerate() {
            for b in &self.intervals[i + 1..] {
                if a.0 == b.0 || a.1 != b.1 {
                    continue;
                }
                let far = Instant::now() + Duration::from_secs(3600);
                let overlap = a.2 < b.3.unwrap_or(far) && b.2 < a.3.unwrap_or(far);
                assert!(
                    !overlap,
                    "partition {} owned by members {} and {} at once: {:?}",
                    a.1,
                    a.0,
                    b.0,
                    self.intervals.iter().filter(|i| i.1 == a.1).collect::<Vec<_>>()
                );
            }
        }
    }

    fn owned_now(&self, member: usize) -> BTreeSet<u32> {
        self.intervals
            .iter()
            .filter(|(m, _, _, end)| *m == member && end.is_none())
            .map(|(_, p, _, _)| *p)
            .collect()
    }
}

struct Recorder {
    member: usize,
    log: Arc<Mutex<Ownership>>,
}

impl RebalanceListener for Recorder {
    fn on_assigned<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        let mut log = self.log.lock().unwrap();
        for tp in partitions {
            log.intervals.push((self.member, tp.partition, Instant::now(), None));
        }
        Box::pin(async {})
    }

    fn on_revoked<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
        _committer: &'a Committer,
    ) -> BoxFuture<'a, ()> {
        self.end(partitions);
        Box::pin(async {})
    }

    fn on_lost<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        self.end(partitions);
        Box::pin(async {})
    }
}

impl Recorder {
    fn end(&self, partitions: &[TopicPartition]) {
        let mut log = self.log.lock().unwrap();
        let now = Instant::now();
        for tp in partitions {
            for iv in log.intervals.iter_mut() {
                if iv.0 == self.member && iv.1 == tp.partition && iv.3.is_none() {
                    iv.3 = Some(now);
                }
            }
        }
    }
}

/// A member polling in its own task; what it read goes to `seen`.
struct Member {
    task: tokio::task::JoinHandle<GroupConsumer>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

fn spawn_member(
    mut c: GroupConsumer,
    id: usize,
    log: Arc<Mutex<Ownership>>,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
) -> Member {
    c.set_listener(Box::new(Recorder { member: id, log }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !flag.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            match c.poll().await {
                Ok(records) => {
                    let mut s = seen.lock().unwrap();
                    for r in records {
                        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                        s.push((id, v.into_owned()));
                    }
                }
                Err(e) => {
                    tracing::warn!(member = id, error = %e, "poll failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        c
    });
    Member { task, stop }
}

impl Member {
    async fn stop(self) -> GroupConsumer {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.expect("member task")
    }
}

async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn values(seen: &Mutex<Vec<(usize, String)>>) -> BTreeSet<String> {
    seen.lock().unwrap().iter().map(|(_, v)| v.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_each_group_reads_everything() {
    let _serial = SERIAL.lock().await;
    let (cluster, client) = setup(6).await;
    let sent = produce(&client, "a", 600).await;
    let log = Arc::new(Mutex::new(Ownership::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut members = Vec::new();
    for id in 0..3 {
        let c = client.subscribe(config("split", 6_000), vec![TOPIC.into()]).await.unwrap();
        members.push(spawn_member(c, id, log.clone(), seen.clone()));
    }
    // A second group on the same topic, one member.
    let other_seen = Arc::new(Mutex::new(Vec::new()));
    let other_log = Arc::new(Mutex::new(Ownership::default()));
    let other = client.subscribe(config("fanout", 6_000), vec![TOPIC.into()]).await.unwrap();
    let other = spawn_member(other, 9, other_log, other_seen.clone());
    wait_until(60, "group split read all 600", || values(&seen) == sent).await;
    wait_until(60, "group fanout read all 600", || values(&other_seen) == sent).await;
    wait_until(30, "three members own two partitions each", || {
        let l = log.lock().unwrap();
        (0..3).all(|m| l.owned_now(m).len() == 2)
    })
    .await;
    log.lock().unwrap().assert_exclusive();
    let owned: Vec<BTreeSet<u32>> = (0..3).map(|m| log.lock().unwrap().owned_now(m)).collect();
    let union: BTreeSet<u32> = owned.iter().flatten().copied().collect();
    assert_eq!(union.len(), 6, "disjoint and complete: {owned:?}");
    // Every member read only from its partitions: the split group has no duplicates.
    assert_eq!(seen.lock().unwrap().len(), 600, "no record read twice in a stable group");
    // The coordinator's view: stable, 3 members, lag 0 once commits land.
    let admin = client.admin();
    let mut described = None;
    for _ in 0..100 {
        let d = admin.describe_group("split").await.unwrap();
        if d.state == "stable" && d.offsets.len() == 6 && d.offsets.iter().all(|o| o.lag == 0) {
            described = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = described.expect("group split becomes stable with lag 0 on all 6 partitions");
    assert_eq!(d.members.len(), 3);
    let listed = admin.list_groups().await.unwrap();
    let names: BTreeSet<&str> = listed.iter().map(|g| g.group.as_str()).collect();
    assert!(names.contains("split") && names.contains("fanout"), "{listed:?}");
    for m in members {
        m.stop().await.close().await.unwrap();
    }
    other.stop().await.close().await.unwrap();
    let d = admin.describe_group("split").await.unwrap();
    assert_eq!((d.state.as_str(), d.members.len()), ("empty", 0));
    assert!(cluster.panics().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_loses_its_partitions_and_cannot_commit() {
    let _serial = SERIAL.lock().await;
    let (cluster, client) = setup(6).await;
    let sent = produce(&client, "k", 300).await;
    let log = Arc::new(Mutex::new(Ownership::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = client.subscribe(config("kill", 2_000), vec![TOPIC.into()]).await.unwrap();
    let a = spawn_member(a, 0, log.clone(), seen.clone());
    let b = client.subscribe(config("kill", 2_000), vec![TOPIC.into()]).await.unwrap();
    let b = spawn_member(b, 1, log.clone(), seen.clone());
    wait_until(30, "both members own 3 partitions", || {
        let l = log.lock().unwrap();
        l.owned_now(0).len() == 3 && l.owned_now(1).len() == 3
    })
    .await;
    // Kill B: its task stops polling and heartbeating; no leave.
    let b = b.stop().await;
    let b_committer = b.committer();
    drop(b);
    // It stopped consuming now (the coordinator learns of it only after the session).
    let now = Instant::now();
    for iv in log.lock().unwrap().intervals.iter_mut().filter(|iv| iv.0 == 1) {
        iv.3.get_or_insert(now);
    }
    let moved = wait_until(20, "A owns all six after B's session", || {
        log.lock().unwrap().owned_now(0).len() == 6
    })
    .await;
    eprintln!(
        "partitions moved {} ms after the member was killed (session 2000 ms)",
        moved.as_millis()
    );
    assert!(moved >= Duration::from_millis(1_500), "not before the session ended: {moved:?}");
    wait_until(60, "everything read", || values(&seen) == sent).await;
    log.lock().unwrap().assert_exclusive();
    // The dead member's commits are refused.
    let tp = TopicPartition { topic: TOPIC.into(), partition: 0 };
    let e = b_committer.commit([(tp.clone(), 1)]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownMemberId), "{e}");
    // A stale epoch from a live member id is fenced (raw gRPC).
    let a = a.stop().await;
    let member_id = a.member_id();
    let coord = find_coordinator(&client, "kill").await;
    let mut g = v1::groups_client::GroupsClient::connect(format!("http://{coord}")).await.unwrap();
    let r = g
        .commit_offsets(v1::CommitOffsetsRequest {
            group: "kill".into(),
            member_id: member_id.clone(),
            member_epoch: 999,
            offsets: vec![v1::OffsetCommit {
                topic: TOPIC.into(),
                partition: 0,
                offset: 1,
                metadata: String::new(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error_code, ErrorCode::FencedMemberEpoch as i32, "{}", r.error_message);
    // And bad input changes nothing: a negative offset and an unknown topic.
    for (topic, offset, code) in
        [(TOPIC, -5, ErrorCode::OffsetOutOfRange), ("nope", 1, ErrorCode::UnknownTopic)]
    {
        let r = g
            .commit_offsets(v1::CommitOffsetsRequest {
                group: "kill".into(),
                member_id: member_id.clone(),
                member_epoch: 999,
                offsets: vec![v1::OffsetCommit {
                    topic: topic.into(),
                    partition: 0,
                    offset,
                    metadata: String::new(),
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.error_code, code as i32, "{}", r.error_message);
    }
    a.close().await.unwrap();
    assert!(cluster.panics().is_empty());
}

async fn find_coordinator(client: &Client, group: &str) -> String {
    let addr = client.metadata(&[]).await.unwrap().brokers[0].address.clone();
    let mut g = v1::groups_client::GroupsClient::connect(format!("http://{addr}")).await.unwrap();
    for _ in 0..100 {
        let r = g
            .find_coordinator(v1::FindCoordinatorRequest { group: group.into() })
            .await
            .unwrap()
            .into_inner();
        if r.error_code == 0 {
            return r.address;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no coordinator for {group}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_gets_partitions_with_no_double_ownership() {
    let _serial = SERIAL.lock().await;
    let (cluster, client) = setup(12).await;
    // Records keep arriving while the group rebalances.
    let producing = {
        let client = client.clone();
        tokio::spawn(async move { produce(&client, "j", 2_000).await })
    };
    let log = Arc::new(Mutex::new(Ownership::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut members = Vec::new();
    members.push(spawn_member(
        client.subscribe(config("join", 6_000), vec![TOPIC.into()]).await.unwrap(),
        0,
        log.clone(),
        seen.clone(),
    ));
    wait_until(30, "the first member owns all 12", || log.lock().unwrap().owned_now(0).len() == 12)
        .await;
    for id in 1..3 {
        members.push(spawn_member(
            client.subscribe(config("join", 6_000), vec![TOPIC.into()]).await.unwrap(),
            id,
            log.clone(),
            seen.clone(),
        ));
        let took = wait_until(30, "balanced after the join", || {
            let l = log.lock().unwrap();
            (0..=id).all(|m| l.owned_now(m).len() == 12 / (id + 1))
        })
        .await;
        eprintln!("member {id} joined: balanced in {} ms", took.as_millis());
        log.lock().unwrap().assert_exclusive();
    }
    let sent = producing.await.unwrap();
    wait_until(60, "everything read", || values(&seen) == sent).await;
    // A clean leave hands the partitions over too.
    let last = members.pop().unwrap().stop().await;
    last.close().await.unwrap();
    wait_until(30, "two members own 6 each after the leave", || {
        let l = log.lock().unwrap();
        l.owned_now(0).len() == 6 && l.owned_now(1).len() == 6
    })
    .await;
    log.lock().unwrap().assert_exclusive();
    for m in members {
        m.stop().await.close().await.unwrap();
    }
    assert!(cluster.panics().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_coordinator_being_killed_and_resets_replay() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, client) = setup(3).await;
    let early = produce(&client, "early", 90).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = silt_tests_now_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = produce(&client, "late", 60).await;
    let all: BTreeSet<String> = early.union(&late).cloned().collect();
    // Read everything and commit it.
    let log = Arc::new(Mutex::new(Ownership::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let m = spawn_member(
        client.subscribe(config("durable", 6_000), vec![TOPIC.into()]).await.unwrap(),
        0,
        log,
        seen.clone(),
    );
    wait_until(60, "all 150 read", || values(&seen) == all).await;
    m.stop().await.close().await.unwrap();
    let admin = client.admin();
    let before = admin.group_offsets("durable").await.unwrap();
    assert_eq!(before.values().sum::<i64>(), 150, "{before:?}");
    // Kill the coordinator's broker.
    let coord = find_coordinator(&client, "durable").await;
    let id = cluster.brokers.values().find(|b| b.addr == coord).map(|b| b.id).unwrap();
    cluster.kill9(id);
    let started = Instant::now();
    let after = loop {
        match admin.group_offsets("durable").await {
            Ok(o) if !o.is_empty() => break o,
            _ => assert!(started.elapsed() < Duration::from_secs(30), "no new coordinator"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "offsets served by the new coordinator {} ms after the kill",
        started.elapsed().as_millis()
    );
    assert_eq!(after, before, "committed offsets intact on the new coordinator");
    // Reset to the timestamp between the two batches; a new member replays only the late ones.
    admin.reset_offsets("durable", TOPIC, Seek::Timestamp(cut)).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let m = spawn_member(
        client.subscribe(config("durable", 6_000), vec![TOPIC.into()]).await.unwrap(),
        1,
        Arc::new(Mutex::new(Ownership::default())),
        seen.clone(),
    );
    wait_until(60, "the late records replayed", || values(&seen) == late).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(values(&seen), late, "nothing before the timestamp");
    // Resetting needs an empty group.
    let e = admin.reset_offsets("durable", TOPIC, Seek::Earliest).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::GroupNotEmpty), "{e}");
    m.stop().await.close().await.unwrap();
    admin.delete_group("durable").await.unwrap();
    let e = admin.describe_group("durable").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::GroupIdNotFound), "{e}");
    cluster.restart(id);
    cluster.wait_alive(3, Duration::from_secs(60)).await;
    assert!(cluster.panics().is_empty());
}

fn silt_tests_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `__consumer_offsets` gets its full replication factor: while one broker of three is down,
/// the coordinator lookup answers the retriable COORDINATOR_NOT_AVAILABLE instead of creating
/// the topic with two replicas forever; once the third is back it is created with three, and
/// `min.insync.replicas` 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_topic_waits_for_enough_live_brokers_for_its_replication_factor() {
    let _serial = SERIAL.lock().await;
    let mut settings = ClusterSettings::new(env!("CARGO_BIN_EXE_siltd-under-test"));
    settings.extra = "offsets_topic_partitions = 4\n".into();
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;

    eprintln!("--- kill broker 3 and wait until it is fenced");
    cluster.kill9(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = client.metadata(&[]).await
            && m.brokers.iter().filter(|b| b.alive).count() == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "broker 3 was not fenced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("--- the coordinator lookup waits instead of creating an RF-2 offsets topic");
    let addr = cluster.brokers[&1].addr.clone();
    let mut g = v1::groups_client::GroupsClient::connect(format!("http://{addr}")).await.unwrap();
    let r = g
        .find_coordinator(v1::FindCoordinatorRequest { group: "rf".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error_code, ErrorCode::CoordinatorNotAvailable as i32, "{}", r.error_message);
    assert!(r.error_message.contains("waiting for 3 live brokers"), "{}", r.error_message);
    let m = client.metadata(&[]).await.unwrap();
    assert!(
        m.topics.iter().all(|t| t.name != "__consumer_offsets"),
        "the offsets topic was created with fewer replicas than configured"
    );

    eprintln!("--- broker 3 returns: the topic is created with three replicas");
    cluster.restart(3);
    cluster.wait_alive(3, Duration::from_secs(60)).await;
    find_coordinator(&client, "rf").await;
    // Describe answers configs from the answering broker's applied state: wait until it has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = client.admin().describe_topics(&["__consumer_offsets".to_string()]).await.unwrap();
        if d[0].configs.get("min.insync.replicas").map(String::as_str) == Some("2") {
            break d;
        }
        assert!(Instant::now() < deadline, "min.insync.replicas is not 2: {:?}", d[0].configs);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(d[0].replication_factor, 3);
    assert!(d[0].partitions.iter().all(|p| p.replicas.len() == 3), "{:?}", d[0].partitions);
    assert!(cluster.panics().is_empty());
}
