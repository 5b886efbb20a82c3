//! Fault tests (RELIABILITY.md T1, T3, T4, T5, T6, T9, T10, T19, a failed fsync, and a leader
//! that dies between its append and its answer to an idempotent producer): three
//! `siltd` processes, a topic with 3 partitions, RF 3, `min.insync.replicas=2`,
//! `durability=fsync`, under a load of two `acks=all` producers and one assign-mode consumer.
//! Each test injects its faults, heals, and checks the history (C1 no acknowledged record lost,
//! C2 one value per offset, C4 readers only go forward and acknowledged order holds, C5 nothing
//! read that was not sent), that the replicas are byte-identical below the HW (C6), and that no
//! broker panicked (C9), C3 (no record twice) included. T1 also runs with mutual TLS everywhere,
//! and a single TLS broker has its certificate rotated by SIGHUP. The tests run one at a time
//! (they share the two cores, and a TLS cluster sets the harness's client TLS).

use std::time::{Duration, Instant};

use silt_client::{Acks, ProducerConfig, ProducerRecord};
use silt_proto::v1;
use silt_tests::cluster::describe_on;
use silt_tests::faults::*;
use silt_tests::history::{History, Outcome, SendOp};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_leader_killed_five_times_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (cluster, load) = setup(SILTD).await;
    leader_killed(cluster, load, 5, "t1").await;
}

/// T1 with TLS and authentication everywhere (RELIABILITY T15's "T1 re-run with mTLS", issue
/// 17): clients present certificates to the client listeners and every request is authorized by
/// ACLs (`auth`; the harness's principal has ACLs, not super-user rights), brokers replicate and
/// run Raft over mutual TLS, and the leader of p0 is killed three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_with_mutual_tls_everywhere_leader_killed_three_times_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let settings = silt_tests::cluster::ClusterSettings {
        tls: true,
        ..silt_tests::cluster::ClusterSettings::new(SILTD)
    };
    let (cluster, load) =
        setup_cluster(settings, silt_tests::workload::fault_topic_configs()).await;
    leader_killed(cluster, load, 3, "t1-mtls").await;
}

