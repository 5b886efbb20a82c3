//! Shared pieces of the process fault tests: a three-broker cluster with the fault topic under
//! an `acks=all` load ([`setup`]), healing and checking C1-C6 and C9 ([`finish`]), probes, raw
//! produces straight to one broker, and on-disk damage.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silt_client::{Acks, ProducerConfig, ProducerRecord};
use silt_proto::v1;

use crate::cluster::{ClusterSettings, ProcessCluster, describe_on};
use crate::history::{History, Outcome, SendOp};
use crate::workload::{LoadSpec, Workload, fault_topic_configs, final_read, replica_bytes};

pub const TOPIC: &str = "faults";
pub const PARTITIONS: u32 = 3;

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `binary`: the `siltd` to run (`env!("CARGO_BIN_EXE_siltd-under-test")` in a test).
pub async fn setup(binary: &str) -> (ProcessCluster, Workload) {
    setup_with(binary, fault_topic_configs()).await
}

/// [`setup`] with other configs for the fault topic (e.g. `durability=replicated`).
pub async fn setup_with(
    binary: &str,
    configs: BTreeMap<String, String>,
) -> (ProcessCluster, Workload) {
    setup_cluster(ClusterSettings::new(binary), configs).await
}

/// [`setup_with`] on a cluster with other settings (e.g. TLS everywhere).
pub async fn setup_cluster(
    settings: ClusterSettings,
    configs: BTreeMap<String, String>,
) -> (ProcessCluster, Workload) {
    let cluster = ProcessCluster::start(settings).await;
    let client = cluster.client().await;
    client.admin().create_topic(TOPIC, PARTITIONS, 3, configs).await.expect("topic created");
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
pub async fn finish(
    cluster: ProcessCluster,
    load: Workload,
    name: &str,
) -> std::sync::Arc<History> {
    finish_with(cluster, load, name, &[]).await
}

/// [`finish`], also checking that the replicas of `more` topics (name, partitions) are
/// byte-identical below their HW.
pub async fn finish_with(
    mut cluster: ProcessCluster,
    load: Workload,
    name: &str,
    more: &[(&str, u32)],
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
    let mut topics = vec![(TOPIC, PARTITIONS)];
    topics.extend_from_slice(more);
    let mut hws = BTreeMap::new();
    for &(topic, partitions) in &topics {
        for p in 0..partitions {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut seen = Vec::new();
                for b in cluster.brokers.values() {
                    let hw = describe_on(&b.addr, topic)
                        .await
                        .and_then(|t| t.partitions.get(p as usize).map(|x| x.high_watermark));
                    seen.push(hw.unwrap_or(-1));
                }
                if seen.iter().all(|h| *h >= 0 && *h == seen[0]) {
                    hws.insert((topic, p), seen[0] as u64);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "[{name}] replicas of {topic}/{p} disagree on the HW: {seen:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let panics = cluster.panics();
    assert!(panics.is_empty(), "[{name}] a broker panicked: {panics:?}");
    for id in 1..=3 {
        assert_eq!(cluster.sigterm(id), Some(0), "[{name}] broker {id} exits cleanly");
    }
    for ((topic, p), hw) in hws {
        let copies: Vec<Vec<u8>> = cluster
            .brokers
            .values()
            .map(|b| {
                replica_bytes(&b.dir.join(format!("{topic}-{p}")), hw).expect("replica readable")
            })
            .collect();
        assert!(
            copies.iter().all(|c| *c == copies[0]),
            "[{name}] replicas of {topic}/{p} differ below the HW {hw}"
        );
    }
    history
}

/// Sends one record to `partition` until one is acknowledged; records every probe in the
/// history. Returns when the first acknowledgement came.
pub async fn probe_until_acked(
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

pub fn others(leader: u64) -> Vec<u64> {
    (1..=3).filter(|b| *b != leader).collect()
}

/// One raw single-record produce straight to `addr` (no client retries, no redirection).
pub async fn raw_produce(
    addr: &str,
    partition: u32,
    acks: v1::Acks,
    value: &str,
) -> Result<v1::PartitionProduceResponse, String> {
    let channel = crate::tls::endpoint(addr).connect().await.map_err(|e| e.to_string())?;
    let mut raw = v1::data_client::DataClient::new(channel);
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
        ..Default::default()
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

/// Every other kind of client request, sent once straight to `addr` about `partition` of the
/// fault topic: what each was answered (`request: CODE`, a gRPC status code, or `not reachable`).
/// A broker still catching up must answer each with `BROKER_NOT_AVAILABLE` (per item) or
/// `Unavailable` (whole request): nothing from a stale image.
pub async fn probe_requests(addr: &str, partition: u32) -> Vec<String> {
    let endpoint = crate::tls::endpoint(addr)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let Ok(ch) = endpoint.connect().await else { return vec!["connect: not reachable".into()] };
    let mut data = v1::data_client::DataClient::new(ch.clone());
    let mut meta = v1::metadata_client::MetadataClient::new(ch.clone());
    let mut admin = v1::admin_client::AdminClient::new(ch.clone());
    let mut groups = v1::groups_client::GroupsClient::new(ch);
    let list = v1::ListOffsetsRequest {
        topics: vec![v1::TopicListOffsets {
            topic: TOPIC.into(),
            partitions: vec![v1::PartitionListOffsets {
                partition,
                spec: Some(v1::partition_list_offsets::Spec::Position(
                    v1::OffsetSpec::Latest as i32,
                )),
            }],
        }],
    };
    let fetch = v1::FetchRequest {
        topics: vec![v1::TopicFetchData {
            topic: TOPIC.into(),
            partitions: vec![v1::PartitionFetchData { partition, ..Default::default() }],
        }],
        ..Default::default()
    };
    let topics = vec![TOPIC.to_string()];
    let group = "probe".to_string();
    vec![
        answer("list-offsets", data.list_offsets(list).await, |r: v1::ListOffsetsResponse| {
            r.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code)
        }),
        answer("fetch", data.fetch(fetch).await, |r: v1::FetchResponse| {
            r.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code)
        }),
        answer(
            "metadata",
            meta.get_metadata(v1::MetadataRequest { topics: topics.clone() }).await,
            |r: v1::MetadataResponse| r.topics.first().map(|t| t.error_code),
        ),
        answer(
            "describe-topics",
            admin.describe_topics(v1::DescribeTopicsRequest { topics }).await,
            |r: v1::DescribeTopicsResponse| r.topics.first().map(|t| t.error_code),
        ),
        answer(
            "find-coordinator",
            groups.find_coordinator(v1::FindCoordinatorRequest { group: group.clone() }).await,
            |r: v1::FindCoordinatorResponse| Some(r.error_code),
        ),
        answer(
            "describe-group",
            groups.describe_group(v1::DescribeGroupRequest { group }).await,
            |r: v1::DescribeGroupResponse| Some(r.error_code),
        ),
    ]
}

/// `request: CODE` for an answer (its first item's error code), or the gRPC status code.
fn answer<T>(
    request: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
    code: impl Fn(T) -> Option<i32>,
) -> String {
    let answer = match r {
        Ok(resp) => match code(resp.into_inner()) {
            Some(c) => format!(
                "{:?}",
                v1::ErrorCode::try_from(c).unwrap_or(v1::ErrorCode::UnknownServerError)
            ),
            None => "empty answer".into(),
        },
        Err(s) => format!("{:?}", s.code()),
    };
    format!("{request}: {answer}")
}

/// Zeroes the last `bytes` written bytes of the newest segment in `dir` (a lost unsynced tail:
/// with `durability=replicated` acknowledged records may live only in memory). Returns the
/// segment and where the zeroing starts.
pub fn zero_active_tail(dir: &std::path::Path, bytes: usize) -> (std::path::PathBuf, usize) {
    let path = newest_segment(dir);
    let mut data = std::fs::read(&path).expect("segment readable");
    let end = data.iter().rposition(|b| *b != 0).expect("the segment has data") + 1;
    let from = end.saturating_sub(bytes);
    data[from..end].fill(0);
    std::fs::write(&path, &data).expect("segment written");
    (path, from)
}

fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    segments(dir).pop().expect("a segment")
}

/// The segment files of the partition in `dir`, oldest first.
pub fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("partition dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

pub fn corrupt_active_segment(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    let path = newest_segment(dir);
    let mut bytes = std::fs::read(&path).expect("segment readable");
    let end = bytes.iter().rposition(|b| *b != 0).expect("the segment has data");
    let at = end / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&path, &bytes).expect("segment written");
    (path, at)
}

/// Flips one byte of a file in place (no truncation, so a broker that has the file mapped
/// sees the change, as it would see a bit rotting on disk).
pub fn flip_byte_in_place(path: &std::path::Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("segment");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("a byte to flip");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[b[0] ^ 0x5a]).expect("byte written");
    f.sync_data().expect("synced");
}

/// One raw fetch of `partition` of the fault topic from `offset`, straight to `addr`: the
/// error code and the bytes of batches returned.
pub async fn raw_fetch(
    addr: &str,
    partition: u32,
    offset: i64,
) -> Result<(v1::ErrorCode, usize), String> {
    let channel = crate::tls::endpoint(addr).connect().await.map_err(|e| e.to_string())?;
    let mut raw = v1::data_client::DataClient::new(channel);
    let req = v1::FetchRequest {
        topics: vec![v1::TopicFetchData {
            topic: TOPIC.into(),
            partitions: vec![v1::PartitionFetchData {
                partition,
                fetch_offset: offset,
                ..Default::default()
            }],
        }],
        ..Default::default()
    };
    match tokio::time::timeout(Duration::from_secs(5), raw.fetch(req)).await {
        Ok(Ok(resp)) => {
            let p = resp
                .into_inner()
                .topics
                .pop()
                .and_then(|mut t| t.partitions.pop())
                .ok_or_else(|| "empty answer".to_string())?;
            let code =
                v1::ErrorCode::try_from(p.error_code).unwrap_or(v1::ErrorCode::UnknownServerError);
            Ok((code, p.record_batches.len()))
        }
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
