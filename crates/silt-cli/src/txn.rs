//! `silt txn list|describe`: the transaction coordinators' view of transactional ids.

use serde_json::json;
use silt_client::Client;
use silt_proto::v1::TransactionState;

use crate::args::{Output, TxnCmd};
use crate::error::CliError;

fn partitions(t: &TransactionState) -> Vec<String> {
    t.partitions
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(move |p| format!("{}/{p}", tp.topic)))
        .collect()
}

fn to_json(t: &TransactionState) -> serde_json::Value {
    let start = if t.start_time_ms > 0 { json!(t.start_time_ms) } else { json!(null) };
    json!({"transactional_id": t.transactional_id, "state": t.state,
           "producer_id": t.producer_id, "producer_epoch": t.producer_epoch,
           "timeout_ms": t.timeout_ms, "start_time_ms": start,
           "partitions": partitions(t), "coordinator": t.coordinator})
}

/// An RFC 3339 time for a start in ms since the Unix epoch ("-" when none is open).
fn started(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    crate::time::format_rfc3339(ms)
}

pub async fn run(client: &Client, cmd: TxnCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        TxnCmd::List => {
            let all = admin.list_transactions().await?;
            match out {
                Output::Json => {
                    let v: Vec<_> = all.iter().map(to_json).collect();
                    outln!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    outln!(
                        "{:<32} {:<15} {:>11} {:>6} {:>10} {:>11}",
                        "TRANSACTIONAL ID",
                        "STATE",
                        "PRODUCER ID",
                        "EPOCH",
                        "PARTITIONS",
                        "COORDINATOR"
                    );
                    for t in &all {
                        outln!(
                            "{:<32} {:<15} {:>11} {:>6} {:>10} {:>11}",
                            t.transactional_id,
                            t.state,
                            t.producer_id,
                            t.producer_epoch,
                            partitions(t).len(),
                            t.coordinator
                        );
                    }
                }
            }
        }
        TxnCmd::Describe { id } => {
            let t = admin.describe_transaction(&id).await?;
            match out {
                Output::Json => outln!("{}", to_json(&t)),
                Output::Text => {
                    outln!("transactional id: {}", t.transactional_id);
                    outln!("state:            {}", t.state);
                    outln!("producer:         id {} epoch {}", t.producer_id, t.producer_epoch);
                    outln!("coordinator:      broker {}", t.coordinator);
                    outln!("timeout:          {} ms", t.timeout_ms);
                    outln!("started:          {}", started(t.start_time_ms));
                    let parts = partitions(&t);
                    let shown = if parts.is_empty() { "-".into() } else { parts.join(" ") };
                    outln!("partitions:       {shown}");
                }
            }
        }
    }
    Ok(())
}
