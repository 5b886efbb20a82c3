//! `silt cluster info`.

use serde_json::json;
use silt_client::Client;

use crate::args::{ClusterCmd, Output};
use crate::error::CliError;

pub async fn run(client: &Client, cmd: ClusterCmd, out: Output) -> Result<(), CliError> {
    match cmd {
        ClusterCmd::Info => {
            let c = client.admin().describe_cluster().await?;
            match out {
                Output::Json => {
                    let brokers: Vec<_> = c
                        .brokers
                        .iter()
                        .map(|b| json!({"id": b.node_id, "address": b.address, "rack": b.rack, "alive": b.alive, "decommissioning": b.decommissioning}))
                        .collect();
                    let doc = json!({"controller": c.controller_id, "raft_term": c.raft_term, "cluster_id": c.cluster_id, "brokers": brokers});
                    outln!("{doc}");
                }
                Output::Text => {
                    let controller =
                        c.controller_id.map_or("none".to_string(), |id| id.to_string());
                    outln!(
                        "cluster {}  controller {}  raft term {}",
                        c.cluster_id,
                        controller,
                        c.raft_term
                    );
                    outln!("{:<6} {:<24} {:<10} ALIVE", "ID", "ADDRESS", "RACK");
                    for b in &c.brokers {
                        let alive = match (b.alive, b.decommissioning) {
                            (true, false) => "yes",
                            (true, true) => "yes (decommissioning)",
                            (false, false) => "no",
                            (false, true) => "no (decommissioning)",
                        };
                        outln!(
                            "{:<6} {:<24} {:<10} {alive}",
                            b.node_id,
                            b.address,
                            b.rack.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            Ok(())
        }
        ClusterCmd::ElectLeaders { topic } => {
            crate::reassign::elect_leaders(client, topic, out).await
        }
    }
}
