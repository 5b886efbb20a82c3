//! End-to-end behaviour of one broker through its gRPC contract: produce / fetch round trips at
//! every acks level, replay by offset and time, long polls, admin, and bad input answered with
//! its error code and leaving the log unchanged.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use silt_core::batch::CRC_POS;
use silt_proto::v1::{self, ErrorCode, partition_produce_data::Data};

#[tokio::test]
async fn produce_then_fetch_round_trips_raw_and_decoded_at_every_acks_level() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("orders", 2, &[]).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    let r = produce(&mut c, "orders", 1, v1::Acks::All, batch("all", 3, 1000)).await;
    assert_eq!((r.error_code(), r.base_offset), (ErrorCode::None, 0));
    assert_eq!(r.durability(), v1::DurabilityLevel::ReplicatedDisk);
    let r = produce(&mut c, "orders", 1, v1::Acks::Leader, batch("one", 2, 1001)).await;
    assert_eq!((r.error_code(), r.base_offset), (ErrorCode::None, 3));
    let r = produce(&mut c, "orders", 1, v1::Acks::None, batch("zero", 1, 1002)).await;
    assert_eq!((r.error_code(), r.base_offset), (ErrorCode::None, -1));
    // Plain protobuf records, encoded by the broker.
    let records = v1::RecordList {
        records: vec![v1::Record {
            key: None,
            value: Some(Bytes::from_static(b"pb-0")),
            headers: vec![],
            timestamp_ms: 0,
        }],
        ..Default::default()
    };
    let resp = c
        .produce(produce_req("orders", 1, v1::Acks::All, Data::Records(records)))
        .await
        .unwrap()
        .into_inner();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code(), p.base_offset), (ErrorCode::None, 6));

    let (code, vals) = fetch_values(&mut c, "orders", 1, 0).await;
    assert_eq!(code, ErrorCode::None);
    let values: Vec<&str> = vals.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["all-0", "all-1", "all-2", "one-0", "one-1", "zero-0", "pb-0"]);
    assert!(vals.iter().enumerate().all(|(i, (o, _))| *o == i as i64));
    // Raw batches are served byte for byte; a fetch from the middle of a batch starts at it.
    let raw = c.fetch(fetch_req("orders", 1, 4, 0, false)).await.unwrap().into_inner();
    let p = &raw.topics[0].partitions[0];
    assert_eq!(p.high_watermark, 7);
    let first = silt_core::batch::BatchHeader::parse(&p.record_batches).unwrap();
    assert_eq!(first.base_offset.0, 3);
    // The other partition is untouched.
    assert!(fetch_values(&mut c, "orders", 0, 0).await.1.is_empty());
}

#[tokio::test]
async fn replay_by_offset_and_by_timestamp() {
    let b = TestBroker::start().await;
    b.create_topic("events", 1, &[]).await;
    let mut c = b.data().await;
    for (i, ts) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        produce(&mut c, "events", 0, v1::Acks::All, batch(&format!("t{i}"), 2, ts)).await;
    }
    let (_, from4) = fetch_values(&mut c, "events", 0, 4).await;
    assert_eq!(from4.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [4, 5]);
    let list = |spec| v1::ListOffsetsRequest {
        topics: vec![v1::TopicListOffsets {
            topic: "events".into(),
            partitions: vec![v1::PartitionListOffsets { partition: 0, spec: Some(spec) }],
        }],
    };
    use v1::partition_list_offsets::Spec;
    let at = |spec| {
        let mut c = c.clone();
        async move {
            c.list_offsets(list(spec)).await.unwrap().into_inner().topics[0].partitions[0].clone()
        }
    };
    assert_eq!(at(Spec::TimestampMs(1_500)).await.offset, 2);
    assert_eq!(at(Spec::TimestampMs(3_000)).await.offset, 4);
    assert_eq!(at(Spec::TimestampMs(3_001)).await.offset, -1);
    assert_eq!(at(Spec::Position(v1::OffsetSpec::Earliest as i32)).await.offset, 0);
    assert_eq!(at(Spec::Position(v1::OffsetSpec::Latest as i32)).await.offset, 6);
}

