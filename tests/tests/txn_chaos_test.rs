//! Transactions under failures (issue 18), on one three-broker cluster of `siltd` processes:
//!
//! 1. The transaction coordinator dies between PrepareCommit and the markers (fault injection:
//!    it aborts right after the decision is durable). The producer's retried EndTxn reaches the
//!    new coordinator, which finishes the commit: every record of the transaction is visible to
//!    `read_committed` exactly once.
//! 2. An exactly-once pipeline: a feeder produces numbered records to an input topic while two
//!    processors (one consumer-group member and one transactional producer each, static
//!    membership) consume, copy each record to an output topic and commit their input offsets
//!    in the same transaction. Processors are killed and restarted every two seconds and the
//!    broker coordinating a processor's transactions is killed and restarted in the middle. The
//!    output read with `read_committed` holds every acknowledged input exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_client::{
    Client, ClientError, CommitMode, ConsumerConfig, GroupConfig, GroupConsumer, Isolation,
    ProducerConfig, ProducerRecord, Seek, TopicPartition, TransactionalConfig,
    TransactionalProducer,
};
use silt_proto::v1;
use silt_tests::cluster::{ClusterSettings, ProcessCluster};
use silt_tests::workload::{Feeder, fault_topic_configs};

const COMMIT_TOPIC: &str = "txn-commit";
const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const PARTITIONS: u32 = 3;
const GROUP: &str = "eos";
const PROCESSORS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_complete_once_across_coordinator_crashes_and_processor_kills() {
    let mut settings = ClusterSettings::new(env!("CARGO_BIN_EXE_siltd-under-test"));
    settings.extra = "offsets_topic_partitions = 3\ngroup_heartbeat_interval_ms = 300\n".into();
    let mut cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    for topic in [COMMIT_TOPIC, INPUT, OUTPUT] {
        client.admin().create_topic(topic, PARTITIONS, 3, fault_topic_configs()).await.unwrap();
        for p in 0..PARTITIONS {
            cluster
                .wait_partition(topic, p, Duration::from_secs(30), "a full ISR", |_, _, isr| {
                    isr.len() == 3
                })
                .await;
        }
    }
    coordinator_dies_after_prepare_commit(&mut cluster, &client).await;
    exactly_once_pipeline(&mut cluster, &client).await;
    assert!(cluster.panics().is_empty(), "{:?}", cluster.panics());
}

