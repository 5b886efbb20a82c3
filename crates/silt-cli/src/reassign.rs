//! `silt partition reassign|reassignments`, `silt cluster elect-leaders`,
//! `silt broker decommission|recommission`.

use std::time::Duration;

use serde_json::json;
use silt_client::Client;
use silt_proto::v1::{self, ErrorCode};

use crate::args::{BrokerCmd, Output, PartitionCmd};
use crate::error::CliError;

fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn code_name(code: i32) -> String {
    let c = ErrorCode::try_from(code).unwrap_or(ErrorCode::UnknownServerError);
    c.as_str_name().trim_start_matches("ERROR_CODE_").to_string()
}

/// A reassignment plan file (Kafka's `kafka-reassign-partitions` JSON).
#[derive(Debug, serde::Deserialize)]
struct Plan {
    partitions: Vec<PlanEntry>,
}

#[derive(Debug, serde::Deserialize)]
struct PlanEntry {
    topic: String,
    partition: u32,
    #[serde(default)]
    replicas: Vec<u64>,
}

/// The moves the arguments ask for.
fn moves(
    topic: Option<String>,
    partition: Option<u32>,
    replicas: Option<Vec<u64>>,
    plan: Option<std::path::PathBuf>,
    cancel: bool,
) -> Result<Vec<v1::PartitionReassignment>, CliError> {
    if let Some(path) = plan {
        if topic.is_some() || partition.is_some() {
            return Err(CliError::usage("give either TOPIC PARTITION or --plan, not both"));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| {
            CliError::usage(format!("{}: not a reassignment plan: {e}", path.display()))
        })?;
        if plan.partitions.is_empty() {
            return Err(CliError::usage(format!(
                "{}: the plan lists no partitions",
                path.display()
            )));
        }
        return plan
            .partitions
            .into_iter()
            .map(|e| {
                if !cancel && e.replicas.is_empty() {
                    return Err(CliError::usage(format!(
                        "{}: {}/{} has no replicas",
                        path.display(),
                        e.topic,
                        e.partition
                    )));
                }
                Ok(v1::PartitionReassignment {
                    topic: e.topic,
                    partition: e.partition,
                    replicas: e.replicas,
                    cancel,
                })
            })
            .collect();
    }
    let (Some(topic), Some(partition)) = (topic, partition) else {
        return Err(CliError::usage(
            "give TOPIC PARTITION (with --replicas or --cancel), or --plan FILE",
        ));
    };
    let replicas = match (replicas, cancel) {
        (Some(_), true) => return Err(CliError::usage("--cancel takes no --replicas")),
        (None, false) => return Err(CliError::usage("give --replicas (e.g. 4,2,3) or --cancel")),
        (r, _) => r.unwrap_or_default(),
    };
    Ok(vec![v1::PartitionReassignment { topic, partition, replicas, cancel }])
}

