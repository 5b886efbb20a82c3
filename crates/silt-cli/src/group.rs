//! `silt group list|describe|reset-offsets|delete`.

use serde_json::json;
use silt_client::{Client, Seek};

use crate::args::{GroupCmd, Output};
use crate::error::CliError;

pub async fn run(client: &Client, cmd: GroupCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        GroupCmd::List => {
            let groups = admin.list_groups().await?;
            match out {
                Output::Json => {
                    let v: Vec<_> = groups
                        .iter()
                        .map(|g| json!({"group": g.group, "state": g.state, "members": g.members, "coordinator": g.coordinator}))
                        .collect();
                    println!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    println!(
                        "{:<40} {:<12} {:>7} {:>11}",
                        "GROUP", "STATE", "MEMBERS", "COORDINATOR"
                    );
                    for g in &groups {
                        println!(
                            "{:<40} {:<12} {:>7} {:>11}",
                            g.group, g.state, g.members, g.coordinator
                        );
                    }
                }
            }
        }
        GroupCmd::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            let assignment = |list: &[silt_proto::v1::TopicPartitions]| -> Vec<serde_json::Value> {
                list.iter().map(|t| json!({"topic": t.topic, "partitions": t.partitions})).collect()
            };
            match out {
                Output::Json => {
                    let members: Vec<_> = d
                        .members
                        .iter()
                        .map(|m| {
                            json!({"member_id": m.member_id, "client_id": m.client_id,
                                   "instance_id": m.instance_id, "member_epoch": m.member_epoch,
                                   "assignment": assignment(&m.assignment),
                                   "target": assignment(&m.target)})
                        })
                        .collect();
                    let offsets: Vec<_> = d
                        .offsets
                        .iter()
                        .map(|o| {
                            json!({"topic": o.topic, "partition": o.partition, "committed": o.committed,
                                   "high_watermark": o.high_watermark, "lag": o.lag})
                        })
                        .collect();
                    println!(
                        "{}",
                        json!({"group": d.group, "state": d.state, "group_epoch": d.group_epoch,
                               "assignor": d.assignor, "coordinator": d.coordinator,
                               "members": members, "offsets": offsets})
                    );
                }
                Output::Text => {
                    println!(
                        "group {}  state {}  epoch {}  assignor {}  coordinator {}",
                        d.group, d.state, d.group_epoch, d.assignor, d.coordinator
                    );
                    println!("{:<36} {:<20} ASSIGNMENT", "MEMBER", "CLIENT");
                    for m in &d.members {
                        let parts: Vec<String> = m
                            .assignment
                            .iter()
                            .map(|t| {
                                let ps: Vec<String> =
                                    t.partitions.iter().map(u32::to_string).collect();
                                format!("{}:{}", t.topic, ps.join(","))
                            })
                            .collect();
                        println!("{:<36} {:<20} {}", m.member_id, m.client_id, parts.join(" "));
                    }
                    println!(
                        "{:<30} {:>9} {:>12} {:>14} {:>10}",
                        "TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG"
                    );
                    for o in &d.offsets {
                        println!(
                            "{:<30} {:>9} {:>12} {:>14} {:>10}",
                            o.topic, o.partition, o.committed, o.high_watermark, o.lag
                        );
                    }
                }
            }
        }
        GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_timestamp) {
                (true, _, _, _) => Seek::Earliest,
                (_, true, _, _) => Seek::Latest,
                (_, _, Some(o), _) if o < 0 => {
                    return Err(CliError::usage(format!("--to-offset {o} is negative")));
                }
                (_, _, Some(o), _) => Seek::Offset(o),
                (_, _, _, Some(ts)) => Seek::Timestamp(ts),
                _ => {
                    return Err(CliError::usage(
                        "say where to: --to-earliest, --to-latest, --to-offset or --to-timestamp",
                    ));
                }
            };
            let set = admin.reset_offsets(&group, &topic, to).await?;
            match out {
                Output::Json => {
                    let v: Vec<_> = set
                        .iter()
                        .map(|(tp, o)| json!({"partition": tp.partition, "offset": o}))
                        .collect();
                    println!("{}", json!({"group": group, "topic": topic, "offsets": v}));
                }
                Output::Text => {
                    for (tp, o) in &set {
                        println!("{} {} {}", tp.topic, tp.partition, o);
                    }
                }
            }
        }
        GroupCmd::Delete { group } => {
            admin.delete_group(&group).await?;
            match out {
                Output::Json => println!("{}", json!({"group": group, "deleted": true})),
                Output::Text => println!("deleted group {group}"),
            }
        }
    }
    Ok(())
}
