//! Share groups on the command line: `consume --share-group` (print, then ACCEPT; `--reject-if`
//! REJECTs), `share-group list|describe|delete`, and `bench consume --share-group --members`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use silt_client::{
    AckKind, AckMode, Client, ConsumerRecord, ShareConfig, ShareConsumer, ShareRecord, ShareStart,
};
use silt_proto::v1;

use crate::args::{BenchConsumeArgs, ConsumeArgs, Output, ShareGroupCmd};
use crate::bench::{Report, histogram};
use crate::error::CliError;
use crate::output::write_error;

fn as_consumer_record(r: &ShareRecord) -> ConsumerRecord {
    ConsumerRecord {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.clone(),
    }
}

/// `silt consume T --share-group G`: each record printed, then accepted (or rejected when its
/// value matches `--reject-if`); Ctrl-C or the stop conditions send the acknowledgements and
/// leave.
pub async fn consume(client: &Client, a: ConsumeArgs, output: Output) -> Result<(), CliError> {
    let group = a.share_group.clone().unwrap_or_default();
    let reject = match &a.reject_if {
        Some(r) => {
            Some(regex::Regex::new(r).map_err(|e| CliError::usage(format!("--reject-if: {e}")))?)
        }
        None => None,
    };
    // The topic must exist: a share group may subscribe to a missing one, the CLI says so.
    client.partition_count(&a.topic).await?;
    let config = ShareConfig {
        client_id: "silt-cli".into(),
        ack_mode: AckMode::Explicit,
        start: if a.from_beginning { ShareStart::Earliest } else { ShareStart::Latest },
        ..ShareConfig::new(&group, &[a.topic.as_str()])
    };
    let mut consumer = ShareConsumer::join(client, config).await?;
    let json = output == Output::Json;
    let format = crate::produce::unescape(&a.format);
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let idle = a.timeout_ms.map(Duration::from_millis);
    let mut last = Instant::now();
    let mut printed = 0u64;
    let stopping = crate::consume::stop_signal();
    tokio::pin!(stopping);
    let result = loop {
        if a.count.is_some_and(|n| printed >= n) || idle.is_some_and(|d| last.elapsed() >= d) {
            break Ok(());
        }
        let records = tokio::select! {
            r = consumer.poll() => r,
            () = &mut stopping => break Ok(()),
        };
        let records = match records {
            Ok(r) => r,
            Err(e) => break Err(CliError::from(e)),
        };
        if !records.is_empty() {
            last = Instant::now();
        }
        let mut failed = None;
        for r in &records {
            if a.count.is_some_and(|n| printed >= n) {
                // Not printed: give it back to the group at once.
                consumer.acknowledge(r, AckKind::Release);
                continue;
            }
            if failed.is_some() {
                consumer.acknowledge(r, AckKind::Release);
                continue;
            }
            let value = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            if reject.as_ref().is_some_and(|re| re.is_match(&value)) {
                eprintln!("rejected {}/{}@{}", r.topic, r.partition, r.offset);
                consumer.acknowledge(r, AckKind::Reject);
                continue;
            }
            let line = if json {
                let mut v = crate::record_json::record_to_json(&as_consumer_record(r));
                v["delivery_count"] = json!(r.delivery_count);
                v.to_string()
            } else {
                crate::consume::render(&format, &as_consumer_record(r))
            };
            // Accept only what reached stdout: flush before acknowledging.
            let written = out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            match written {
                Ok(()) => {
                    consumer.acknowledge(r, AckKind::Accept);
                    printed += 1;
                }
                Err(e) => {
                    consumer.acknowledge(r, AckKind::Release);
                    failed = Some(write_error(e));
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
    };
    consumer.close().await?;
    result
}

pub async fn run(client: &Client, cmd: ShareGroupCmd, out: Output) -> Result<(), CliError> {
    let admin = client.admin();
    match cmd {
        ShareGroupCmd::List => {
            let all = admin.list_share_groups().await?;
            match out {
                Output::Json => {
                    let v: Vec<_> = all
                        .iter()
                        .map(|g| {
                            json!({"group": g.group, "members": g.members,
                                   "in_flight": g.in_flight, "coordinator": g.coordinator})
                        })
                        .collect();
                    outln!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    outln!(
                        "{:<32} {:>7} {:>9} {:>11}",
                        "SHARE GROUP",
                        "MEMBERS",
                        "IN FLIGHT",
                        "COORDINATOR"
                    );
                    for g in &all {
                        outln!(
                            "{:<32} {:>7} {:>9} {:>11}",
                            g.group,
                            g.members,
                            g.in_flight,
                            g.coordinator
                        );
                    }
                }
            }
        }
        ShareGroupCmd::Describe { group } => {
            let d = admin.describe_share_group(&group).await?;
            match out {
                Output::Json => outln!("{}", describe_json(&d)),
                Output::Text => describe_text(&d)?,
            }
        }
        ShareGroupCmd::Delete { group } => {
            admin.delete_share_group(&group).await?;
            if out == Output::Json {
                outln!("{}", json!({"deleted": group}));
            } else {
                outln!("deleted share group {group}");
            }
        }
    }
    Ok(())
}

fn assignment(list: &[v1::TopicPartitions]) -> Vec<String> {
    list.iter()
        .flat_map(|tp| tp.partitions.iter().map(move |p| format!("{}/{p}", tp.topic)))
        .collect()
}

fn describe_json(d: &v1::DescribeShareGroupResponse) -> serde_json::Value {
    let members: Vec<_> = d
        .members
        .iter()
        .map(|m| {
            json!({"member_id": m.member_id, "client_id": m.client_id, "member_epoch": m.member_epoch,
                   "acquired": m.acquired,
                   "assignment": m.assignment.iter().map(|t| json!({"topic": t.topic, "partitions": t.partitions})).collect::<Vec<_>>()})
        })
        .collect();
    let partitions: Vec<_> = d
        .partitions
        .iter()
        .map(|p| {
            json!({"topic": p.topic, "partition": p.partition, "start_offset": p.start_offset,
                   "end_offset": p.end_offset, "acquired": p.acquired, "in_flight": p.in_flight,
                   "lag": if p.lag < 0 { json!(null) } else { json!(p.lag) }})
        })
        .collect();
    json!({"group": d.group, "state": d.state, "members": members, "partitions": partitions,
           "redeliveries": d.redeliveries, "archived": d.archived, "dead_lettered": d.dead_lettered})
}

fn describe_text(d: &v1::DescribeShareGroupResponse) -> Result<(), CliError> {
    outln!("share group:   {}", d.group);
    outln!("state:         {}", d.state);
    outln!("redelivered:   {}", d.redeliveries);
    outln!("archived:      {} ({} dead-lettered)", d.archived, d.dead_lettered);
    outln!("");
    outln!("{:<36} {:<16} {:>8} ASSIGNMENT", "MEMBER", "CLIENT", "ACQUIRED");
    for m in &d.members {
        outln!(
            "{:<36} {:<16} {:>8} {}",
            m.member_id,
            m.client_id,
            m.acquired,
            assignment(&m.assignment).join(" ")
        );
    }
    outln!("");
    outln!(
        "{:<24} {:>9} {:>12} {:>12} {:>8} {:>9} {:>8}",
        "TOPIC",
        "PARTITION",
        "START (SPSO)",
        "END (SPEO)",
        "ACQUIRED",
        "IN FLIGHT",
        "LAG"
    );
    for p in &d.partitions {
        let lag = if p.lag < 0 { "-".to_string() } else { p.lag.to_string() };
        outln!(
            "{:<24} {:>9} {:>12} {:>12} {:>8} {:>9} {:>8}",
            p.topic,
            p.partition,
            p.start_offset,
            p.end_offset,
            p.acquired,
            p.in_flight,
            lag
        );
    }
    Ok(())
}

/// `bench consume --share-group G --members N [--work-ms MS]`: N members share the topic from
/// its start, each accepting its records (after sleeping `work_ms` per record); stops when
/// `--records` were accepted in all. Latency is each poll's round trip; `per_member` says how
/// the records were shared.
pub async fn bench(client: &Client, a: BenchConsumeArgs, out: Output) -> Result<(), CliError> {
    let group = a.share_group.clone().unwrap_or_default();
    if a.members == 0 {
        return Err(CliError::usage("--members must be at least 1"));
    }
    client.partition_count(&a.topic).await?;
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let target = a.records;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for m in 0..a.members {
        let member_client = client.clone();
        let (done, bytes, topic, group) =
            (done.clone(), bytes.clone(), a.topic.clone(), group.clone());
        let work = Duration::from_millis(a.work_ms);
        tasks.push(tokio::spawn(async move {
            let config = ShareConfig {
                client_id: format!("silt-bench-{m}"),
                start: ShareStart::Earliest,
                max_records: if work.is_zero() { 500 } else { 10 },
                max_wait: Duration::from_millis(200),
                ..ShareConfig::new(&group, &[topic.as_str()])
            };
            let mut c = ShareConsumer::join(&member_client, config).await?;
            let mut hist = histogram();
            let mut mine = 0u64;
            let mut last = Instant::now();
            while done.load(Ordering::Relaxed) < target && last.elapsed() < Duration::from_secs(10)
            {
                let t = Instant::now();
                let records = c.poll().await?;
                if records.is_empty() {
                    continue;
                }
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                last = Instant::now();
                for r in &records {
                    if !work.is_zero() {
                        tokio::time::sleep(work).await;
                    }
                    bytes.fetch_add(
                        r.value.as_ref().map_or(0, |v| v.len()) as u64,
                        Ordering::Relaxed,
                    );
                }
                done.fetch_add(records.len() as u64, Ordering::Relaxed);
                mine += records.len() as u64;
            }
            c.close().await?;
            Ok::<_, silt_client::ClientError>((hist, mine))
        }));
    }
    let mut hist = histogram();
    let mut per_member = Vec::new();
    for t in tasks {
        let (h, mine) =
            t.await.map_err(|e| CliError::failed(format!("member task: {e}"), "INTERNAL"))??;
        let _ = hist.add(h);
        per_member.push(mine);
    }
    let records = done.load(Ordering::Relaxed);
    let report = Report {
        records,
        bytes: bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        latency_us: hist,
        failed: 0,
    };
    match out {
        Output::Json => {
            let mut j = report.to_json();
            j["per_member"] = json!(per_member);
            outln!("{j}");
        }
        Output::Text => {
            report.print("consumed", out)?;
            outln!("records per member: {per_member:?}");
        }
    }
    if records < target {
        return Err(CliError::failed(
            format!("only {records} of {target} records arrived"),
            "INCOMPLETE",
        ));
    }
    Ok(())
}
