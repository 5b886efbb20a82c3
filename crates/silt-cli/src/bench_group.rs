//! `silt bench rebalance|commit`: consumer-group rebalance times and offset-commit throughput.
//!
//! Rebalance time is measured as a user sees it, from the members' side: from the moment a
//! member starts joining (or starts closing) until every partition is owned again by exactly the
//! members that remain, balanced within one partition (ownership as reported to the members'
//! rebalance listeners).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use silt_client::{
    BoxFuture, Client, CommitMode, Committer, GroupConfig, GroupConsumer, RebalanceListener,
    TopicPartition,
};

use crate::args::{BenchCommitArgs, BenchRebalanceArgs, Output};
use crate::bench::{Report, histogram};
use crate::error::CliError;

/// Longest wait for one rebalance before the bench gives up.
const REBALANCE_LIMIT: Duration = Duration::from_secs(60);

type Owners = Arc<Mutex<BTreeMap<usize, BTreeSet<u32>>>>;

struct Track {
    member: usize,
    owners: Owners,
}

impl RebalanceListener for Track {
    fn on_assigned<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        let mut o = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        o.entry(self.member).or_default().extend(partitions.iter().map(|tp| tp.partition));
        Box::pin(async {})
    }

    fn on_revoked<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
        _committer: &'a Committer,
    ) -> BoxFuture<'a, ()> {
        self.remove(partitions);
        Box::pin(async {})
    }

    fn on_lost<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        self.remove(partitions);
        Box::pin(async {})
    }
}

impl Track {
    fn remove(&self, partitions: &[TopicPartition]) {
        let mut o = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = o.get_mut(&self.member) {
            for tp in partitions {
                set.remove(&tp.partition);
            }
        }
    }
}

/// A member polling in its own task until told to stop; then it closes (a clean leave).
struct Running {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), silt_client::ClientError>>,
}

async fn start_member(
    client: &Client,
    group: &str,
    topic: &str,
    member: usize,
    owners: Owners,
) -> Result<Running, CliError> {
    let mut config = GroupConfig::new(group);
    config.client_id = format!("silt-bench-{member}");
    config.fetch.max_wait_ms = 100;
    let mut c: GroupConsumer = client.subscribe(config, vec![topic.to_string()]).await?;
    c.set_listener(Box::new(Track { member, owners }));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        while !flag.load(Ordering::SeqCst) {
            if c.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        c.close().await
    });
    Ok(Running { stop, task })
}

/// Every partition owned once, by exactly `members`, balanced within one.
fn settled(owners: &Owners, members: &BTreeSet<usize>, partitions: u32) -> bool {
    let o = owners.lock().unwrap_or_else(|p| p.into_inner());
    let mut seen = BTreeSet::new();
    let mut sizes = Vec::new();
    for (m, set) in o.iter() {
        if !members.contains(m) {
            if !set.is_empty() {
                return false;
            }
            continue;
        }
        sizes.push(set.len());
        for p in set {
            if !seen.insert(*p) {
                return false;
            }
        }
    }
    let balanced = sizes.len() == members.len()
        && sizes.iter().max().zip(sizes.iter().min()).is_some_and(|(a, b)| a - b <= 1);
    seen.len() == partitions as usize && balanced
}

