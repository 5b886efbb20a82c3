//! `__consumer_offsets` (and `__transaction_state`) stay bounded by log compaction: with small
//! segments, a stream of commits leaves the cleaner each key's latest record, and a restarted
//! broker reloads exactly the last committed offsets from what is left. A member also
//! works as a stream of records. A member that gave a partition up cannot overwrite the offset its
//! new owner committed.

use std::time::{Duration, Instant};

use silt_broker::{Broker, BrokerConfig};
use silt_client::{Client, CommitMode, GroupConfig, GroupConsumer, TopicPartition};
use silt_proto::v1::ErrorCode;

struct Running {
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path) -> Running {
    let config = BrokerConfig {
        offsets_topic_partitions: 1,
        offsets_topic_segment_bytes: 64 * 1024,
        log_cleaner_backoff_ms: 100,
        ..BrokerConfig::for_test(dir)
    };
    let broker = Broker::bind(config).await.expect("broker binds");
    let addr = broker.local_addr().to_string();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = broker
            .run(async {
                let _ = rx.await;
            })
            .await;
    });
    Running { addr, stop, task }
}

/// Bytes of the `.log` files of `topic`-0 under `dir` (the active one is preallocated to its
/// 64 KiB), and how many there are.
fn log_files(dir: &std::path::Path, topic: &str) -> (u64, usize) {
    let logs: Vec<u64> = std::fs::read_dir(dir.join(format!("{topic}-0")))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    (logs.iter().sum(), logs.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_commits_are_compacted_away_and_the_last_ones_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let b = start(tmp.path()).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    client.admin().create_topic("t", 4, 1, Default::default()).await.unwrap();
    let mut config = GroupConfig::new("g");
    config.commit = CommitMode::Manual;
    let consumer = client.subscribe(config, vec!["t".into()]).await.unwrap();
    let committer = consumer.committer();
    // ~130 bytes per commit record: 3,000 commits fill several 64 KiB segments.
    for i in 0..3_000i64 {
        let tp = TopicPartition { topic: "t".into(), partition: (i % 4) as u32 };
        committer.commit([(tp, i)]).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // ~390 KB written; compacted, the sealed part holds a group record and four offsets.
    loop {
        let (bytes, files) = log_files(tmp.path(), "__consumer_offsets");
        if bytes < 160 * 1024 && files <= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets not compacted: {bytes} B, {files} files"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = client.admin().group_offsets("g").await.unwrap();
    let want: Vec<i64> = (0..4).map(|p| 2_996 + p).collect();
    assert_eq!(before.values().copied().collect::<Vec<_>>(), want);
    drop(consumer);
    let _ = b.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), b.task).await;

    // Restart: the coordinator reloads from the trimmed log.
    let b = start(tmp.path()).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let after = client.admin().group_offsets("g").await.unwrap();
    assert_eq!(after, before, "the last commits survive compaction and a restart");
    let d = client.admin().describe_group("g").await.unwrap();
    assert_eq!(d.offsets.len(), 4);
    let _ = b.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), b.task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_as_a_stream_yields_every_record_once() {
    use futures_util::StreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let b = start(tmp.path()).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    client.admin().create_topic("s", 3, 1, Default::default()).await.unwrap();
    let producer = client.producer(silt_client::ProducerConfig::default());
    for i in 0..30 {
        let r = silt_client::ProducerRecord::new("s", format!("v{i}")).with_key(format!("k{i}"));
        producer.send(r).await.unwrap();
    }
    producer.close().await.unwrap();
    let consumer = client.subscribe(GroupConfig::new("streamed"), vec!["s".into()]).await.unwrap();
    let got: Vec<_> = tokio::time::timeout(
        Duration::from_secs(30),
        consumer.into_stream().take(30).collect::<Vec<_>>(),
    )
    .await
    .expect("30 records within 30 s");
    let mut values: Vec<String> = got
        .into_iter()
        .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);
    let _ = b.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), b.task).await;
}

