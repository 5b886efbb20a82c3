//! A work queue on a share group: three workers compete for the tasks of one partition, each task
//! acknowledged when done; a task that fails is released and delivered again (to any worker),
//! one that keeps failing is rejected (into the topic's dead-letter topic, if it names one).
//!
//! ```text
//! silt dev &
//! cargo run -p silt-client --example work_queue
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use silt_client::{
    AckKind, AckMode, Client, ProducerConfig, ProducerRecord, ShareConfig, ShareConsumer,
    ShareStart,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("SILT_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9300".into());
    let client = Client::connect(&[bootstrap]).await?;
    let _ = client.admin().create_topic("example.tasks", 1, 0, BTreeMap::new()).await;
    let producer = client.producer(ProducerConfig::default());
    for i in 0..30 {
        producer.send(ProducerRecord::new("example.tasks", format!("task-{i}"))).await?;
    }
    producer.close().await?;

    let mut workers = Vec::new();
    for w in 0..3 {
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            let config = ShareConfig {
                ack_mode: AckMode::Explicit,
                start: ShareStart::Earliest,
                max_records: 5,
                ..ShareConfig::new("example-workers", &["example.tasks"])
            };
            let mut c = ShareConsumer::join(&client, config).await?;
            let mut idle = 0;
            while idle < 5 {
                let tasks = c.poll().await?;
                idle = if tasks.is_empty() { idle + 1 } else { 0 };
                for t in &tasks {
                    let name = String::from_utf8_lossy(t.value.as_deref().unwrap_or_default());
                    // Every seventh task fails on its first two attempts.
                    let fails = name.ends_with('7') && t.delivery_count < 3;
                    let ack = if fails { AckKind::Release } else { AckKind::Accept };
                    println!("worker {w}: {name} (delivery {}) -> {ack:?}", t.delivery_count);
                    tokio::time::sleep(Duration::from_millis(20)).await; // the work
                    c.acknowledge(t, ack);
                }
            }
            c.close().await?;
            Ok::<_, silt_client::ClientError>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}
