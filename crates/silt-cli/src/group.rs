//! `silt group list|describe|reset-offsets|delete`.

use serde_json::json;
use silt_client::{Client, ResetTo, Seek};

use crate::args::{GroupCmd, Output};
use crate::error::CliError;
use crate::time::parse_time;

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
                    outln!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    outln!(
                        "{:<40} {:<12} {:>7} {:>11}",
                        "GROUP",
                        "STATE",
                        "MEMBERS",
                        "COORDINATOR"
                    );
                    for g in &groups {
                        outln!(
                            "{:<40} {:<12} {:>7} {:>11}",
                            g.group,
                            g.state,
                            g.members,
                            g.coordinator
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
                            let known = |v: i64| if v < 0 { json!(null) } else { json!(v) };
                            let lag = if o.committed < 0 || o.high_watermark < 0 {
                                json!(null)
                            } else {
                                json!(o.lag)
                            };
                            let owner =
                                if o.owner.is_empty() { json!(null) } else { json!(o.owner) };
                            json!({"topic": o.topic, "partition": o.partition, "owner": owner,
                                   "committed": known(o.committed),
                                   "high_watermark": known(o.high_watermark), "lag": lag})
                        })
                        .collect();
                    outln!(
                        "{}",
                        json!({"group": d.group, "state": d.state, "group_epoch": d.group_epoch,
                               "assignor": d.assignor, "coordinator": d.coordinator,
                               "members": members, "offsets": offsets})
                    );
                }
                Output::Text => {
                    outln!(
                        "group {}  state {}  epoch {}  assignor {}  coordinator {}",
                        d.group,
                        d.state,
                        d.group_epoch,
                        d.assignor,
                        d.coordinator
                    );
                    outln!("{:<36} {:<20} ASSIGNMENT", "MEMBER", "CLIENT");
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
                        outln!("{:<36} {:<20} {}", m.member_id, m.client_id, parts.join(" "));
                    }
                    outln!(
                        "{:<30} {:>9} {:>12} {:>14} {:>10}  {}",
                        "TOPIC",
                        "PARTITION",
                        "COMMITTED",
                        "HIGH-WATERMARK",
                        "LAG",
                        "OWNER"
                    );
                    let known = |v: i64| if v < 0 { "-".to_string() } else { v.to_string() };
                    let mut past_end = false;
                    for o in &d.offsets {
                        let lag = if o.committed < 0 || o.high_watermark < 0 {
                            "-".to_string()
                        } else {
                            past_end |= o.lag < 0;
                            o.lag.to_string()
                        };
                        let owner = if o.owner.is_empty() { "-" } else { &o.owner };
                        outln!(
                            "{:<30} {:>9} {:>12} {:>14} {:>10}  {}",
                            o.topic,
                            o.partition,
                            known(o.committed),
                            known(o.high_watermark),
                            lag,
                            owner
                        );
                    }
                    if past_end {
                        outln!(
                            "a negative lag is a commit past the end of the log (a re-created \
                             topic?): members reset those partitions to their reset policy"
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
            to_datetime,
            shift_by,
            dry_run,
        } => {
            let to = if to_earliest {
                ResetTo::Seek(Seek::Earliest)
            } else if to_latest {
                ResetTo::Seek(Seek::Latest)
            } else if let Some(o) = to_offset {
                if o < 0 {
                    return Err(CliError::usage(format!("--to-offset {o} is negative")));
                }
                ResetTo::Seek(Seek::Offset(o))
            } else if let Some(t) = to_timestamp.or(to_datetime) {
                ResetTo::Seek(Seek::Timestamp(parse_time(&t)?))
            } else if let Some(by) = shift_by {
                ResetTo::ShiftBy(by)
            } else {
                return Err(CliError::usage(
                    "say where to: --to-earliest, --to-latest, --to-offset, --to-timestamp, \
                     --to-datetime or --shift-by",
                ));
            };
            let plan = admin.plan_reset(&group, &topic, to).await?;
            if !dry_run {
                admin.reset_offsets(&group, &topic, to).await?;
            }
            match out {
                Output::Json => {
                    let v: Vec<_> = plan
                        .iter()
                        .map(|p| json!({"partition": p.tp.partition, "previous": p.current, "offset": p.new}))
                        .collect();
                    outln!(
                        "{}",
                        json!({"group": group, "topic": topic, "dry_run": dry_run, "offsets": v})
                    );
                }
                Output::Text => {
                    if dry_run {
                        outln!("dry run: nothing changed");
                    }
                    outln!("{:<30} {:>9} {:>12} {:>12}", "TOPIC", "PARTITION", "CURRENT", "NEW");
                    for p in &plan {
                        let current = p.current.map_or("-".to_string(), |c| c.to_string());
                        outln!(
                            "{:<30} {:>9} {:>12} {:>12}",
                            p.tp.topic,
                            p.tp.partition,
                            current,
                            p.new
                        );
                    }
                }
            }
        }
        GroupCmd::Delete { group } => {
            admin.delete_group(&group).await?;
            match out {
                Output::Json => outln!("{}", json!({"group": group, "deleted": true})),
                Output::Text => outln!("deleted group {group}"),
            }
        }
    }
    Ok(())
}