/// Polls both members until each owns `n` partitions (bounded).
async fn settle(a: &mut GroupConsumer, b: &mut GroupConsumer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.assignment().len() != n || b.assignment().len() != n {
        assert!(Instant::now() < deadline, "no split: {:?} {:?}", a.assignment(), b.assignment());
        a.poll().await.unwrap();
        b.poll().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_member_cannot_overwrite_the_new_owners_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let b = start(tmp.path()).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    client.admin().create_topic("r", 2, 1, Default::default()).await.unwrap();
    let mut config = GroupConfig::new("rg");
    config.commit = CommitMode::Manual;
    config.fetch.max_wait_ms = 100;
    tracing::info!("--- A owns both partitions");
    let mut a = client.subscribe(config.clone(), vec!["r".into()]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.assignment().len() != 2 {
        assert!(Instant::now() < deadline, "A never got both partitions");
        a.poll().await.unwrap();
    }
    tracing::info!("--- B joins; one partition moves to it");
    let mut bm = client.subscribe(config, vec!["r".into()]).await.unwrap();
    settle(&mut a, &mut bm, 1).await;
    let moved = bm.assignment()[0].clone();
    let kept = a.assignment()[0].clone();
    assert_ne!(moved, kept);
    tracing::info!("--- B commits 100; A's late commit of 50 is refused");
    bm.committer().commit([(moved.clone(), 100)]).await.unwrap();
    let a_committer = a.committer();
    let e = a_committer.commit([(moved.clone(), 50)]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::StaleMemberEpoch), "{e}");
    // Beside a partition A owns: the whole commit is refused.
    let e = a_committer.commit([(kept.clone(), 5), (moved.clone(), 50)]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::StaleMemberEpoch), "{e}");
    // An async commit of it is dropped by the client (nothing sent, nothing refused).
    a_committer.commit_async([(moved.clone(), 40)]).await.unwrap().unwrap();
    let offsets = client.admin().group_offsets("rg").await.unwrap();
    assert_eq!(offsets.get(&moved), Some(&100), "the new owner's commit stays");
    assert_eq!(offsets.get(&kept), None, "nothing of the refused commit was written");
    // A still commits what it owns.
    a_committer.commit([(kept.clone(), 7)]).await.unwrap();
    assert_eq!(client.admin().group_offsets("rg").await.unwrap().get(&kept), Some(&7));
    drop((a, bm));
    let _ = b.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), b.task).await;
}

/// `__transaction_state` is kept bounded the same way: with small segments, a stream of
/// transactions leaves the cleaner each id's latest record, and a restarted broker reloads the
/// same state from what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_transaction_states_are_compacted_away_and_the_last_survives_a_restart() {
    use silt_client::{ProducerRecord, TransactionalConfig, TransactionalProducer};
    let tmp = tempfile::tempdir().unwrap();
    let b = start(tmp.path()).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    client.admin().create_topic("t", 1, 1, Default::default()).await.unwrap();
    let mut p =
        TransactionalProducer::new(&client, TransactionalConfig::new("bounded")).await.unwrap();
    // Three state records per transaction (Ongoing, PrepareCommit, CompleteCommit), about
    // 200 bytes each: 600 transactions fill several 64 KiB segments.
    for i in 0..600 {
        p.begin().unwrap();
        p.send(ProducerRecord::new("t", format!("v{i}"))).await.unwrap();
        p.commit().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // ~360 KB written; compacted, the sealed part holds one record for the id.
    loop {
        let (bytes, files) = log_files(tmp.path(), "__transaction_state");
        if bytes < 160 * 1024 && files <= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "__transaction_state not compacted: {bytes} B, {files} files"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = client.admin().describe_transaction("bounded").await.unwrap();
    assert_eq!(before.state, "CompleteCommit");
    drop(p);
    let _ = b.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), b.task).await;

    let b = start(tmp.path()).await;
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let after = client.admin().describe_transaction("bounded").await.unwrap();
    assert_eq!(after, before, "the last state survives compaction and a restart");
    // The id carries on from there: the next incarnation gets the next epoch.
    let p = TransactionalProducer::new(&client, TransactionalConfig::new("bounded")).await.unwrap();
    assert_eq!(p.producer_id_and_epoch(), (before.producer_id, before.producer_epoch as i16 + 1));
    let _ = b.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), b.task).await;
}