#[tokio::test]
async fn a_long_poll_wakes_when_data_arrives() {
    let b = TestBroker::start().await;
    b.create_topic("wake", 1, &[]).await;
    let mut c = b.data().await;
    let mut c2 = c.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        c2.fetch(fetch_req("wake", 0, 0, 20_000, true)).await.unwrap().into_inner()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&mut c, "wake", 0, v1::Acks::All, batch("w", 1, 1)).await;
    let r =
        tokio::time::timeout(Duration::from_secs(30), poll).await.expect("fetch returns").unwrap();
    assert_eq!(r.topics[0].partitions[0].records.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "woken by the append, not by the 20 s deadline"
    );
}

#[tokio::test]
async fn bad_input_gets_its_error_code_and_changes_nothing() {
    let b = TestBroker::start().await;
    b.create_topic("t", 1, &[("max.message.bytes", "2000")]).await;
    let mut c = b.data().await;
    produce(&mut c, "t", 0, v1::Acks::All, batch("ok", 1, 1)).await;

    let code = |r: v1::PartitionProduceResponse| r.error_code();
    assert_eq!(
        code(produce(&mut c, "nope", 0, v1::Acks::All, batch("x", 1, 1)).await),
        ErrorCode::UnknownTopic
    );
    assert_eq!(
        code(produce(&mut c, "t", 5, v1::Acks::All, batch("x", 1, 1)).await),
        ErrorCode::UnknownPartition
    );
    let mut bad_crc = batch("x", 2, 1).to_vec();
    bad_crc[CRC_POS] ^= 0xff;
    assert_eq!(
        code(produce(&mut c, "t", 0, v1::Acks::All, Bytes::from(bad_crc)).await),
        ErrorCode::CorruptMessage
    );
    let mut lying = batch("x", 2, 1).to_vec();
    lying[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        code(produce(&mut c, "t", 0, v1::Acks::All, Bytes::from(lying)).await),
        ErrorCode::CorruptMessage
    );
    assert_eq!(
        code(produce(&mut c, "t", 0, v1::Acks::All, Bytes::from_static(b"garbage")).await),
        ErrorCode::CorruptMessage
    );
    let big = {
        let mut bb = silt_core::batch::BatchBuilder::new();
        bb.push(&silt_core::batch::Record::value(vec![7u8; 5000], 1));
        bb.build().unwrap()
    };
    assert_eq!(code(produce(&mut c, "t", 0, v1::Acks::All, big).await), ErrorCode::MessageTooLarge);
    // One good batch followed by a bad one: nothing of the request is appended.
    let mut mixed = batch("good", 1, 1).to_vec();
    mixed.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        code(produce(&mut c, "t", 0, v1::Acks::All, Bytes::from(mixed)).await),
        ErrorCode::CorruptMessage
    );

    let (_, vals) = fetch_values(&mut c, "t", 0, 0).await;
    assert_eq!(vals, [(0, "ok-0".to_string())], "the log is unchanged");

    assert_eq!(fetch_values(&mut c, "t", 0, -1).await.0, ErrorCode::OffsetOutOfRange);
    assert_eq!(fetch_values(&mut c, "t", 0, 99).await.0, ErrorCode::OffsetOutOfRange);
    assert_eq!(
        fetch_values(&mut c, "t", 0, 1).await,
        (ErrorCode::None, vec![]),
        "the log end is a valid, empty position"
    );
    assert_eq!(fetch_values(&mut c, "nope", 0, 0).await.0, ErrorCode::UnknownTopic);

    // min.insync.replicas above the ISR: acks=all refused before appending.
    b.create_topic("strict", 1, &[("min.insync.replicas", "2")]).await;
    let r = produce(&mut c, "strict", 0, v1::Acks::All, batch("s", 1, 1)).await;
    assert_eq!(r.error_code(), ErrorCode::NotEnoughReplicas);
    assert!(ErrorCode::NotEnoughReplicas.definitely_not_stored());
    assert_eq!(
        produce(&mut c, "strict", 0, v1::Acks::Leader, batch("s", 1, 1)).await.error_code(),
        ErrorCode::None
    );
}

