//! `siltd` as a process: a bad config exits at once naming the key; kill -9 then restart keeps
//! every `acks=all` record; SIGTERM shuts down cleanly with exit code 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_core::batch::{BatchBuilder, Record};
use silt_proto::v1::admin_client::AdminClient;
use silt_proto::v1::data_client::DataClient;
use silt_proto::v1::{self, ErrorCode};

/// A siltd child process, killed on drop.
struct Siltd {
    child: Child,
    addr: String,
}

impl Drop for Siltd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(dir: &Path) -> Siltd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_siltd"))
        .args(["--listen", "127.0.0.1:0", "--http", "", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("siltd starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("siltd listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("siltd reports its address");
    // A broker alone is a quorum of one: it answers BROKER_NOT_AVAILABLE (metadata:
    // Unavailable) until it has registered and applied its image.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut m = v1::metadata_client::MetadataClient::connect(format!("http://{addr}"))
            .await
            .expect("siltd accepts connections");
        if m.get_metadata(v1::MetadataRequest { topics: vec![] }).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "siltd never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Siltd { child, addr }
}

/// Creates the one-partition topic `durable` on the broker at `addr`.
async fn create_durable_topic(addr: &str) {
    let mut admin = AdminClient::connect(format!("http://{addr}")).await.unwrap();
    let topic = v1::NewTopic {
        name: "durable".into(),
        partitions: 1,
        replication_factor: 1,
        configs: Default::default(),
    };
    let created = admin
        .create_topics(v1::CreateTopicsRequest { topics: vec![topic], validate_only: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.topics[0].error_code(), ErrorCode::None);
}

fn batch(i: usize) -> Bytes {
    let mut b = BatchBuilder::new();
    for j in 0..4 {
        b.push(&Record::value(format!("r{i}-{j}"), i as i64));
    }
    b.build().unwrap()
}

async fn fetch_all(addr: &str) -> Vec<String> {
    let mut c = DataClient::connect(format!("http://{addr}")).await.unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    for _ in 0..1000 {
        let req = v1::FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 0,
            decode_records: true,
            topics: vec![v1::TopicFetchData {
                topic: "durable".into(),
                partitions: vec![v1::PartitionFetchData {
                    partition: 0,
                    fetch_offset: offset,
                    partition_max_bytes: 0,
                    current_leader_epoch: None,
                }],
            }],
            ..Default::default()
        };
        let r = c.fetch(req).await.unwrap().into_inner();
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code(), ErrorCode::None);
        if p.records.is_empty() {
            break;
        }
        for rec in &p.records {
            out.push(
                String::from_utf8_lossy(rec.value.as_deref().unwrap_or_default()).into_owned(),
            );
            offset = rec.offset + 1;
        }
    }
    out
}

#[test]
fn a_bad_config_exits_at_once_naming_the_key() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_siltd")).args(["--listen", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_keeps_every_acks_all_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    create_durable_topic(&broker.addr).await;
    let mut c = DataClient::connect(format!("http://{}", broker.addr)).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..100 {
        let req = v1::ProduceRequest {
            acks: v1::Acks::All as i32,
            timeout_ms: 10_000,
            topics: vec![v1::TopicProduceData {
                topic: "durable".into(),
                partitions: vec![v1::PartitionProduceData {
                    partition: 0,
                    data: Some(v1::partition_produce_data::Data::RecordBatches(batch(i))),
                }],
            }],
            ..Default::default()
        };
        let r = c.produce(req).await.unwrap().into_inner();
        if r.topics[0].partitions[0].error_code() == ErrorCode::None {
            acked.extend((0..4).map(|j| format!("r{i}-{j}")));
        }
    }
    assert_eq!(acked.len(), 400);
    drop(broker); // SIGKILL, no chance to close anything
    let broker = start(dir.path()).await;
    let read = fetch_all(&broker.addr).await;
    assert_eq!(read, acked, "every acknowledged record survives kill -9, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(dir.path()).await;
    create_durable_topic(&broker.addr).await;
    let pid = broker.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = broker.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "siltd did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(dir.path().join("durable-0").join("clean-shutdown").exists(), "logs closed cleanly");
}