/// Kills the leader of p0 `rounds` times (waiting for a full ISR before each), measuring each
/// failover until the first `acks=all` acknowledgement, then checks everything.
async fn leader_killed(
    mut cluster: silt_tests::cluster::ProcessCluster,
    load: silt_tests::workload::Workload,
    rounds: usize,
    name: &str,
) {
    let probes = History::default();
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let (leader, epoch, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(60), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
        let killed = Instant::now();
        cluster.kill9(leader);
        let (new_leader, new_epoch, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(30), "a new leader", |l, e, _| {
                l != leader && e > epoch
            })
            .await;
        let acked = probe_until_acked(&cluster, &probes, 0, &format!("{name}-{round}")).await;
        let took = acked - killed;
        println!(
            "[{name}] round {round}: killed {leader} (epoch {epoch}); {new_leader} leads epoch {new_epoch}; first acks=all after {took:?}"
        );
        failovers.push(took);
        cluster.restart(leader);
    }
    failovers.sort();
    println!(
        "[{name}] failover (kill -9 -> first acks=all ok) median {:?}, all {failovers:?}",
        failovers[rounds / 2]
    );
    assert!(
        failovers.iter().all(|d| *d < Duration::from_secs(20)),
        "a failover hung: {failovers:?}"
    );
    for s in probes.sends() {
        load.history.record_send(s);
    }
    finish(cluster, load, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_followers_killed_one_then_two_acknowledge_nothing_below_min_isr() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    let (leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    let followers = others(leader);
    cluster.kill9(followers[0]);
    // One follower down: the ISR shrinks to 2 and acks=all goes on.
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "ISR of 2", |_, _, isr| {
            !isr.contains(&followers[0])
        })
        .await;
    let before = load.history.acked();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(load.history.acked() > before, "acks=all keeps working with 2 in-sync replicas");

    cluster.kill9(followers[1]);
    // Past the lag limit the leader counts only itself: every acks=all send must fail.
    tokio::time::sleep(Duration::from_millis(cluster.settings.replica_lag_time_max_ms + 1_000))
        .await;
    let client = cluster.client().await;
    let producer = client.producer(ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        delivery_timeout_ms: 3_000,
        request_timeout_ms: 2_000,
        ..Default::default()
    });
    let mut window = Vec::new();
    for i in 0..8 {
        let value = format!("t3-window-{i}");
        let invoked = Instant::now();
        let rec = ProducerRecord::new(TOPIC, value.clone()).with_partition(0);
        let r = producer.send(rec).await.expect("queued").await;
        let outcome = match &r {
            Ok(m) => Outcome::Acked { offset: m.offset },
            Err(e) if e.definitely_not_stored => Outcome::Failed,
            Err(_) => Outcome::Unknown,
        };
        window.push(outcome);
        load.history.record_send(SendOp {
            value,
            partition: 0,
            invoked,
            completed: Instant::now(),
            outcome,
        });
    }
    assert!(
        window.iter().all(|o| !matches!(o, Outcome::Acked { .. })),
        "with one in-sync replica nothing may be acknowledged: {window:?}"
    );
    let definite = window.iter().filter(|o| **o == Outcome::Failed).count();
    println!(
        "[t3] with ISR < 2: {} sends, {definite} definitely failed, none acknowledged",
        window.len()
    );
    // The data stays readable from the surviving leader.
    let hw = describe_on(&cluster.brokers[&leader].addr, TOPIC)
        .await
        .expect("leader answers")
        .partitions[0]
        .high_watermark;
    assert!(hw > 0, "the leader still serves its committed data");
    // Restart both; the ISR comes back (checked in finish, within 60 s).
    let restarted = Instant::now();
    cluster.restart(followers[0]);
    cluster.restart(followers[1]);
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(60), "the ISR back to 3", |_, _, isr| {
            isr.len() == 3
        })
        .await;
    println!("[t3] ISR back to 3 {:?} after the restarts", restarted.elapsed());
    finish(cluster, load, "t3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_isolated_leader_acknowledges_nothing_and_is_replaced() {
    let _serial = SERIAL.lock().await;
    let (cluster, load) = setup(SILTD).await;
    let (leader, epoch, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    cluster.isolate(leader, true);
    let isolated = Instant::now();
    // Clients still reach the isolated leader: it must not acknowledge acks=all writes.
    let mut raw =
        v1::data_client::DataClient::connect(format!("http://{}", cluster.brokers[&leader].addr))
            .await
            .expect("client reaches the isolated leader");
    let mut codes = Vec::new();
    for i in 0..4 {
        let mut b = silt_core::batch::BatchBuilder::new();
        b.push(&silt_core::batch::Record::value(format!("t4-isolated-{i}"), 0));
        let req = v1::ProduceRequest {
            acks: v1::Acks::All as i32,
            timeout_ms: 2_000,
            topics: vec![v1::TopicProduceData {
                topic: TOPIC.into(),
                partitions: vec![v1::PartitionProduceData {
                    partition: 0,
                    data: Some(v1::partition_produce_data::Data::RecordBatches(
                        b.build().expect("a batch"),
                    )),
                }],
            }],
            ..Default::default()
        };
        let invoked = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), raw.produce(req)).await;
        let code = match r {
            Ok(Ok(resp)) => resp.into_inner().topics[0].partitions[0].error_code(),
            _ => v1::ErrorCode::RequestTimedOut,
        };
        assert_ne!(code, v1::ErrorCode::None, "the isolated leader acknowledged an acks=all write");
        let outcome = if code.definitely_not_stored() { Outcome::Failed } else { Outcome::Unknown };
        load.history.record_send(SendOp {
            value: format!("t4-isolated-{i}"),
            partition: 0,
            invoked,
            completed: Instant::now(),
            outcome,
        });
        codes.push(code);
    }
    let (new_leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a new leader", |l, e, _| {
            l != leader && e > epoch
        })
        .await;
    println!(
        "[t4] isolated leader {leader} answered {codes:?}; {new_leader} took over {:?} after the cut",
        isolated.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    finish(cluster, load, "t4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t5_paused_leader_is_fenced_and_rejoins_without_conflicts() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    let (leader, epoch, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    cluster.pause(leader);
    let paused = Instant::now();
    let (new_leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a new leader", |l, e, _| {
            l != leader && e > epoch
        })
        .await;
    println!("[t5] paused {leader}; {new_leader} leads after {:?}", paused.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.resume(leader);
    tokio::time::sleep(Duration::from_secs(4)).await;
    finish(cluster, load, "t5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t6_new_leader_killed_right_after_election_leaves_no_divergence() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    for round in 0..2 {
        let (first, epoch, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(60), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
        cluster.kill9(first);
        let (second, _, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(30), "a new leader", |l, e, _| {
                l != first && e > epoch
            })
            .await;
        cluster.kill9(second);
        println!(
            "[t6] round {round}: killed {first}, then its successor {second} right after the election"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.restart(first);
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.restart(second);
    }
    finish(cluster, load, "t6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t9_all_brokers_killed_at_once_lose_no_acknowledged_record() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = load.history.acked();
    for id in 1..=3 {
        cluster.kill9(id);
    }
    println!("[t9] killed all three brokers after {before} acknowledged sends");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in 1..=3 {
        cluster.restart(id);
    }
    finish(cluster, load, "t9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_corrupted_follower_leaves_the_isr_and_recopies_from_the_leader() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    let follower = others(leader)[0];
    cluster.kill9(follower);
    let (path, at) =
        corrupt_active_segment(&cluster.brokers[&follower].dir.join(format!("{TOPIC}-0")));
    println!("[t10] flipped a byte at {at} of {} on follower {follower}", path.display());
    cluster.restart(follower);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.log_of(follower).contains("recovery cut data from this replica") {
        assert!(
            Instant::now() < deadline,
            "the damaged replica did not report itself:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(60), "the ISR back to 3", |_, _, isr| {
            isr.len() == 3
        })
        .await;
    println!("[t10] follower {follower} cut its log at the damage, re-copied and rejoined the ISR");
    finish(cluster, load, "t10").await;
}

/// T19 (damage on the leader), in a sealed segment: a byte rots under a live leader. The first read that
/// meets it is refused (never served), the leader hands leadership to an in-sync follower, cuts
/// its log at the damage and copies the rest back, so the replicas end byte-identical (C6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t19_damage_on_the_leader_hands_over_and_recopies() {
    let _serial = SERIAL.lock().await;
    let mut configs = silt_tests::workload::fault_topic_configs();
    configs.insert("segment.bytes".into(), (256 * 1024).to_string());
    configs.insert("max.message.bytes".into(), (128 * 1024).to_string());
    let (cluster, load) = setup_with(SILTD, configs).await;
    let (leader, epoch, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    let dir = cluster.brokers[&leader].dir.join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while segments(&dir).len() < 2 {
        assert!(Instant::now() < deadline, "the log never rolled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sealed = segments(&dir).swap_remove(0);
    // Inside the records of the first batch: covered by its CRC, not by its framing.
    flip_byte_in_place(&sealed, 64);
    println!("[t19] flipped byte 64 of {} on leader {leader}", sealed.display());
    let addr = cluster.brokers[&leader].addr.clone();
    let (code, bytes) = raw_fetch(&addr, 0, 0).await.expect("the leader answers");
    assert_eq!((code, bytes), (v1::ErrorCode::StorageError, 0), "damaged bytes are never served");
    let (new_leader, _, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "leadership moved", |l, e, _| {
            l != leader && e > epoch
        })
        .await;
    let new_addr = cluster.brokers[&new_leader].addr.clone();
    // The metadata may name the new leader a moment before that broker has applied it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, bytes) = loop {
        let (code, bytes) = raw_fetch(&new_addr, 0, 0).await.expect("the new leader answers");
        if code != v1::ErrorCode::NotLeader || Instant::now() > deadline {
            break (code, bytes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code == v1::ErrorCode::None && bytes > 0, "the new leader serves offset 0: {code:?}");
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(60), "the ISR back to 3", |_, _, isr| {
            isr.len() == 3
        })
        .await;
    assert!(
        cluster.log_of(leader).contains("cutting the damaged log"),
        "the old leader cut its log"
    );
    println!("[t19] {leader} handed over to {new_leader}, cut its log and rejoined the ISR");
    finish(cluster, load, "t19").await;
}

/// Issue 15: the leader of partition 0 dies after committing an acks=all produce and before
/// answering it, five times. The idempotent producers retry the unanswered batches at the new
/// leader, which finds them in its log (the followers rebuild the producers' state from what
/// they replicate) and answers their original offsets: no record appears twice (C3) and none
/// is lost (C1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_dies_between_append_and_answer_and_the_retries_are_not_duplicated() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    let mut deduplicated = 0;
    for round in 0..5 {
        let (leader, epoch, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(60), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
        let trigger = cluster.brokers[&leader]
            .dir
            .join(format!("{TOPIC}-0"))
            .join(silt_broker::CRASH_BEFORE_ANSWER_FILE);
        let dedupes = |c: &silt_tests::cluster::ProcessCluster, id: u64| {
            c.log_of(id).matches("a retried batch is in the log already").count()
        };
        let before: std::collections::BTreeMap<u64, usize> =
            (1..=3).map(|id| (id, dedupes(&cluster, id))).collect();
        std::fs::write(&trigger, b"").expect("trigger written");
        assert!(
            cluster.wait_exited(leader, Duration::from_secs(30)),
            "[dedupe] leader {leader} never answered a produce to p0"
        );
        std::fs::remove_file(&trigger).expect("trigger removed");
        let (new_leader, _, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(30), "a new leader", |l, e, _| {
                l != leader && e > epoch
            })
            .await;
        // The producers' retries reach the new leader within their backoff.
        let deadline = Instant::now() + Duration::from_secs(20);
        let seen = loop {
            let n = dedupes(&cluster, new_leader) - before[&new_leader];
            if n > 0 || Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "[dedupe] round {round}: {leader} died before answering; {new_leader} answered {seen} retried batch(es) from its log"
        );
        deduplicated += usize::from(seen > 0);
        cluster.restart(leader);
    }
    // Each round's unanswered batches were committed, so their retries are duplicates at the
    // new leader.
    assert_eq!(deduplicated, 5, "[dedupe] rounds whose retries the new leader recognised");
    finish(cluster, load, "dedupe").await;
}

/// A failed fsync is final (fsyncgate): the leader's syncs of partition 0 start failing with
/// EIO; its log goes offline, it is reported damaged, leadership and the ISR move to the
/// followers, and nothing appended before the failure is acknowledged by a later sync (C1). A
/// restart with the disk healthy again reopens the log and the replica rejoins (C6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsyncgate_a_failed_sync_takes_the_replica_offline_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup(SILTD).await;
    let (leader, epoch, _) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "a leader", |_, _, isr| isr.len() == 3)
        .await;
    let trigger =
        cluster.brokers[&leader].dir.join(format!("{TOPIC}-0")).join(silt_storage::FAIL_SYNC_FILE);
    std::fs::write(&trigger, b"").expect("trigger written");
    println!("[fsync] syncs of {TOPIC}-0 fail with EIO on leader {leader}");
    let (new_leader, _, isr) = cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(30), "leadership moved", |l, e, isr| {
            l != leader && e > epoch && !isr.contains(&leader)
        })
        .await;
    let log = cluster.log_of(leader);
    assert!(log.contains("fsync failed: the log goes offline"), "the log went offline:\n{log}");
    assert!(log.contains("the log is offline after a failed sync"), "it reported itself:\n{log}");
    println!("[fsync] {new_leader} leads with ISR {isr:?}");
    // Writes go on with the other two.
    let acked = load.history.acked();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(load.history.acked() > acked, "acks=all goes on without the offline replica");
    std::fs::remove_file(&trigger).expect("trigger removed");
    cluster.kill9(leader);
    cluster.restart(leader);
    cluster
        .wait_partition(TOPIC, 0, Duration::from_secs(60), "the ISR back to 3", |_, _, isr| {
            isr.len() == 3
        })
        .await;
    println!("[fsync] {leader} reopened its log and rejoined the ISR");
    finish(cluster, load, "fsync").await;
}

/// Issue 17: certificate rotation on a running broker. Its certificate and key are replaced by
/// ones from a new CA and it gets SIGHUP: new connections get the new certificate, an open
/// connection keeps producing, clients that trust only the old CA are refused; broken files
/// on the next SIGHUP are logged and the broker keeps serving the last good certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_tls_certificate_and_the_broker_keeps_serving() {
    use silt_client::{Client, ConnectOptions, TlsOptions};
    use silt_tests::cluster::{ClusterSettings, ProcessCluster};
    let _serial = SERIAL.lock().await;
    let settings = ClusterSettings { brokers: 1, tls: true, ..ClusterSettings::new(SILTD) };
    let cluster = ProcessCluster::start(settings).await;
    let old = cluster.client().await;
    old.admin().create_topic("rotate", 1, 1, Default::default()).await.expect("topic");
    let produce = |c: &Client, v: &'static str| {
        let p = c.producer(ProducerConfig { acks: Acks::All, ..Default::default() });
        async move { p.send(ProducerRecord::new("rotate", v)).await.unwrap().await.unwrap().offset }
    };
    assert_eq!(produce(&old, "before").await, 0);

    let root = cluster.root().to_owned();
    std::fs::create_dir_all(root.join("new-ca")).unwrap();
    let new_ca = silt_tests::tls::TestPki::new(&root.join("new-ca"));
    let (cert, key) = new_ca.broker(1);
    std::fs::copy(cert, root.join("broker-1.crt")).unwrap();
    std::fs::copy(key, root.join("broker-1.key")).unwrap();
    cluster.hangup(1);
    // The broker still asks for client certificates from the first CA: the harness's.
    let identity = silt_tests::tls::client_tls().and_then(|t| t.identity);
    let trusting_new = TlsOptions { ca_pem: new_ca.ca_pem.clone().into_bytes(), identity };
    let connect = |tls: TlsOptions| {
        let options = ConnectOptions {
            within: Duration::from_secs(2),
            tls: Some(tls),
            credentials: None,
            ..Default::default()
        };
        let bootstrap = cluster.bootstrap();
        async move { Client::connect_with(&bootstrap, options).await }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let new = loop {
        match connect(trusting_new.clone()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("the new certificate was never served: {e}"),
        }
    };
    assert_eq!(produce(&new, "after").await, 1);
    assert_eq!(produce(&old, "open connection").await, 2, "the open connection keeps working");
    let old_only = silt_tests::tls::client_tls().expect("the harness's TLS");
    assert!(connect(old_only).await.is_err(), "a client trusting only the old CA is refused");
    assert!(cluster.log_of(1).contains("SIGHUP: TLS certificates reloaded"));

    std::fs::write(root.join("broker-1.key"), "not a key").unwrap();
    cluster.hangup(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.log_of(1).contains("TLS reload failed") {
        assert!(Instant::now() < deadline, "the failed reload was not logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = connect(trusting_new).await.expect("the last good certificate is served");
    assert_eq!(produce(&still, "still").await, 3);
    assert!(cluster.panics().is_empty(), "{:?}", cluster.panics());
}
