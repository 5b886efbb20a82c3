//! `silt topic create|list|describe|alter|delete`.

use std::collections::BTreeMap;

use serde_json::json;
use silt_client::Client;
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
                   "high_watermark": p.high_watermark})
        })
        .collect();
    let config: BTreeMap<_, _> = t.configs.iter().collect();
    json!({"name": t.name, "replication_factor": t.replication_factor, "config": config, "partitions": partitions})
}

fn list_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub async fn run(client: &Client, cmd: TopicCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        TopicCmd::Create { name, partitions, replication_factor, config } => {
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
                Output::Json => println!("{}", json!({"name": name, "created": true})),
                Output::Text => println!("created topic {name}"),
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
                    println!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    println!("{:<40} {:>10} {:>4}", "NAME", "PARTITIONS", "RF");
                    for t in &topics {
                        println!(
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
            let t = topics.first().ok_or_else(|| {
                CliError::failed(format!("unknown topic {name}"), "UNKNOWN_TOPIC")
            })?;
            match out {
                Output::Json => println!("{}", describe_json(t)),
                Output::Text => {
                    println!(
                        "topic {}  partitions {}  replication factor {}",
                        t.name,
                        t.partitions.len(),
                        t.replication_factor
                    );
                    let config: BTreeMap<_, _> = t.configs.iter().collect();
                    for (k, v) in config {
                        println!("  {k} = {v}");
                    }
                    println!(
                        "{:>9} {:>7} {:>6} {:<12} {:<12} {:>12} {:>14}",
                        "PARTITION",
                        "LEADER",
                        "EPOCH",
                        "REPLICAS",
                        "ISR",
                        "LOG-START",
                        "HIGH-WATERMARK"
                    );
                    for p in &t.partitions {
                        let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
                        println!(
                            "{:>9} {:>7} {:>6} {:<12} {:<12} {:>12} {:>14}",
                            p.partition,
                            leader,
                            p.leader_epoch,
                            list_ids(&p.replicas),
                            list_ids(&p.isr),
                            p.log_start_offset,
                            p.high_watermark
                        );
                    }
                }
            }
        }
        TopicCmd::Alter { name, config } => {
            let pairs = parse_configs(&config)?;
            let (delete, set): (BTreeMap<_, _>, BTreeMap<_, _>) =
                pairs.into_iter().partition(|(_, v)| v.is_empty());
            admin.alter_topic_config(&name, set, delete.into_keys().collect()).await?;
            match out {
                Output::Json => println!("{}", json!({"name": name, "altered": true})),
                Output::Text => println!("altered topic {name}"),
            }
        }
        TopicCmd::Delete { name } => {
            admin.delete_topic(&name).await?;
            match out {
                Output::Json => println!("{}", json!({"name": name, "deleted": true})),
                Output::Text => println!("deleted topic {name}"),
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
