//! The HTTP port of a broker: `/healthz`, `/readyz` and `/metrics` (Prometheus text) reflect the
//! requests served, the partitions hosted and the consumer groups coordinated.

use std::time::Duration;

use silt_broker::{Broker, BrokerConfig};
use silt_client::{Acks, Client, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("http port");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn value(body: &str, line_start: &str) -> Option<f64> {
    body.lines().find(|l| l.starts_with(line_start))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_show_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let config = BrokerConfig { http: http.clone(), ..BrokerConfig::for_test(tmp.path()) };
    let broker = Broker::bind(config).await.unwrap();
    let addr = broker.local_addr().to_string();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(broker.run(async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&http, "/healthz").await.0, 200);
    assert_eq!(get(&http, "/readyz").await.0, 200);
    assert_eq!(get(&http, "/nope").await.0, 404);

    let client = Client::connect(&[addr]).await.unwrap();
    client.admin().create_topic("m", 2, 1, Default::default()).await.unwrap();
    let producer =
        client.producer(ProducerConfig { acks: Acks::All, linger_ms: 0, ..Default::default() });
    for i in 0..5 {
        producer
            .send(ProducerRecord::new("m", format!("v{i}")).with_partition(1))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let (status, body) = get(&http, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(value(&body, "silt_produce_requests_total "), Some(5.0), "{body}");
    assert!(value(&body, "silt_produce_bytes_total ").unwrap() > 0.0);
    assert_eq!(value(&body, "silt_produce_latency_seconds_count "), Some(5.0));
    assert_eq!(value(&body, "silt_partitions_led "), Some(2.0));
    assert_eq!(value(&body, "silt_under_replicated_partitions "), Some(0.0));
    assert_eq!(
        value(&body, "silt_high_watermark{topic=\"m\",partition=\"1\"}"),
        Some(5.0),
        "{body}"
    );
    assert!(value(&body, "silt_log_size_bytes{topic=\"m\",partition=\"1\"}").unwrap() > 0.0);
    // Nothing moving, every leadership on its preferred replica.
    assert_eq!(value(&body, "silt_reassignments_in_progress "), Some(0.0), "{body}");
    assert_eq!(value(&body, "silt_reassignment_bytes_remaining "), Some(0.0), "{body}");
    assert_eq!(value(&body, "silt_leader_imbalance_ratio{broker=\"1\"}"), Some(0.0), "{body}");

    // A consumer group on a single broker: committed offsets and lag per partition.
    let mut config = silt_client::GroupConfig::new("mg");
    config.commit = silt_client::CommitMode::Manual;
    let consumer = client.subscribe(config, vec!["m".into()]).await.unwrap();
    let tp = silt_client::TopicPartition { topic: "m".into(), partition: 1 };
    consumer.committer().commit([(tp, 3)]).await.unwrap();
    let (_, body) = get(&http, "/metrics").await;
    let at = "{group=\"mg\",topic=\"m\",partition=\"1\"}";
    assert_eq!(value(&body, &format!("silt_group_committed_offset{at}")), Some(3.0), "{body}");
    assert_eq!(value(&body, &format!("silt_group_lag{at}")), Some(2.0), "{body}");
    assert_eq!(value(&body, "silt_group_members{group=\"mg\"}"), Some(1.0), "{body}");
    consumer.close().await.unwrap();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
}
