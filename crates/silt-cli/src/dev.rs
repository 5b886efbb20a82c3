//! `silt dev`: a local cluster for trying Silt — N brokers in this process on 127.0.0.1, all
//! voters of one metadata quorum, data under one directory; runs until Ctrl-C, then shuts every
//! broker down cleanly.

use std::time::{Duration, Instant};

use serde_json::json;
use silt_broker::{Broker, BrokerConfig};

/// Default segment size of topics created on a dev cluster.
const DEV_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
use tokio::sync::watch;

use crate::args::{DevArgs, Output};
use crate::error::CliError;

/// The gRPC port of broker `n` (1-based).
fn port(base: u16, n: u32) -> Result<u16, CliError> {
    u16::try_from(u32::from(base) + 10 * (n - 1))
        .map_err(|_| CliError::usage(format!("--base-port {base} leaves no room for {n} brokers")))
}

pub async fn run(a: DevArgs, out: Output) -> Result<(), CliError> {
    if a.brokers == 0 || a.brokers > 9 {
        return Err(CliError::usage("--brokers must be between 1 and 9"));
    }
    let addrs: Vec<String> = (1..=a.brokers)
        .map(|n| port(a.base_port, n).map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_, _>>()?;
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}@{addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let health_port = port(a.base_port, id as u32)? + 1;
        let config = BrokerConfig {
            node_id: id,
            listen: addr.clone(),
            http: format!("127.0.0.1:{health_port}"),
            data_dir: a.data_dir.join(format!("broker-{id}")),
            peers: Some(peers.clone()),
            topic_defaults: silt_broker::config::TopicDefaults {
                // Segments are preallocated and every dev broker shares one disk: 64 MiB
                // segments keep a few topics from taking tens of gigabytes.
                segment_bytes: DEV_SEGMENT_BYTES,
                ..Default::default()
            },
            ..BrokerConfig::default()
        };
        let broker = Broker::bind(config)
            .await
            .map_err(|e| CliError::failed(format!("broker {id}: {e}"), "START_FAILED"))?;
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let r = broker
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                eprintln!("error: broker {id} stopped: {e} (BROKER_FAILED)");
            }
        }));
    }
    let bootstrap = addrs.join(",");
    wait_for_cluster(&addrs, a.brokers as usize).await?;
    match out {
        Output::Json => println!(
            "{}",
            json!({"bootstrap": bootstrap, "brokers": a.brokers, "data_dir": a.data_dir})
        ),
        Output::Text => {
            println!("silt dev: {} brokers up, data in {}", a.brokers, a.data_dir.display());
            println!("bootstrap: {bootstrap}");
            println!("try: silt -b {bootstrap} cluster info    (Ctrl-C stops the cluster)");
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("silt dev: shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Waits (bounded) until a broker reports every broker alive.
async fn wait_for_cluster(addrs: &[String], n: usize) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(c) = silt_client::Client::connect(&addrs[..1]).await
            && let Ok(v) = c.admin().describe_cluster().await
            && v.brokers.iter().filter(|b| b.alive).count() == n
            && v.controller_id.is_some()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(CliError::failed("the local cluster did not form within 60 s", "CLUSTER_NOT_FORMED"))
}
