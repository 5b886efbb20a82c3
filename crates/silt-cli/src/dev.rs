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
    check_data_dir(&a)?;
    // Replicated by default, as a real cluster would be: RF min(3, brokers), and with three
    // replicas an acks=all write needs two of them.
    let replication_factor = a.brokers.min(3);
    let min_insync_replicas = if replication_factor >= 3 { 2 } else { 1 };
    let pki = if a.secure { Some(crate::dev_pki::ensure(&a.data_dir, a.brokers)?) } else { None };
    let kafka_addrs: Vec<String> = if a.kafka_base_port == 0 {
        Vec::new()
    } else {
        (0..a.brokers)
            .map(|i| {
                u16::try_from(u32::from(a.kafka_base_port) + i)
                    .map(|p| format!("127.0.0.1:{p}"))
                    .map_err(|_| {
                        CliError::usage("--kafka-base-port leaves no room for the brokers")
                    })
            })
            .collect::<Result<_, _>>()?
    };
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
            kafka_listen: kafka_addrs.get(i).cloned(),
            topic_defaults: silt_broker::config::TopicDefaults {
                // Segments are preallocated and every dev broker shares one disk: 64 MiB
                // segments keep a few topics from taking tens of gigabytes.
                segment_bytes: DEV_SEGMENT_BYTES,
                replication_factor,
                min_insync_replicas,
                ..Default::default()
            },
            ..BrokerConfig::default()
        };
        let config = match &pki {
            // Clients need a certificate from the dev CA; brokers talk over mutual TLS.
            Some(pki) => {
                let (cert, key) = pki.broker(id);
                BrokerConfig {
                    tls_cert: Some(cert),
                    tls_key: Some(key),
                    tls_client_ca: Some(pki.ca()),
                    internal_tls_ca: Some(pki.ca()),
                    auth: true,
                    super_users: vec![DEV_SUPER_USER.to_string()],
                    ..config
                }
            }
            None => config,
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
    let tls = pki.as_ref().map(|p| p.admin_tls()).transpose()?;
    wait_for_cluster(&addrs, a.brokers as usize, tls).await?;
    // The flags a client of a secure dev cluster needs.
    let flags = pki.as_ref().map(|p| {
        let (cert, key) = p.admin();
        format!(
            " --tls-ca {} --tls-cert {} --tls-key {}",
            p.ca().display(),
            cert.display(),
            key.display()
        )
    });
    // The same settings as a profile (`SILT_CONFIG=FILE silt ...`).
    let profile = match &pki {
        Some(p) => Some(write_profile(&a.data_dir, &bootstrap, p)?),
        None => None,
    };
    match out {
        Output::Json => {
            let tls = pki.as_ref().map(|p| {
                let (cert, key) = p.admin();
                json!({"ca": p.ca(), "cert": cert, "key": key})
            });
            outln!(
                "{}",
                json!({"bootstrap": bootstrap, "brokers": a.brokers, "data_dir": a.data_dir, "tls": tls, "profile": profile, "kafka": kafka_addrs})
            )
        }
        Output::Text => {
            outln!(
                "silt dev: {} broker{} up (topics default to {replication_factor} replica{}), data in {}",
                a.brokers,
                if a.brokers == 1 { "" } else { "s" },
                if replication_factor == 1 { "" } else { "s" },
                a.data_dir.display()
            );
            outln!("bootstrap: {bootstrap}");
            if !kafka_addrs.is_empty() {
                outln!("kafka: {}    (Kafka clients: docs/kafka.md)", kafka_addrs.join(","));
            }
            let flags = flags.unwrap_or_default();
            if pki.is_some() {
                outln!(
                    "secure: TLS on every broker, mutual TLS between brokers, authentication and ACLs on; \
                     the admin certificate logs in as super user {DEV_SUPER_USER}"
                );
            }
            outln!("try: silt -b {bootstrap}{flags} cluster info    (Ctrl-C stops the cluster)");
            if let Some(file) = &profile {
                outln!(
                    "or:  SILT_CONFIG={} silt cluster info    (profile {DEV_PROFILE})",
                    file.display()
                );
            }
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

/// Refuses a data directory made by a cluster of another size: its brokers would wait for
/// voters that never start (or a new broker would join a quorum that does not know it).
fn check_data_dir(a: &DevArgs) -> Result<(), CliError> {
    let Ok(entries) = std::fs::read_dir(&a.data_dir) else { return Ok(()) };
    let mut existing: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("broker-")?.parse().ok())
        .collect();
    existing.sort_unstable();
    if existing.is_empty() || existing == (1..=a.brokers).collect::<Vec<_>>() {
        return Ok(());
    }
    let n = existing.len();
    Err(CliError::failed(
        format!(
            "{} holds a {n}-broker cluster (broker-{}); start it with --brokers {n}, or use \
             another --data-dir for {} broker{}",
            a.data_dir.display(),
            existing.iter().map(u32::to_string).collect::<Vec<_>>().join(", broker-"),
            a.brokers,
            if a.brokers == 1 { "" } else { "s" }
        ),
        "DATA_DIR_MISMATCH",
    ))
}

/// Waits (bounded) until a broker reports every broker alive.
async fn wait_for_cluster(
    addrs: &[String],
    n: usize,
    tls: Option<silt_client::TlsOptions>,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let options = silt_client::ConnectOptions { tls, ..Default::default() };
    while Instant::now() < deadline {
        if let Ok(c) = silt_client::Client::connect_with(&addrs[..1], options.clone()).await
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

/// The super user of `silt dev --secure` (its `admin` certificate's CN).
const DEV_SUPER_USER: &str = "User:admin";
/// The profile `silt dev --secure` writes.
const DEV_PROFILE: &str = "dev-secure";

/// Writes `DATA_DIR/silt.toml`, a profile file with the admin's connection settings.
fn write_profile(
    data_dir: &std::path::Path,
    bootstrap: &str,
    pki: &crate::dev_pki::DevPki,
) -> Result<std::path::PathBuf, CliError> {
    let (cert, key) = pki.admin();
    // Absolute: a profile's relative paths are relative to the profile file.
    let abs = |p: std::path::PathBuf| std::path::absolute(&p).unwrap_or(p);
    let profile = crate::profile::Profile {
        bootstrap: Some(bootstrap.to_string()),
        tls_ca: Some(abs(pki.ca())),
        tls_cert: Some(abs(cert)),
        tls_key: Some(abs(key)),
        user: None,
    };
    let path = data_dir.join("silt.toml");
    std::fs::write(&path, crate::profile::render(DEV_PROFILE, &profile)).map_err(|e| {
        CliError::failed(format!("cannot write {}: {e}", path.display()), "START_FAILED")
    })?;
    Ok(path)
}