async fn wait_settled(
    owners: &Owners,
    members: &BTreeSet<usize>,
    partitions: u32,
) -> Result<Duration, CliError> {
    let started = Instant::now();
    while !settled(owners, members, partitions) {
        if started.elapsed() > REBALANCE_LIMIT {
            return Err(CliError::failed("the group did not settle within 60 s", "TIMEOUT"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(started.elapsed())
}

fn summary(samples: &mut [f64]) -> serde_json::Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    json!({"p50": at(0.5), "p99": at(0.99), "max": at(1.0), "samples": samples.len()})
}

/// Starts `members`, then joins and removes one more member `a.rounds` times; the members it
/// started are left in `running` for the caller to stop. Returns join and leave times (ms).
async fn rebalance_rounds(
    client: &Client,
    a: &BenchRebalanceArgs,
    group: &str,
    members: usize,
    partitions: u32,
    owners: &Owners,
    running: &mut Vec<Running>,
) -> Result<(Vec<f64>, Vec<f64>), CliError> {
    let mut current = BTreeSet::new();
    for m in 0..members {
        running.push(start_member(client, group, &a.topic, m, owners.clone()).await?);
        current.insert(m);
    }
    wait_settled(owners, &current, partitions).await?;
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let id = members + round;
        let started = Instant::now();
        running.push(start_member(client, group, &a.topic, id, owners.clone()).await?);
        current.insert(id);
        wait_settled(owners, &current, partitions).await?;
        joins.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        let joiner = running.pop().expect("invariant: the joiner was just pushed");
        joiner.stop.store(true, Ordering::SeqCst);
        current.remove(&id);
        wait_settled(owners, &current, partitions).await?;
        leaves.push(started.elapsed().as_secs_f64() * 1000.0);
        let _ = joiner.task.await;
    }
    Ok((joins, leaves))
}

pub async fn rebalance(
    client: &Client,
    a: BenchRebalanceArgs,
    out: Output,
) -> Result<(), CliError> {
    let partitions = client.partition_count(&a.topic).await?;
    // The joining member must get a partition for a join to move anything.
    let members = a.members.unwrap_or_else(|| (partitions as usize).saturating_sub(1).min(3));
    if members == 0 || a.rounds == 0 {
        return Err(CliError::usage(format!(
            "--members and --rounds must be positive (topic {} has {partitions} partition{}: \
             a rebalance needs at least 2)",
            a.topic,
            if partitions == 1 { "" } else { "s" }
        )));
    }
    if members >= partitions as usize {
        return Err(CliError::usage(format!(
            "--members {members} leaves the joining member without a partition: topic {} has \
             {partitions}; use at most {}",
            a.topic,
            partitions.saturating_sub(1)
        )));
    }
    let group = format!("silt-bench-rebalance-{}", crate::bench_group_now_ms());
    let owners: Owners = Arc::default();
    let mut running = Vec::new();
    let measured =
        rebalance_rounds(client, &a, &group, members, partitions, &owners, &mut running).await;
    // Every member leaves and the group goes, also when a round failed.
    for r in running {
        r.stop.store(true, Ordering::SeqCst);
        let _ = r.task.await;
    }
    let _ = client.admin().delete_group(&group).await;
    let (mut joins, mut leaves) = measured?;
    let j = json!({"members": members, "partitions": partitions, "rounds": a.rounds,
                   "join_ms": summary(&mut joins), "leave_ms": summary(&mut leaves)});
    match out {
        Output::Json => outln!("{j}"),
        Output::Text => outln!(
            "{} rounds, {} members + 1 on {} partitions: join settles in ms p50 {:.0} p99 {:.0} max {:.0}; clean leave p50 {:.0} p99 {:.0} max {:.0}",
            a.rounds,
            members,
            partitions,
            j["join_ms"]["p50"].as_f64().unwrap_or(0.0),
            j["join_ms"]["p99"].as_f64().unwrap_or(0.0),
            j["join_ms"]["max"].as_f64().unwrap_or(0.0),
            j["leave_ms"]["p50"].as_f64().unwrap_or(0.0),
            j["leave_ms"]["p99"].as_f64().unwrap_or(0.0),
            j["leave_ms"]["max"].as_f64().unwrap_or(0.0),
        ),
    }
    Ok(())
}

pub async fn commit(client: &Client, a: BenchCommitArgs, out: Output) -> Result<(), CliError> {
    if a.committers == 0 {
        return Err(CliError::usage("--committers must be positive"));
    }
    let partitions = client.partition_count(&a.topic).await?;
    let group = format!("silt-bench-commit-{}", crate::bench_group_now_ms());
    let mut config = GroupConfig::new(&group);
    config.client_id = "silt-bench".into();
    config.commit = CommitMode::Manual;
    let consumer = client.subscribe(config, vec![a.topic.clone()]).await?;
    let committer = consumer.committer();
    let hist = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let per = a.commits.div_ceil(a.committers as u64);
    let mut tasks = Vec::new();
    for k in 0..a.committers {
        let (committer, hist, topic) = (committer.clone(), hist.clone(), a.topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0u64;
            for i in 0..per {
                let tp = TopicPartition {
                    topic: topic.clone(),
                    partition: (i as u32 + k as u32) % partitions,
                };
                let t = Instant::now();
                match committer.commit([(tp, i as i64)]).await {
                    Ok(()) => {
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = hist.lock().unwrap_or_else(|p| p.into_inner()).record(us);
                    }
                    Err(_) => failed += 1,
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap_or(per);
    }
    let seconds = started.elapsed().as_secs_f64();
    let latency_us = Arc::try_unwrap(hist)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| histogram());
    let report = Report {
        records: per * a.committers as u64 - failed,
        bytes: 0,
        seconds,
        latency_us,
        failed,
    };
    report.print("offset commits", out)?;
    consumer.close().await?;
    let _ = client.admin().delete_group(&group).await;
    Ok(())
}