async fn coordinator_dies_after_prepare_commit(cluster: &mut ProcessCluster, client: &Client) {
    let id = "crash-after-prepare";
    let mut config = TransactionalConfig::new(id);
    config.request_timeout = Duration::from_secs(60);
    let mut p = TransactionalProducer::new(client, config).await.unwrap();
    let coordinator = txn_coordinator(cluster, id).await;
    p.begin().unwrap();
    let values: Vec<String> = (0..30).map(|i| format!("c-{i}")).collect();
    for (i, v) in values.iter().enumerate() {
        let r = ProducerRecord::new(COMMIT_TOPIC, v.clone()).with_partition(i as u32 % PARTITIONS);
        p.send(r).await.unwrap();
    }
    p.flush().await.unwrap();
    let trigger =
        cluster.brokers[&coordinator].dir.join(silt_broker::CRASH_AFTER_PREPARE_COMMIT_FILE);
    std::fs::write(&trigger, b"").unwrap();
    let started = Instant::now();
    let committed = p.commit().await;
    assert!(
        cluster.wait_exited(coordinator, Duration::from_secs(10)),
        "the coordinator (broker {coordinator}) did not crash after PrepareCommit"
    );
    std::fs::remove_file(&trigger).unwrap();
    committed.expect("the retried EndTxn is answered by the new coordinator");
    eprintln!(
        "[prepare-crash] coordinator broker {coordinator} died after PrepareCommit; the commit \
         returned after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    cluster.restart(coordinator);

    // Every record once, no more, no less; the new coordinator recorded the commit complete.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = read_committed(client, COMMIT_TOPIC).await;
        if seen.len() >= values.len() || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut want = values.clone();
    want.sort();
    assert_eq!(seen, want, "the transaction's records, each exactly once");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = client.admin().describe_transaction(id).await.map(|t| t.state);
        if state.as_deref().ok() == Some("CompleteCommit") {
            break;
        }
        assert!(Instant::now() < deadline, "never CompleteCommit: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn exactly_once_pipeline(cluster: &mut ProcessCluster, client: &Client) {
    // The feeder: idempotent acks=all, about 150 records/s, each acknowledged value remembered.
    let feeder =
        Feeder::start(client.clone(), INPUT, ProducerConfig::default(), Duration::from_millis(6));

    let mut processors: Vec<_> =
        (0..PROCESSORS).map(|slot| spawn_processor(client.clone(), slot)).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim_broker = txn_coordinator(cluster, &processor_id(0)).await;
    let mut kills = 0;
    for round in 0..8usize {
        let slot = round % PROCESSORS;
        processors[slot].abort();
        kills += 1;
        processors[slot] = spawn_processor(client.clone(), slot);
        if round == 2 {
            cluster.kill9(victim_broker);
            eprintln!("[eos] killed broker {victim_broker}, coordinator of {}", processor_id(0));
        }
        if round == 5 {
            cluster.restart(victim_broker);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    cluster.wait_alive(3, Duration::from_secs(60)).await;
    let (sent, acked) = feeder.stop().await;

    // Drain: the processors (still running) copy everything acknowledged.
    let deadline = Instant::now() + Duration::from_secs(90);
    let output = loop {
        let output = read_committed(client, OUTPUT).await;
        let distinct: BTreeSet<&String> = output.iter().collect();
        if acked.iter().all(|v| distinct.contains(v)) || Instant::now() > deadline {
            break output;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for p in &processors {
        p.abort();
    }
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &output {
        *copies.entry(v.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked.iter().filter(|v| !copies.contains_key(v.as_str())).collect();
    let twice: Vec<(&&str, &usize)> = copies.iter().filter(|(_, n)| **n > 1).collect();
    let phantoms: Vec<&&str> = copies.keys().filter(|v| !sent.contains(**v)).collect();
    eprintln!(
        "[eos] {kills} processor kills, broker {victim_broker} killed and restarted; {} sent, {} \
         acknowledged, {} in the output (read_committed), {} lost, {} twice, {} phantoms",
        sent.len(),
        acked.len(),
        output.len(),
        lost.len(),
        twice.len(),
        phantoms.len()
    );
    assert!(acked.len() > 500, "the feeder ran: {} acknowledged", acked.len());
    assert!(lost.is_empty(), "{} acknowledged inputs never in the output: {lost:?}", lost.len());
    assert!(twice.is_empty(), "inputs in the output more than once: {twice:?}");
    assert!(phantoms.is_empty(), "output that was never input: {phantoms:?}");
}

fn processor_id(slot: usize) -> String {
    format!("eos-processor-{slot}")
}

/// A processor: one incarnation after another (a failed one is dropped without cleanup, as a
/// crashed process would be; the next fences it and aborts what it left open).
fn spawn_processor(client: Client, slot: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = process(&client, slot).await {
                eprintln!("[eos] processor {slot}: {e}; starting a new incarnation");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}

/// Consume → copy → produce, with the input offsets in the output's transaction.
async fn process(client: &Client, slot: usize) -> Result<(), ClientError> {
    let mut config = TransactionalConfig::new(processor_id(slot));
    config.transaction_timeout_ms = 10_000;
    let mut producer = TransactionalProducer::new(client, config).await?;
    let mut gc = GroupConfig::new(GROUP);
    gc.instance_id = Some(format!("processor-{slot}"));
    gc.commit = CommitMode::Manual;
    gc.reset = Seek::Earliest;
    gc.fetch.isolation = Isolation::ReadCommitted;
    gc.fetch.max_wait_ms = 200;
    let mut consumer = GroupConsumer::subscribe(client, gc, vec![INPUT.into()]).await?;
    loop {
        let records = consumer.poll().await?;
        if records.is_empty() {
            continue;
        }
        producer.begin()?;
        for r in &records {
            let v = r.value.clone().unwrap_or_else(Bytes::new);
            producer.send(ProducerRecord::new(OUTPUT, v.clone()).with_key(v)).await?;
        }
        let offsets = consumer.positions();
        producer.send_offsets(&consumer.group_metadata(), &offsets).await?;
        producer.commit().await?;
    }
}

/// The broker coordinating transactional id `id`.
async fn txn_coordinator(cluster: &ProcessCluster, id: &str) -> u64 {
    let addr = cluster.bootstrap()[0].clone();
    let mut c = v1::transactions_client::TransactionsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = v1::FindTxnCoordinatorRequest { transactional_id: id.into() };
        let r = c.find_coordinator(req).await.unwrap().into_inner();
        if r.error_code == 0 {
            return r.node_id;
        }
        assert!(Instant::now() < deadline, "no coordinator for {id}: {}", r.error_message);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every value of `topic` a `read_committed` consumer reads from the start (until three polls
/// in a row bring nothing), sorted.
async fn read_committed(client: &Client, topic: &str) -> Vec<String> {
    let mut c = client.consumer(ConsumerConfig {
        max_wait_ms: 200,
        isolation: Isolation::ReadCommitted,
        ..Default::default()
    });
    let tps = (0..PARTITIONS).map(|partition| TopicPartition { topic: topic.into(), partition });
    c.assign(tps.collect(), Seek::Earliest).await.unwrap();
    let mut out = Vec::new();
    let mut empty = 0;
    for _ in 0..2_000 {
        let records = match c.poll().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if records.is_empty() {
            empty += 1;
            if empty >= 3 {
                break;
            }
            continue;
        }
        empty = 0;
        out.extend(
            records.into_iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            }),
        );
    }
    out.sort();
    out
}
