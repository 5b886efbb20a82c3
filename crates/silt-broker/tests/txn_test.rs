//! Transactions on one in-process broker (docs/transactions.md): what `read_committed`
//! consumers see of committed, aborted, open and timed-out transactions, zombie fencing, and
//! stragglers of a finished transaction.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestBroker;
use silt_client::{
    Client, ClientError, CommitMode, ConsumerConfig, GroupConfig, GroupConsumer, GroupMetadata,
    Isolation, ProducerRecord, Seek, TopicPartition, TransactionalConfig, TransactionalProducer,
};
use silt_core::batch::{BatchBuilder, Record};
use silt_proto::v1::{self, ErrorCode};

async fn broker_with_topic(topic: &str, partitions: u32) -> (TestBroker, Client) {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic(topic, partitions, &[]).await.error_code, 0);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    (b, client)
}

async fn producer(client: &Client, id: &str, timeout_ms: u32) -> TransactionalProducer {
    let mut config = TransactionalConfig::new(id);
    config.transaction_timeout_ms = timeout_ms;
    TransactionalProducer::new(client, config).await.expect("the producer registers")
}

async fn send(p: &mut TransactionalProducer, topic: &str, partition: u32, values: &[&str]) {
    for v in values {
        let r = ProducerRecord::new(topic, Bytes::from(v.to_string())).with_partition(partition);
        p.send(r).await.unwrap();
    }
}

/// Every value of `topic`'s partitions `0..partitions` below their high watermark as a
/// consumer of `isolation` sees it (bounded polls).
async fn read_all(
    client: &Client,
    topic: &str,
    partitions: u32,
    isolation: Isolation,
) -> Vec<String> {
    let mut c =
        client.consumer(ConsumerConfig { max_wait_ms: 100, isolation, ..Default::default() });
    let tps = (0..partitions).map(|p| TopicPartition { topic: topic.into(), partition: p });
    c.assign(tps.collect(), Seek::Earliest).await.unwrap();
    let mut out = Vec::new();
    let mut empty = 0;
    for _ in 0..50 {
        let records = c.poll().await.unwrap();
        if records.is_empty() {
            empty += 1;
            if empty >= 3 {
                break;
            }
            continue;
        }
        empty = 0;
        out.extend(
            records.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
        );
    }
    out.sort();
    out
}

