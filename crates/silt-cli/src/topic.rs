//! `silt topic create|list|describe|alter|delete`.

use std::collections::BTreeMap;

use serde_json::json;
use silt_client::{Client, Seek, TopicPartition};
use silt_proto::v1;

use crate::args::{Output, TopicCmd};
use crate::error::CliError;

/// Parses `KEY=VALUE` flags.
fn parse_configs(pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::usage(format!("config {p:?} is not KEY=VALUE")))
        })
        .collect()
}

fn describe_json(t: &v1::TopicDescription) -> serde_json::Value {
    let partitions: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            json!({"partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                   "replicas": p.replicas, "isr": p.isr, "log_start_offset": p.log_start_offset,
                   "high_watermark": p.high_watermark, "adding_replicas": p.adding_replicas,
                   "removing_replicas": p.removing_replicas})
        })
        .collect();
    let config: BTreeMap<_, _> = t.configs.iter().collect();
    json!({"name": t.name, "replication_factor": t.replication_factor, "config": config, "partitions": partitions})
}

/// Asks each partition's leader for the log start and high watermark the answering broker did
/// not know (it hosts no replica of the partition); returns the partitions whose leader could
/// not be reached (their offsets stay -1).
async fn fill_offsets(client: &Client, t: &mut v1::TopicDescription) -> Vec<u32> {
    let name = &t.name;
    let missing =
        t.partitions.iter_mut().filter(|p| p.log_start_offset < 0 || p.high_watermark < 0);
    let asks = missing.map(|p| async move {
        let tp = TopicPartition { topic: name.clone(), partition: p.partition };
        let start = client.offset(&tp, Seek::Earliest).await;
        let end = client.offset(&tp, Seek::Latest).await;
        match (start, end) {
            (Ok(s), Ok(e)) => {
                p.log_start_offset = s;
                p.high_watermark = e;
                None
            }
            _ => Some(p.partition),
        }
    });
    futures_util::future::join_all(asks).await.into_iter().flatten().collect()
}

fn list_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub async fn run(client: &Client, cmd: TopicCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        TopicCmd::Create { name, partitions, replication_factor, config } => {
            // An omitted count means the brokers' default; an explicit 0 is an error, as with
            // kafka-topics (the wire's 0 means "default").
            if partitions == Some(0) {
                return Err(CliError::failed(
                    "a topic needs at least 1 partition",
                    "INVALID_PARTITIONS",
                ));
            }
            if replication_factor == Some(0) {
                return Err(CliError::failed(
                    "the replication factor must be at least 1",
                    "INVALID_REPLICATION_FACTOR",
                ));
            }
            let configs = parse_configs(&config)?;
            admin
                .create_topic(
                    &name,
                    partitions.unwrap_or(0),
                    replication_factor.unwrap_or(0),
                    configs,
                )
                .await?;
            match out {
                Output::Json => outln!("{}", json!({"name": name, "created": true})),
                Output::Text => outln!("created topic {name}"),
            }
        }
        TopicCmd::List => {
            // Internal topics (`__consumer_offsets`) are left out, as Kafka's admin client does;
            // `silt topic describe __consumer_offsets` shows it.
            let mut topics = admin.list_topics().await?;
            topics.retain(|t| !t.name.starts_with("__"));
            match out {
                Output::Json => {
                    let v: Vec<_> = topics
                        .iter()
                        .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "replication_factor": t.replication_factor}))
                        .collect();
                    outln!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    outln!("{:<40} {:>10} {:>4}", "NAME", "PARTITIONS", "RF");
                    for t in &topics {
                        outln!(
                            "{:<40} {:>10} {:>4}",
                            t.name,
                            t.partitions.len(),
                            t.replication_factor
                        );
                    }
                }
            }
        }
        TopicCmd::Describe { name } => {
            let topics = admin.describe_topics(std::slice::from_ref(&name)).await?;
            let mut t = topics.into_iter().next().ok_or_else(|| {
                CliError::failed(format!("unknown topic {name}"), "UNKNOWN_TOPIC")
            })?;
            let unreachable = fill_offsets(client, &mut t).await;
            let t = &t;
            match out {
                Output::Json => outln!("{}", describe_json(t)),
                Output::Text => {
                    outln!(
                        "topic {}  partitions {}  replication factor {}",
                        t.name,
                        t.partitions.len(),
                        t.replication_factor
                    );
                    let config: BTreeMap<_, _> = t.configs.iter().collect();
                    for (k, v) in config {
                        outln!("  {k} = {v}");
                    }
                    outln!(
                        "{:>9} {:>7} {:>6} {:<12} {:<12} {:>12} {:>14}",
                        "PARTITION",
                        "LEADER",
                        "EPOCH",
                        "REPLICAS",
                        "ISR",
                        "LOG-START",
                        "HIGH-WATERMARK"
                    );
                    let offset = |o: i64| if o < 0 { "?".to_string() } else { o.to_string() };
                    for p in &t.partitions {
                        let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
                        outln!(
                            "{:>9} {:>7} {:>6} {:<12} {:<12} {:>12} {:>14}",
                            p.partition,
                            leader,
                            p.leader_epoch,
                            list_ids(&p.replicas),
                            list_ids(&p.isr),
                            offset(p.log_start_offset),
                            offset(p.high_watermark)
                        );
                        if !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty() {
                            outln!(
                                "{:>9} moving: adding {} removing {}",
                                "",
                                list_ids(&p.adding_replicas),
                                list_ids(&p.removing_replicas)
                            );
                        }
                    }
                    if !unreachable.is_empty() {
                        let ps: Vec<String> = unreachable.iter().map(u32::to_string).collect();
                        outln!(
                            "offsets shown as ? : the leader of partition {} could not be reached",
                            ps.join(",")
                        );
                    }
                }
            }
        }
        TopicCmd::Alter { name, config, partitions } => {
            let pairs = parse_configs(&config)?;
            if partitions == Some(0) {
                return Err(CliError::failed(
                    "a topic needs at least 1 partition",
                    "INVALID_PARTITIONS",
                ));
            }
            if let Some(count) = partitions {
                admin.create_partitions(&name, count).await?;
            }
            if !pairs.is_empty() {
                let (delete, set): (BTreeMap<_, _>, BTreeMap<_, _>) =
                    pairs.into_iter().partition(|(_, v)| v.is_empty());
                admin.alter_topic_config(&name, set, delete.into_keys().collect()).await?;
            }
            match (out, partitions) {
                (Output::Json, _) => {
                    outln!("{}", json!({"name": name, "altered": true, "partitions": partitions}))
                }
                (Output::Text, Some(n)) => outln!("altered topic {name}: {n} partitions"),
                (Output::Text, None) => outln!("altered topic {name}"),
            }
        }
        TopicCmd::Delete { name } => {
            admin.delete_topic(&name).await?;
            match out {
                Output::Json => outln!("{}", json!({"name": name, "deleted": true})),
                Output::Text => outln!("deleted topic {name}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_must_be_key_value() {
        let m = parse_configs(&["retention.ms=1000".into(), "durability = fsync".into()]).unwrap();
        assert_eq!(m["retention.ms"], "1000");
        assert_eq!(m["durability"], "fsync");
        assert_eq!(parse_configs(&["nokey".into()]).unwrap_err().exit, 2);
        assert_eq!(parse_configs(&["=v".into()]).unwrap_err().exit, 2);
    }
}
