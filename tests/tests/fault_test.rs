//! Fault tests (RELIABILITY.md T1, T3, T4, T5, T6, T9, T10, T16, T17): three `siltd` processes, a topic with
//! 3 partitions, RF 3, `min.insync.replicas=2`, `durability=fsync`, under a load of two `acks=all`
//! producers and one assign-mode consumer. Each test injects its faults, heals, and checks the
//! history (C1 no acknowledged record lost, C2 one value per offset, C4 readers only go forward
//! and acknowledged order holds, C5 nothing read that was not sent), that the replicas are
//! byte-identical below the HW (C6), and that no broker panicked (C9). The tests run one at a
//! time (they share the two cores).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silt_client::{Acks, ProducerConfig, ProducerRecord};
use silt_proto::v1;
use silt_tests::cluster::{ClusterSettings, ProcessCluster, describe_on};
use silt_tests::history::{History, Outcome, SendOp};
use silt_tests::workload::{LoadSpec, Workload, fault_topic_configs, final_read, replica_bytes};

const TOPIC: &str = "faults";
const PARTITIONS: u32 = 3;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn setup() -> (ProcessCluster, Workload) {
    let cluster =
        ProcessCluster::start(ClusterSettings::new(env!("CARGO_BIN_EXE_siltd-under-test"))).await;
    let client = cluster.client().await;
    client
        .admin()
        .create_topic(TOPIC, PARTITIONS, 3, fault_topic_configs())
        .await
        .expect("topic created");
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(30), "a leader", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    let load =
        Workload::start(cluster.bootstrap(), LoadSpec::standard(TOPIC, PARTITIONS, 10_000)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    (cluster, load)
}

/// Heals everything, stops the load, and checks C1-C6 and C9. Returns the history.
async fn finish(
    mut cluster: ProcessCluster,
    load: Workload,
    name: &str,
) -> std::sync::Arc<History> {
    for id in 1..=3 {
        cluster.isolate(id, false);
        if !cluster.brokers[&id].is_running() {
            cluster.restart(id);
        }
    }
    for id in 1..=3 {
        cluster.resume(id);
    }
    cluster.wait_alive(3, Duration::from_secs(60)).await;
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(60), "the full ISR back", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    // Recovery phase under load, then stop it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = load.stop().await;
    let fin = final_read(&cluster.bootstrap(), TOPIC, PARTITIONS).await;
    let report = history.check(&fin);
    println!("[{name}] {}", report.summary());
    assert!(report.ok(), "[{name}] checker failed:\n{report}\nlogs:\n{}", cluster.logs());
    assert!(report.acked > 100, "[{name}] too few acknowledged sends: {}", report.summary());

    // C6: wait until every replica reports the leader's HW, then compare the stopped logs.
    let mut hws = BTreeMap::new();
    for p in 0..PARTITIONS {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for b in cluster.brokers.values() {
                let hw = describe_on(&b.addr, TOPIC)
                    .await
                    .and_then(|t| t.partitions.get(p as usize).map(|x| x.high_watermark));
                seen.push(hw.unwrap_or(-1));
            }
            if seen.iter().all(|h| *h >= 0 && *h == seen[0]) {
                hws.insert(p, seen[0] as u64);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{name}] replicas of {p} disagree on the HW: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let panics = cluster.panics();
    assert!(panics.is_empty(), "[{name}] a broker panicked: {panics:?}");
    for id in 1..=3 {
        assert_eq!(cluster.sigterm(id), Some(0), "[{name}] broker {id} exits cleanly");
    }
    for (p, hw) in hws {
        let copies: Vec<Vec<u8>> = cluster
            .brokers
            .values()
            .map(|b| {
                replica_bytes(&b.dir.join(format!("{TOPIC}-{p}")), hw).expect("replica readable")
            })
            .collect();
        assert!(
            copies.iter().all(|c| *c == copies[0]),
            "[{name}] replicas of partition {p} differ below the HW {hw}"
        );
    }
    history
}

/// Sends one record to `partition` until one is acknowledged; records every probe in the
/// history. Returns when the first acknowledgement came.
async fn probe_until_acked(
    cluster: &ProcessCluster,
    history: &History,
    partition: u32,
    tag: &str,
) -> Instant {
    let client = cluster.client().await;
    let producer = client.producer(ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        delivery_timeout_ms: 2_000,
        request_timeout_ms: 1_500,
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        assert!(Instant::now() < deadline, "no acks=all produce succeeded within 60 s");
        let value = format!("probe-{tag}-{i}");
        let invoked = Instant::now();
        let rec = ProducerRecord::new(TOPIC, value.clone()).with_partition(partition);
        let outcome = match producer.send(rec).await {
            Ok(f) => match f.await {
                Ok(m) => Outcome::Acked { offset: m.offset },
                Err(e) if e.definitely_not_stored => Outcome::Failed,
                Err(_) => Outcome::Unknown,
            },
            Err(_) => Outcome::Failed,
        };
        let completed = Instant::now();
        history.record_send(SendOp { value, partition, invoked, completed, outcome });
        if matches!(outcome, Outcome::Acked { .. }) {
            return completed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

fn others(leader: u64) -> Vec<u64> {
    (1..=3).filter(|b| *b != leader).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_leader_killed_five_times_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup().await;
    let probes = History::default();
    let mut failovers = Vec::new();
    for round in 0..5 {
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
        let acked = probe_until_acked(&cluster, &probes, 0, &format!("t1-{round}")).await;
        let took = acked - killed;
        println!(
            "[t1] round {round}: killed {leader} (epoch {epoch}); {new_leader} leads epoch {new_epoch}; first acks=all after {took:?}"
        );
        failovers.push(took);
        cluster.restart(leader);
    }
    failovers.sort();
    println!(
        "[t1] failover (kill -9 -> first acks=all ok) median {:?}, all {failovers:?}",
        failovers[2]
    );
    assert!(
        failovers.iter().all(|d| *d < Duration::from_secs(20)),
        "a failover hung: {failovers:?}"
    );
    for s in probes.sends() {
        load.history.record_send(s);
    }
    finish(cluster, load, "t1").await;
}

/// A leader killed and back within its session, five times (issue 13): the new process is a
/// new incarnation, so its registration moves the leaderships it held (leader epoch bumped) and
/// takes it out of the ISRs; it rejoins only by fetching from the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_leader_restarted_within_its_session_never_leads_on_the_old_incarnation() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup().await;
    let probes = History::default();
    let mut failovers = Vec::new();
    for round in 0..5 {
        let (leader, epoch, _) = cluster
            .wait_partition(TOPIC, 0, Duration::from_secs(60), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
        tracing::info!(
            "--- round {round}: kill -9 the leader {leader} of p0 and restart it at once"
        );
        let killed = Instant::now();
        cluster.kill9(leader);
        cluster.restart(leader);
        // Well inside the 3 s session: only the new incarnation's registration moves p0.
        let (new_leader, new_epoch, _) = cluster
            .wait_partition(
                TOPIC,
                0,
                Duration::from_secs(15),
                "a leader epoch past the old incarnation's",
                |_, e, _| e > epoch,
            )
            .await;
        let acked = probe_until_acked(&cluster, &probes, 0, &format!("t16-{round}")).await;
        let took = acked - killed;
        println!(
            "[t16] round {round}: restarted {leader} (epoch {epoch}); {new_leader} leads epoch {new_epoch}; first acks=all after {took:?}"
        );
        failovers.push(took);
    }
    failovers.sort();
    println!(
        "[t16] failover (kill -9 + immediate restart -> first acks=all ok) median {:?}, all {failovers:?}",
        failovers[2]
    );
    for s in probes.sends() {
        load.history.record_send(s);
    }
    finish(cluster, load, "t16").await;
}

/// One raw single-record produce straight to `addr` (no client retries, no redirection).
async fn raw_produce(
    addr: &str,
    partition: u32,
    acks: v1::Acks,
    value: &str,
) -> Result<v1::PartitionProduceResponse, String> {
    let mut raw = v1::data_client::DataClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| e.to_string())?;
    let mut b = silt_core::batch::BatchBuilder::new();
    b.push(&silt_core::batch::Record::value(value.to_string(), 0));
    let req = v1::ProduceRequest {
        acks: acks as i32,
        timeout_ms: 2_000,
        topics: vec![v1::TopicProduceData {
            topic: TOPIC.into(),
            partitions: vec![v1::PartitionProduceData {
                partition,
                data: Some(v1::partition_produce_data::Data::RecordBatches(
                    b.build().expect("a batch"),
                )),
            }],
        }],
    };
    match tokio::time::timeout(Duration::from_secs(5), raw.produce(req)).await {
        Ok(Ok(resp)) => resp
            .into_inner()
            .topics
            .pop()
            .and_then(|mut t| t.partitions.pop())
            .ok_or_else(|| "empty answer".to_string()),
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The zombie leader (issue 13): a leader killed, deposed (its session expired, leadership
/// moved), then restarted while it cannot hear the quorum (inbound links cut), so its image is
/// the one replayed from its own log, naming it leader. Produced to directly from the moment
/// its port opens, it must acknowledge nothing: every answer is BROKER_NOT_AVAILABLE until its
/// image holds its new registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t17_restarted_deposed_leader_acknowledges_nothing_from_a_stale_image() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup().await;
    let controller = cluster.controller().await.expect("a controller");
    let mut target = None;
    for p in 0..PARTITIONS {
        let (l, e, _) = cluster
            .wait_partition(TOPIC, p, Duration::from_secs(30), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
        if l != controller {
            target = Some((p, l, e));
            break;
        }
    }
    let (partition, leader, epoch) = target.expect("a partition led by a non-controller");
    tracing::info!("--- kill -9 broker {leader}, leader of p{partition}; wait until deposed");
    cluster.kill9(leader);
    cluster
        .wait_partition(TOPIC, partition, Duration::from_secs(30), "a new leader", |l, e, _| {
            l != leader && e > epoch
        })
        .await;
    tracing::info!("--- restart it unable to hear the quorum; produce to it directly");
    cluster.cut_inbound(leader, true);
    cluster.restart(leader);
    let addr = cluster.brokers[&leader].addr.clone();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(6);
    let mut i = 0;
    while Instant::now() < until {
        for acks in [v1::Acks::Leader, v1::Acks::All] {
            i += 1;
            let value = format!("t17-{i}");
            let invoked = Instant::now();
            let r = raw_produce(&addr, partition, acks, &value).await;
            let outcome = match &r {
                Ok(p) if p.error_code() == v1::ErrorCode::None => {
                    Outcome::Acked { offset: p.base_offset }
                }
                Ok(p) if p.error_code().definitely_not_stored() => Outcome::Failed,
                Ok(_) => Outcome::Unknown,
                Err(_) => Outcome::Failed, // not connected: nothing was sent
            };
            let key = match &r {
                Ok(p) => format!("{:?}", p.error_code()),
                Err(_) => "not reachable".into(),
            };
            *answers.entry(key).or_default() += 1;
            load.history.record_send(SendOp {
                value,
                partition,
                invoked,
                completed: Instant::now(),
                outcome,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("[t17] answers of the restarted broker {leader} for p{partition}: {answers:?}");
    assert!(
        cluster.log_of(leader).contains("registered with the cluster"),
        "the scenario needs the restarted broker registered"
    );
    assert!(!answers.contains_key("None"), "acknowledged from a stale image: {answers:?}");
    assert!(
        answers.keys().all(|k| k == "BrokerNotAvailable" || k == "not reachable"),
        "only BROKER_NOT_AVAILABLE while catching up: {answers:?}"
    );
    assert!(answers.contains_key("BrokerNotAvailable"), "{answers:?}");
    tracing::info!("--- heal: it catches up and redirects to the real leader");
    cluster.cut_inbound(leader, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 0.. {
        let value = format!("t17-probe-{n}");
        let r = raw_produce(&addr, partition, v1::Acks::All, &value).await;
        if let Ok(p) = &r
            && p.error_code() == v1::ErrorCode::NotLeader
        {
            break;
        }
        if let Ok(p) = &r {
            let outcome = if p.error_code() == v1::ErrorCode::None {
                Outcome::Acked { offset: p.base_offset }
            } else if p.error_code().definitely_not_stored() {
                Outcome::Failed
            } else {
                Outcome::Unknown
            };
            let now = Instant::now();
            load.history.record_send(SendOp {
                value,
                partition,
                invoked: now,
                completed: now,
                outcome,
            });
            if outcome != Outcome::Failed && outcome != Outcome::Unknown {
                break; // caught up and leading again: a real acknowledgement
            }
        }
        assert!(Instant::now() < deadline, "the restarted broker never caught up: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    finish(cluster, load, "t17").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_followers_killed_one_then_two_acknowledge_nothing_below_min_isr() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup().await;
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
    let (cluster, load) = setup().await;
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
    let (mut cluster, load) = setup().await;
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
    let (mut cluster, load) = setup().await;
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
    let (mut cluster, load) = setup().await;
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

/// Flips one byte halfway through the written part of the newest segment in `dir`.
fn corrupt_active_segment(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("partition dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let path = logs.pop().expect("a segment");
    let mut bytes = std::fs::read(&path).expect("segment readable");
    let end = bytes.iter().rposition(|b| *b != 0).expect("the segment has data");
    let at = end / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&path, &bytes).expect("segment written");
    (path, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_corrupted_follower_leaves_the_isr_and_recopies_from_the_leader() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, load) = setup().await;
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