#[tokio::test]
async fn admin_validates_names_and_configs_and_manages_topics() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("bad/name", 1, &[]).await.error_code(), ErrorCode::InvalidTopic);
    assert_eq!(b.create_topic("__internal", 1, &[]).await.error_code(), ErrorCode::InvalidTopic);
    assert_eq!(
        b.create_topic("t", 1, &[("retention.ms", "soon")]).await.error_code(),
        ErrorCode::InvalidConfig
    );
    assert_eq!(
        b.create_topic("t", 1, &[("bogus.key", "1")]).await.error_code(),
        ErrorCode::InvalidConfig
    );
    assert_eq!(b.create_topic("t", 100_000, &[]).await.error_code(), ErrorCode::InvalidPartitions);
    let mut admin = b.admin().await;
    let rf3 = admin
        .create_topics(v1::CreateTopicsRequest {
            topics: vec![v1::NewTopic {
                name: "t".into(),
                partitions: 1,
                replication_factor: 3,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rf3.topics[0].error_code(), ErrorCode::InvalidReplicationFactor);
    let listed = admin
        .describe_topics(v1::DescribeTopicsRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.topics.is_empty(), "failed creations left nothing behind");

    assert_eq!(
        b.create_topic("t", 3, &[("retention.ms", "60000")]).await.error_code(),
        ErrorCode::None
    );
    assert_eq!(b.create_topic("t", 3, &[]).await.error_code(), ErrorCode::TopicAlreadyExists);
    let d = admin
        .describe_topics(v1::DescribeTopicsRequest { topics: vec!["t".into()] })
        .await
        .unwrap()
        .into_inner();
    let t = &d.topics[0];
    assert_eq!((t.partitions.len(), t.configs["retention.ms"].as_str()), (3, "60000"));
    assert_eq!(t.configs["durability"], "fsync");

    let alter = |set: &[(&str, &str)], delete: &[&str]| v1::AlterTopicConfigRequest {
        topic: "t".into(),
        set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
    };
    let r = admin
        .alter_topic_config(alter(&[("durability", "sometimes")], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result.unwrap().error_code(), ErrorCode::InvalidConfig);
    let r = admin
        .alter_topic_config(alter(&[("durability", "replicated")], &["retention.ms"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result.unwrap().error_code(), ErrorCode::None);
    let d = admin
        .describe_topics(v1::DescribeTopicsRequest { topics: vec!["t".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.topics[0].configs["durability"], "replicated");
    assert_eq!(d.topics[0].configs["retention.ms"], "604800000", "back to the default");

    // Delete, then re-create: the new topic starts empty.
    let mut c = b.data().await;
    produce(&mut c, "t", 0, v1::Acks::All, batch("old", 2, 1)).await;
    let del = admin
        .delete_topics(v1::DeleteTopicsRequest { topics: vec!["t".into(), "t".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.topics[0].error_code(), ErrorCode::None);
    assert_eq!(del.topics[1].error_code(), ErrorCode::UnknownTopic);
    assert_eq!(b.create_topic("t", 1, &[]).await.error_code(), ErrorCode::None);
    assert_eq!(fetch_values(&mut c, "t", 0, 0).await, (ErrorCode::None, vec![]));
}

#[tokio::test]
async fn a_clean_restart_keeps_topics_and_records() {
    let b = TestBroker::start().await;
    b.create_topic("keep", 2, &[("retention.ms", "-1")]).await;
    let mut c = b.data().await;
    for i in 0..5 {
        produce(&mut c, "keep", i % 2, v1::Acks::All, batch(&format!("r{i}"), 3, i as i64)).await;
    }
    let dir = b.dir.clone();
    let tmp = b.stop().await;
    let b = TestBroker::start_in(dir, silt_broker::BrokerConfig::for_test).await;
    let mut c = b.data().await;
    assert_eq!(fetch_values(&mut c, "keep", 0, 0).await.1.len(), 9);
    assert_eq!(fetch_values(&mut c, "keep", 1, 0).await.1.len(), 6);
    let d = b
        .admin()
        .await
        .describe_topics(v1::DescribeTopicsRequest { topics: vec!["keep".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.topics[0].configs["retention.ms"], "-1");
    drop(b);
    drop(tmp);
}

/// A data directory of the old single-broker mode (`topics.json`, partition directories stamped
/// with the store id, no Raft state, no HW checkpoint) migrates into the broker's quorum of one
/// on its first start without `--peers`: every record, the topic's overrides and its id are
/// kept, the file is renamed, and later starts need it no more. With `--peers` such a directory
/// is refused with a message naming the file.
#[tokio::test]
async fn an_old_single_broker_data_dir_migrates_into_a_quorum_of_one() {
    let b = TestBroker::start().await;
    b.create_topic("ev", 2, &[("retention.ms", "-1")]).await;
    let mut c = b.data().await;
    for i in 0..4 {
        produce(&mut c, "ev", i % 2, v1::Acks::All, batch(&format!("r{i}"), 3, i as i64)).await;
    }
    let dir = b.dir.clone();
    let tmp = b.stop().await;
    // Make it what the old mode left: topics.json, directories stamped with store id 7.
    std::fs::remove_dir_all(dir.join("raft")).unwrap();
    for p in 0..2 {
        let pdir = dir.join(format!("ev-{p}"));
        std::fs::write(
            pdir.join("partition.metadata"),
            format!("version: 0\ntopic_id: {:032x}\n", 7),
        )
        .unwrap();
        let _ = std::fs::remove_file(pdir.join("high-watermark"));
    }
    std::fs::write(
        dir.join("topics.json"),
        r#"{"version":1,"next_id":8,"topics":{"ev":{"name":"ev","id":7,"partitions":2,
            "replication_factor":1,"overrides":{"retention.ms":"-1"}}}}"#,
    )
    .unwrap();

    let clustered = silt_broker::BrokerConfig {
        peers: Some("1@127.0.0.1:1,2@127.0.0.1:2".into()),
        ..silt_broker::BrokerConfig::for_test(dir.clone())
    };
    let err = silt_broker::Broker::bind(clustered).await.expect_err("refused with --peers");
    assert!(err.to_string().contains("topics.json"), "{err}");

    for start in 0..2 {
        let b = TestBroker::start_in(dir.clone(), silt_broker::BrokerConfig::for_test).await;
        let mut c = b.data().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (code, vals) = loop {
            let r = fetch_values(&mut c, "ev", 0, 0).await;
            if r.0 == ErrorCode::None || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!((code, vals.len()), (ErrorCode::None, 6), "start {start}: {vals:?}");
        assert_eq!(fetch_values(&mut c, "ev", 1, 0).await.1.len(), 6, "start {start}");
        let d = b
            .admin()
            .await
            .describe_topics(v1::DescribeTopicsRequest { topics: vec!["ev".into()] })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.topics[0].configs["retention.ms"], "-1", "start {start}");
        assert!(!dir.join("topics.json").exists(), "start {start}");
        assert!(dir.join("topics.json.migrated").exists(), "start {start}");
        let stamp = std::fs::read_to_string(dir.join("ev-0/partition.metadata")).unwrap();
        assert!(stamp.contains(&format!("{:032x}", 7)), "the old id kept: {stamp}");
        b.stop().await;
    }
    drop(tmp);
}

#[tokio::test]
async fn shutdown_answers_pending_long_polls_instead_of_waiting_them_out() {
    let b = TestBroker::start().await;
    b.create_topic("idle", 1, &[]).await;
    let mut c = b.data().await;
    let poll = tokio::spawn(async move { c.fetch(fetch_req("idle", 0, 0, 25_000, true)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let _tmp = b.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain did not wait for the 25 s long poll"
    );
    let r =
        tokio::time::timeout(Duration::from_secs(5), poll).await.expect("the poll ended").unwrap();
    let r = r.expect("answered, not cut off").into_inner();
    assert!(r.topics[0].partitions[0].records.is_empty());
}

/// A stored topic config this broker cannot apply (here `max.message.bytes` above its
/// `max_request_bytes` after a restart with a smaller limit) leaves the topic's partitions
/// offline with a retriable error — never served with the defaults (which would silently change
/// durability, min.insync.replicas and retention) — and serves them again, records intact, once
/// the config applies (altered to fit, or the broker restarted with its old limit).
#[tokio::test]
async fn a_topic_config_the_broker_cannot_apply_keeps_its_partitions_offline_not_defaulted() {
    let b = TestBroker::start().await;
    let wide = [("max.message.bytes", "4194304"), ("retention.ms", "-1")];
    assert_eq!(b.create_topic("wide", 1, &wide).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    produce(&mut c, "wide", 0, v1::Acks::All, batch("w", 3, 1)).await;
    let dir = b.dir.clone();
    let tmp = b.stop().await;

    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let narrow = {
        let http = http.clone();
        move |dir| silt_broker::BrokerConfig {
            max_request_bytes: 2 * 1024 * 1024,
            http,
            ..silt_broker::BrokerConfig::for_test(dir)
        }
    };
    let b = TestBroker::start_in(dir.clone(), narrow).await;
    let mut c = b.data().await;
    let r = produce(&mut c, "wide", 0, v1::Acks::All, batch("x", 1, 2)).await;
    assert_eq!(r.error_code(), ErrorCode::BrokerNotAvailable, "{}", r.error_message);
    assert!(r.error_message.contains("max.message.bytes"), "{}", r.error_message);
    let (code, _) = fetch_values(&mut c, "wide", 0, 0).await;
    assert_eq!(code, ErrorCode::BrokerNotAvailable);
    let metrics = http_get(&http, "/metrics").await;
    assert!(metrics.contains("\nsilt_topic_config_errors 1\n"), "{metrics}");
    // An operator lowers the limit to what this broker takes: the topic comes back.
    let r = b
        .admin()
        .await
        .alter_topic_config(v1::AlterTopicConfigRequest {
            topic: "wide".into(),
            set: [("max.message.bytes".to_string(), "1048576".to_string())].into(),
            delete: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result.unwrap().error_code(), ErrorCode::None);
    let r = produce(&mut c, "wide", 0, v1::Acks::All, batch("y", 1, 3)).await;
    assert_eq!(r.error_code(), ErrorCode::None, "{}", r.error_message);
    assert!(http_get(&http, "/metrics").await.contains("\nsilt_topic_config_errors 0\n"));
    b.stop().await;

    let b = TestBroker::start_in(dir, silt_broker::BrokerConfig::for_test).await;
    let mut c = b.data().await;
    let (code, vals) = fetch_values(&mut c, "wide", 0, 0).await;
    assert_eq!((code, vals.len()), (ErrorCode::None, 4), "records intact: {vals:?}");
    let d = b
        .admin()
        .await
        .describe_topics(v1::DescribeTopicsRequest { topics: vec!["wide".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.topics[0].configs["retention.ms"], "-1", "its own config, not the defaults");
    drop(b);
    drop(tmp);
}

/// A flipped byte in a batch a clean open does not look at (before the segment's last index
/// entry) is never served: the fetch answers a storage error, the broker logs the segment and
/// position, and `silt_log_corruptions_total` counts it.
#[tokio::test]
async fn corrupt_bytes_found_while_serving_are_refused_and_counted() {
    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let with_http = {
        let http = http.clone();
        move |dir| silt_broker::BrokerConfig { http, ..silt_broker::BrokerConfig::for_test(dir) }
    };
    let b = TestBroker::start().await;
    b.create_topic("rot", 1, &[]).await;
    let mut c = b.data().await;
    for i in 0..100 {
        produce(&mut c, "rot", 0, v1::Acks::All, batch(&format!("r{i}"), 10, i)).await;
    }
    let dir = b.dir.clone();
    let tmp = b.stop().await;
    let seg = dir.join("rot-0").join(silt_storage::segment_file_name(silt_core::Offset(0), "log"));
    let mut bytes = std::fs::read(&seg).unwrap();
    let first = silt_core::batch::BatchHeader::parse(&bytes).unwrap().total_len();
    bytes[first - 2] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    let b = TestBroker::start_in(dir, with_http).await;
    let mut c = b.data().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        let (code, _) = fetch_values(&mut c, "rot", 0, 0).await;
        if code != ErrorCode::BrokerNotAvailable || Instant::now() > deadline {
            break code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, ErrorCode::StorageError);
    let (code, vals) = fetch_values(&mut c, "rot", 0, 10).await;
    assert_eq!((code, !vals.is_empty()), (ErrorCode::None, true), "later batches are served");
    let metrics = http_get(&http, "/metrics").await;
    assert!(metrics.contains("\nsilt_log_corruptions_total 1\n"), "{metrics}");
    drop(b);
    drop(tmp);
}

/// The body of an HTTP/1.1 GET.
/// Raft, controller and replication RPCs are served on the internal listener only: the client
/// port answers them `Unimplemented`, so a client cannot drive them there by accident.
#[tokio::test]
async fn internal_services_are_not_served_on_the_client_port() {
    use silt_proto::internal::HeartbeatRequest;
    use silt_proto::internal::controller_client::ControllerClient;
    let b = TestBroker::start().await;
    assert_ne!(b.addr, b.internal);
    let heartbeat = |addr: String| async move {
        let mut c = ControllerClient::connect(format!("http://{addr}")).await.expect("connects");
        c.broker_heartbeat(HeartbeatRequest { node_id: 1, broker_epoch: 0 }).await
    };
    let on_client = heartbeat(b.addr.clone()).await.expect_err("refused on the client port");
    assert_eq!(on_client.code(), tonic::Code::Unimplemented, "{on_client}");
    match heartbeat(b.internal.clone()).await {
        Ok(_) => {}
        Err(s) => assert_ne!(s.code(), tonic::Code::Unimplemented, "served internally: {s}"),
    }
    b.stop().await;
}

/// A batch of `n` records from an idempotent producer.
fn idempotent_batch(prefix: &str, n: usize, producer: (i64, i16), sequence: i32) -> Bytes {
    let mut b = silt_core::batch::BatchBuilder::new();
    for i in 0..n {
        b.push(&silt_core::batch::Record::value(format!("{prefix}-{i}"), 0));
    }
    b.set_producer(producer.0, producer.1, sequence);
    b.build().unwrap()
}

/// Broker-side deduplication of idempotent producers (issue 15): ids from `InitProducerId`
/// are unique; a retried batch is answered with its original offsets and not appended again,
/// also after a restart (the state is rebuilt from the log); a gap, an old epoch and an
/// unknown producer with a non-zero sequence are refused and change nothing.
#[tokio::test]
async fn a_retried_idempotent_batch_is_appended_once_also_after_a_restart() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("idem", 1, &[]).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    let id1 = c.init_producer_id(v1::InitProducerIdRequest::default()).await.unwrap().into_inner();
    let id2 = c.init_producer_id(v1::InitProducerIdRequest::default()).await.unwrap().into_inner();
    assert_eq!((id1.error_code(), id1.producer_epoch), (ErrorCode::None, 0));
    assert_ne!(id1.producer_id, id2.producer_id, "ids are unique");
    let p = (id1.producer_id, 0);
    let first = idempotent_batch("a", 3, p, 0);
    let r = produce(&mut c, "idem", 0, v1::Acks::All, first.clone()).await;
    assert_eq!((r.error_code(), r.base_offset), (ErrorCode::None, 0));
    let r = produce(&mut c, "idem", 0, v1::Acks::All, idempotent_batch("b", 2, p, 3)).await;
    assert_eq!((r.error_code(), r.base_offset), (ErrorCode::None, 3));
    let retry = produce(&mut c, "idem", 0, v1::Acks::All, first.clone()).await;
    assert_eq!(
        (retry.error_code(), retry.base_offset),
        (ErrorCode::None, 0),
        "the original offsets"
    );
    let gap = produce(&mut c, "idem", 0, v1::Acks::All, idempotent_batch("c", 1, p, 9)).await;
    assert_eq!(gap.error_code(), ErrorCode::OutOfOrderSequenceNumber, "{}", gap.error_message);
    let unknown = produce(
        &mut c,
        "idem",
        0,
        v1::Acks::All,
        idempotent_batch("d", 1, (id2.producer_id, 0), 5),
    )
    .await;
    assert_eq!(unknown.error_code(), ErrorCode::UnknownProducerId);
    let newer =
        produce(&mut c, "idem", 0, v1::Acks::All, idempotent_batch("e", 1, (p.0, 1), 0)).await;
    assert_eq!((newer.error_code(), newer.base_offset), (ErrorCode::None, 5), "a new epoch");
    let zombie = produce(&mut c, "idem", 0, v1::Acks::All, idempotent_batch("f", 1, p, 5)).await;
    assert_eq!(zombie.error_code(), ErrorCode::InvalidProducerEpoch);
    let plain = produce(&mut c, "idem", 0, v1::Acks::All, batch("plain", 1, 0)).await;
    assert_eq!((plain.error_code(), plain.base_offset), (ErrorCode::None, 6), "no id: no checks");

    let dir = b.dir.clone();
    let tmp = b.stop().await;
    let b = TestBroker::start_in(dir, silt_broker::BrokerConfig::for_test).await;
    let mut c = b.data().await;
    let newer_retry = idempotent_batch("e", 1, (p.0, 1), 0);
    let again = produce(&mut c, "idem", 0, v1::Acks::All, newer_retry).await;
    assert_eq!(
        (again.error_code(), again.base_offset),
        (ErrorCode::None, 5),
        "deduplicated after a restart"
    );
    let (code, values) = fetch_values(&mut c, "idem", 0, 0).await;
    assert_eq!(code, ErrorCode::None);
    let offsets: Vec<i64> = values.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..7).collect::<Vec<_>>(), "every record once: {values:?}");
    let id3 = c.init_producer_id(v1::InitProducerIdRequest::default()).await.unwrap().into_inner();
    assert!(
        id3.producer_id > id2.producer_id.max(id1.producer_id),
        "no id handed out twice across restarts"
    );
    b.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn a_data_dir_in_the_old_magic_1_format_is_refused_at_start_and_left_alone() {
    // A segment whose batch is one of Silt's pre-Kafka-parity (magic 1) batches.
    let tmp = tempfile::tempdir().unwrap();
    let part = tmp.path().join("orders-0");
    std::fs::create_dir_all(&part).unwrap();
    let mut old = batch("old", 2, 1000).to_vec();
    old[silt_core::batch::MAGIC_POS] = silt_core::batch::MAGIC_V1_SILT;
    let segment = part.join("00000000000000000000.log");
    std::fs::write(&segment, &old).unwrap();
    let config = silt_broker::BrokerConfig::for_test(tmp.path());
    let Err(err) = silt_broker::Broker::bind(config).await else { panic!("it started") };
    let why = err.to_string();
    assert!(why.contains("magic-1") && why.contains("00000000000000000000.log"), "{why}");
    assert_eq!(std::fs::read(&segment).unwrap(), old, "nothing was cut or converted");
}