/// The high watermark and last stable offset of a partition, from a READ_COMMITTED fetch.
async fn offsets(b: &TestBroker, topic: &str, partition: u32) -> (i64, i64) {
    let mut req = common::fetch_req(topic, partition, 0, 0, false);
    req.isolation_level = v1::IsolationLevel::ReadCommitted as i32;
    req.min_bytes = 0;
    let r = b.data().await.fetch(req).await.unwrap().into_inner();
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{}", p.error_message);
    (p.high_watermark, p.last_stable_offset)
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only_and_read_uncommitted_sees_all() {
    let (b, client) = broker_with_topic("orders", 2).await;
    let mut p = producer(&client, "app-1", 60_000).await;
    p.begin().unwrap();
    send(&mut p, "orders", 0, &["c1", "c2"]).await;
    send(&mut p, "orders", 1, &["c3"]).await;
    p.commit().await.unwrap();
    p.begin().unwrap();
    send(&mut p, "orders", 0, &["a1"]).await;
    send(&mut p, "orders", 1, &["a2"]).await;
    p.flush().await.unwrap(); // written, then aborted
    p.abort().await.unwrap();
    p.begin().unwrap();
    send(&mut p, "orders", 1, &["c4"]).await;
    p.commit().await.unwrap();

    let committed = read_all(&client, "orders", 2, Isolation::ReadCommitted).await;
    assert_eq!(committed, sorted(&["c1", "c2", "c3", "c4"]));
    let all = read_all(&client, "orders", 2, Isolation::ReadUncommitted).await;
    assert_eq!(all, sorted(&["c1", "c2", "c3", "a1", "a2", "c4"]), "markers are no records");

    // Kafka's way: everything below the LSO, with the aborted transactions listed.
    let mut req = common::fetch_req("orders", 1, 0, 0, false);
    req.isolation_level = v1::IsolationLevel::ReadCommitted as i32;
    req.report_aborted = true;
    let r = b.data().await.fetch(req).await.unwrap().into_inner();
    let part = &r.topics[0].partitions[0];
    assert_eq!(part.aborted_transactions.len(), 1);
    assert_eq!(part.aborted_transactions[0].producer_id, p.producer_id_and_epoch().0);
    assert_eq!(part.last_stable_offset, part.high_watermark, "nothing open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_the_lso_until_it_commits() {
    let http =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let config = {
        let http = http.clone();
        move |dir| silt_broker::BrokerConfig { http, ..silt_broker::BrokerConfig::for_test(dir) }
    };
    let b = TestBroker::start_with(config).await;
    assert_eq!(b.create_topic("t", 1, &[]).await.error_code, 0);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let plain = client.producer(Default::default());
    plain.send(ProducerRecord::new("t", "before")).await.unwrap().await.unwrap();
    let mut p = producer(&client, "app-2", 60_000).await;
    p.begin().unwrap();
    send(&mut p, "t", 0, &["x1", "x2"]).await;
    p.flush().await.unwrap();
    plain.send(ProducerRecord::new("t", "after")).await.unwrap().await.unwrap();
    let (hw, lso) = offsets(&b, "t", 0).await;
    assert_eq!((hw, lso), (4, 1), "the LSO stays at the open transaction's first offset");
    let tp = TopicPartition { topic: "t".into(), partition: 0 };
    assert_eq!(client.end_offset(&tp, Isolation::ReadCommitted).await.unwrap(), 1);
    assert_eq!(client.end_offset(&tp, Isolation::ReadUncommitted).await.unwrap(), 4);
    assert_eq!(read_all(&client, "t", 1, Isolation::ReadCommitted).await, sorted(&["before"]));
    let metrics = common::http_get(&http, "/metrics").await;
    for line in [
        "silt_last_stable_offset_lag{topic=\"t\",partition=\"0\"} 3",
        "silt_transactions_ongoing 1",
        "silt_transactions_committed_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    p.commit().await.unwrap();
    let (hw, lso) = offsets(&b, "t", 0).await;
    assert_eq!((hw, lso), (5, 5), "the marker is in and the LSO is the high watermark");
    assert_eq!(client.end_offset(&tp, Isolation::ReadCommitted).await.unwrap(), 5);
    let metrics = common::http_get(&http, "/metrics").await;
    for line in [
        "silt_last_stable_offset_lag{topic=\"t\",partition=\"0\"} 0",
        "silt_transactions_ongoing 0",
        "silt_transactions_committed_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert_eq!(
        read_all(&client, "t", 1, Isolation::ReadCommitted).await,
        sorted(&["before", "x1", "x2", "after"])
    );
    plain.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_producer_fences_the_older_one_and_aborts_what_it_left_open() {
    let (_b, client) = broker_with_topic("t", 1).await;
    let mut old = producer(&client, "app-3", 60_000).await;
    old.begin().unwrap();
    send(&mut old, "t", 0, &["zombie-1"]).await;
    old.flush().await.unwrap();

    let mut new = producer(&client, "app-3", 60_000).await;
    let (old_id, old_epoch) = old.producer_id_and_epoch();
    let (new_id, new_epoch) = new.producer_id_and_epoch();
    assert_eq!(new_id, old_id, "the transactional id keeps its producer id");
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");

    // The zombie's writes and commit are refused.
    send(&mut old, "t", 0, &["zombie-2"]).await;
    let e = old.commit().await.expect_err("the zombie cannot commit");
    assert!(
        matches!(e.code(), Some(ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch)),
        "{e:?}"
    );
    assert!(matches!(
        old.begin(),
        Err(ClientError::Server { code: ErrorCode::ProducerFenced, .. })
    ));

    new.begin().unwrap();
    send(&mut new, "t", 0, &["fresh"]).await;
    new.commit().await.unwrap();
    assert_eq!(read_all(&client, "t", 1, Isolation::ReadCommitted).await, sorted(&["fresh"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_transaction_is_aborted_at_its_timeout_and_the_lso_advances() {
    let (b, client) = broker_with_topic("t", 1).await;
    let mut p = producer(&client, "app-4", 1_000).await;
    p.begin().unwrap();
    send(&mut p, "t", 0, &["hung"]).await;
    p.flush().await.unwrap();
    assert_eq!(offsets(&b, "t", 0).await, (1, 0));
    // The coordinator checks every 500 ms: aborted within a few seconds of the timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (hw, lso) = offsets(&b, "t", 0).await;
        if lso == hw && hw == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still open: hw {hw}, lso {lso}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read_all(&client, "t", 1, Isolation::ReadCommitted).await.is_empty());
    let e = p.commit().await.expect_err("the abort bumped the epoch");
    assert!(
        matches!(e.code(), Some(ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch)),
        "{e:?}"
    );
}

/// A transactional batch of `producer_id` at `epoch`, sequence `seq`.
fn txn_batch(producer_id: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(&Record::value(Bytes::from(value.to_string()), 1_000));
    b.set_producer(producer_id, epoch, seq);
    b.set_transactional();
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straggler_of_a_finished_transaction_cannot_join_the_next() {
    let (b, client) = broker_with_topic("t", 1).await;
    let mut p = producer(&client, "app-5", 60_000).await;
    let (id, epoch) = p.producer_id_and_epoch();
    p.begin().unwrap();
    send(&mut p, "t", 0, &["one"]).await;
    p.commit().await.unwrap();
    // A late copy of a batch of the committed transaction (its epoch) arrives now.
    let mut data = b.data().await;
    let mut req = common::produce_req(
        "t",
        0,
        v1::Acks::All,
        v1::partition_produce_data::Data::RecordBatches(txn_batch(id, epoch, 1, "late")),
    );
    req.transactional_id = Some("app-5".into());
    let r = data.produce(req.clone()).await.unwrap().into_inner();
    let code = r.topics[0].partitions[0].error_code;
    assert!(
        code == ErrorCode::InvalidProducerEpoch as i32 || code == ErrorCode::ProducerFenced as i32,
        "refused, not appended: {:?}",
        r.topics[0].partitions[0]
    );
    // Without the transactional id a transactional batch is refused outright.
    req.transactional_id = None;
    let r = data.produce(req).await.unwrap().into_inner();
    assert_eq!(r.topics[0].partitions[0].error_code, ErrorCode::InvalidRequest as i32);
    assert_eq!(read_all(&client, "t", 1, Isolation::ReadUncommitted).await, sorted(&["one"]));
}

/// FetchOffsets of group `g`, partition `in`/0: (error code, offset).
async fn committed_offset(b: &TestBroker, require_stable: bool) -> (i32, i64) {
    let mut groups =
        v1::groups_client::GroupsClient::connect(format!("http://{}", b.addr)).await.unwrap();
    let req = v1::FetchOffsetsRequest {
        group: "g".into(),
        partitions: vec![v1::TopicPartitions { topic: "in".into(), partitions: vec![0] }],
        require_stable,
    };
    let r = groups.fetch_offsets(req).await.unwrap().into_inner();
    (r.error_code, r.offsets.first().map_or(-2, |o| o.offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_in_a_transaction_count_only_when_it_commits() {
    let (b, client) = broker_with_topic("in", 1).await;
    assert_eq!(b.create_topic("out", 1, &[]).await.error_code, 0);
    let mut input = producer(&client, "feeder", 60_000).await;
    input.begin().unwrap();
    send(&mut input, "in", 0, &["a", "b", "c", "d"]).await;
    input.commit().await.unwrap();

    let mut config = GroupConfig::new("g");
    config.commit = CommitMode::Manual;
    config.fetch.isolation = Isolation::ReadCommitted;
    config.fetch.max_wait_ms = 100;
    let mut consumer = GroupConsumer::subscribe(&client, config, vec!["in".into()]).await.unwrap();
    let mut seen = 0;
    for _ in 0..100 {
        seen += consumer.poll().await.unwrap().len();
        if seen >= 4 {
            break;
        }
    }
    assert_eq!(seen, 4);
    let tp = TopicPartition { topic: "in".into(), partition: 0 };
    let meta = consumer.group_metadata();

    let mut p = producer(&client, "processor-0", 60_000).await;
    p.begin().unwrap();
    send(&mut p, "out", 0, &["A", "B", "C", "D"]).await;
    p.send_offsets(&meta, &[(tp.clone(), 4)]).await.unwrap();
    assert_eq!(
        committed_offset(&b, true).await.0,
        ErrorCode::UnstableOffsetCommit as i32,
        "a stable read waits while the transaction holds the offset"
    );
    assert_eq!(committed_offset(&b, false).await, (0, -1), "not visible before the commit");
    p.commit().await.unwrap();
    assert_eq!(committed_offset(&b, true).await, (0, 4), "visible once committed");

    // An aborted transaction's offsets never count.
    p.begin().unwrap();
    send(&mut p, "out", 0, &["lost"]).await;
    p.send_offsets(&meta, &[(tp.clone(), 2)]).await.unwrap();
    p.abort().await.unwrap();
    assert_eq!(committed_offset(&b, true).await, (0, 4));

    // A member the group does not know (a zombie's) cannot commit the group's offsets.
    p.begin().unwrap();
    let zombie = GroupMetadata { member_id: "gone".into(), ..meta.clone() };
    let e = p.send_offsets(&zombie, &[(tp.clone(), 3)]).await.expect_err("refused");
    assert_eq!(e.code(), Some(ErrorCode::UnknownMemberId), "{e:?}");
    p.abort().await.unwrap();
    assert_eq!(committed_offset(&b, true).await, (0, 4));
    assert_eq!(
        read_all(&client, "out", 1, Isolation::ReadCommitted).await,
        sorted(&["A", "B", "C", "D"])
    );
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_times_out_a_transaction_nobody_asks_about() {
    let (b, client) = broker_with_topic("t", 1).await;
    let mut p = producer(&client, "gone-app", 2_000).await;
    p.begin().unwrap();
    send(&mut p, "t", 0, &["orphan"]).await;
    p.flush().await.unwrap();
    drop(p);
    drop(client);
    // The broker restarts; the producer never comes back, nobody calls the coordinator.
    let tmp = b.stop().await.expect("the test broker owns its directory");
    let dir = tmp.path().to_path_buf();
    let b = TestBroker::start_in(dir, silt_broker::BrokerConfig::for_test).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (hw, lso) = offsets(&b, "t", 0).await;
        if lso == hw && hw == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still open: hw {hw}, lso {lso}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_write_failed_can_only_be_aborted() {
    let (_b, client) = broker_with_topic("t", 1).await;
    let mut p = producer(&client, "app-5", 60_000).await;
    p.begin().unwrap();
    send(&mut p, "t", 0, &["kept-out"]).await;
    // Partition 7 does not exist: the write fails, and with it the transaction.
    send(&mut p, "t", 7, &["nowhere"]).await;
    assert!(p.flush().await.is_err());
    let e = p.commit().await.expect_err("a transaction missing a write cannot commit");
    assert_eq!(e.code(), Some(ErrorCode::InvalidTxnState), "{e:?}");
    p.abort().await.unwrap();
    p.begin().unwrap();
    send(&mut p, "t", 0, &["next"]).await;
    p.commit().await.unwrap();
    assert_eq!(read_all(&client, "t", 1, Isolation::ReadCommitted).await, sorted(&["next"]));
}