pub async fn partition(client: &Client, cmd: PartitionCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        PartitionCmd::Reassign {
            topic,
            partition,
            replicas,
            plan,
            dry_run,
            throttle_bytes_per_sec,
            cancel,
        } => {
            let moves = moves(topic, partition, replicas, plan, cancel)?;
            let results = admin
                .alter_partition_reassignments(
                    moves.clone(),
                    dry_run,
                    throttle_bytes_per_sec.unwrap_or(0),
                )
                .await?;
            let failed = results.iter().filter(|r| r.error_code != ErrorCode::None as i32).count();
            match out {
                Output::Json => {
                    let rows: Vec<_> = moves
                        .iter()
                        .zip(&results)
                        .map(|(m, r)| {
                            let error = (r.error_code != ErrorCode::None as i32)
                                .then(|| json!({"code": code_name(r.error_code), "message": r.error_message}));
                            json!({"topic": m.topic, "partition": m.partition, "replicas": m.replicas,
                                   "cancel": m.cancel, "error": error})
                        })
                        .collect();
                    outln!("{}", json!({"dry_run": dry_run, "results": rows}));
                }
                Output::Text => {
                    for (m, r) in moves.iter().zip(&results) {
                        let what = match (m.cancel, dry_run) {
                            (true, true) => "would cancel the move".to_string(),
                            (true, false) => "move cancelled".to_string(),
                            (false, true) => format!("would move to {}", ids(&m.replicas)),
                            (false, false) => format!("moving to {}", ids(&m.replicas)),
                        };
                        if r.error_code == ErrorCode::None as i32 {
                            outln!("{}/{}: {what}", m.topic, m.partition);
                        } else {
                            outln!(
                                "{}/{}: error: {} ({})",
                                m.topic,
                                m.partition,
                                r.error_message,
                                code_name(r.error_code)
                            );
                        }
                    }
                }
            }
            if failed > 0 {
                let first = results.iter().find(|r| r.error_code != ErrorCode::None as i32);
                let code = first.map_or("UNKNOWN_SERVER_ERROR".into(), |r| code_name(r.error_code));
                return Err(CliError::failed(
                    format!("{failed} of {} partitions refused", results.len()),
                    code,
                ));
            }
        }
        PartitionCmd::Reassignments => {
            let list = admin.list_partition_reassignments().await?;
            let behind = |r: &v1::OngoingReassignment| -> Vec<(u64, Option<u64>)> {
                r.adding
                    .iter()
                    .map(|b| {
                        let bytes = r
                            .progress
                            .iter()
                            .find(|p| p.replica == *b)
                            .map(|p| if r.isr.contains(b) { 0 } else { p.bytes_behind });
                        (*b, bytes)
                    })
                    .collect()
            };
            match out {
                Output::Json => {
                    let rows: Vec<_> = list
                        .iter()
                        .map(|r| {
                            let progress: Vec<_> = behind(r)
                                .into_iter()
                                .map(|(b, bytes)| json!({"replica": b, "in_sync": r.isr.contains(&b), "bytes_behind": bytes}))
                                .collect();
                            json!({"topic": r.topic, "partition": r.partition, "replicas": r.replicas,
                                   "target": r.target, "adding": r.adding, "removing": r.removing,
                                   "isr": r.isr, "leader": r.leader,
                                   "throttle_bytes_per_sec": r.throttle_bytes_per_sec,
                                   "progress": progress})
                        })
                        .collect();
                    outln!("{}", json!({"reassignments": rows}));
                }
                Output::Text => {
                    if list.is_empty() {
                        outln!("no reassignments in progress");
                    }
                    for r in &list {
                        let progress: Vec<String> = behind(r)
                            .into_iter()
                            .map(|(b, bytes)| match bytes {
                                _ if r.isr.contains(&b) => format!("{b}: in sync"),
                                Some(n) => format!("{b}: {n} bytes behind"),
                                None => format!("{b}: unknown"),
                            })
                            .collect();
                        outln!(
                            "{}/{}: {} -> {}  adding {}  removing {}  isr {}  ({})",
                            r.topic,
                            r.partition,
                            ids(&r.replicas),
                            ids(&r.target),
                            ids(&r.adding),
                            ids(&r.removing),
                            ids(&r.isr),
                            progress.join("; ")
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

pub async fn elect_leaders(
    client: &Client,
    topic: Option<String>,
    out: Output,
) -> Result<(), CliError> {
    let results = client.admin().elect_leaders(topic.into_iter().collect()).await?;
    let elected = results.iter().filter(|r| r.error_code == ErrorCode::None as i32).count();
    let hard = |r: &&v1::ElectionResult| {
        ![ErrorCode::None as i32, ErrorCode::ElectionNotNeeded as i32].contains(&r.error_code)
    };
    match out {
        Output::Json => {
            let rows: Vec<_> = results
                .iter()
                .map(|r| {
                    let error = (r.error_code != ErrorCode::None as i32).then(|| code_name(r.error_code));
                    json!({"topic": r.topic, "partition": r.partition, "leader": r.leader, "error": error})
                })
                .collect();
            outln!("{}", json!({"elected": elected, "results": rows}));
        }
        Output::Text => {
            for r in &results {
                match r.leader {
                    Some(l) if r.error_code == ErrorCode::None as i32 => {
                        outln!("{}/{}: leader {l}", r.topic, r.partition)
                    }
                    _ if r.error_code == ErrorCode::ElectionNotNeeded as i32 => {}
                    _ => outln!(
                        "{}/{}: {} ({})",
                        r.topic,
                        r.partition,
                        r.error_message,
                        code_name(r.error_code)
                    ),
                }
            }
            outln!("elected {elected} preferred leaders");
        }
    }
    // As kafka-leader-election: exit 1 when a partition could not be handed to its preferred
    // replica (the others were).
    let failed: Vec<&v1::ElectionResult> = results.iter().filter(hard).collect();
    if let Some(r) = failed.first() {
        let what = if failed.len() == 1 && r.error_code == ErrorCode::UnknownTopic as i32 {
            r.error_message.clone()
        } else {
            format!("{} partitions keep their leader: {}", failed.len(), r.error_message)
        };
        return Err(CliError::failed(what, code_name(r.error_code)));
    }
    Ok(())
}

/// Replicas broker `id` holds (as a current or a target replica), over every topic.
async fn held(client: &Client, id: u64) -> Result<usize, CliError> {
    let topics = client.admin().list_topics().await?;
    Ok(topics.iter().flat_map(|t| &t.partitions).filter(|p| p.replicas.contains(&id)).count())
}

pub async fn broker(client: &Client, cmd: BrokerCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        BrokerCmd::Decommission { id, throttle_bytes_per_sec, no_wait, timeout_ms } => {
            let moves = admin.decommission_broker(id, throttle_bytes_per_sec.unwrap_or(0)).await?;
            if out == Output::Text {
                outln!("broker {id}: decommissioning, {moves} replica moves started");
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            let mut last = None;
            let remaining = loop {
                let n = held(client, id).await?;
                if n == 0 || no_wait {
                    break n;
                }
                if last != Some(n) && out == Output::Text {
                    outln!("broker {id}: {n} replicas left to move");
                }
                last = Some(n);
                if tokio::time::Instant::now() >= deadline {
                    return Err(CliError::failed(
                        format!(
                            "broker {id} still holds {n} replicas after {timeout_ms} ms; the moves \
                             go on (silt partition reassignments)"
                        ),
                        "REQUEST_TIMED_OUT",
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            match out {
                Output::Json => outln!(
                    "{}",
                    json!({"broker": id, "decommissioning": true, "moves": moves, "replicas_left": remaining})
                ),
                Output::Text if remaining == 0 => {
                    outln!("broker {id} holds no replicas; it can be stopped")
                }
                Output::Text => outln!("broker {id}: {remaining} replicas left to move"),
            }
        }
        BrokerCmd::Recommission { id } => {
            let cancelled = admin.recommission_broker(id).await?;
            match out {
                Output::Json => outln!(
                    "{}",
                    json!({"broker": id, "decommissioning": false, "cancelled": cancelled})
                ),
                Output::Text => {
                    outln!("broker {id}: recommissioned, {cancelled} replica moves cancelled")
                }
            }
        }
    }
    Ok(())
}
