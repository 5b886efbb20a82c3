//! Prometheus metrics, served as text (exposition format 0.0.4) on the HTTP port's `/metrics`.
//! Counters and latency histograms are updated on the request path with relaxed atomics; gauges
//! (partition offsets and sizes, ISR health, controller state) are read at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::broker::Shared;

/// Upper bounds (seconds) of the request-latency buckets.
const LATENCY_BOUNDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The broker's counters and histograms.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub produce_requests: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub produce_partition_errors: AtomicU64,
    pub produce_latency: Histogram,
    pub fetch_requests: AtomicU64,
    pub fetch_bytes: AtomicU64,
    pub fetch_latency: Histogram,
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
    /// Times this broker took over the leadership of a partition.
    pub leader_elections: AtomicU64,
    /// Partition logs taken offline by a failed sync since the start.
    pub offline_logs: AtomicU64,
    /// Bytes the new replicas of the moves this broker leads have yet to copy.
    pub reassignment_bytes_remaining: AtomicU64,
    pub cleaner: CleanerMetrics,
}

/// What the log cleaners did (compacted topics).
#[derive(Debug, Default)]
pub(crate) struct CleanerMetrics {
    pub runs: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_freed: AtomicU64,
    pub records_removed: AtomicU64,
    pub last_run_micros: AtomicU64,
    /// The dirty ratio of every compacted partition hosted here, at its last check.
    pub dirty_ratio: std::sync::Mutex<std::collections::BTreeMap<(String, u32), f64>>,
}

impl CleanerMetrics {
    fn render(&self, out: &mut String) {
        counter(
            out,
            "silt_log_cleaner_runs_total",
            "Cleanings of compacted partitions.",
            &self.runs,
        );
        counter(
            out,
            "silt_log_cleaner_bytes_cleaned_total",
            "Bytes of sealed segments the cleaners read and rewrote.",
            &self.bytes_read,
        );
        counter(
            out,
            "silt_log_cleaner_bytes_freed_total",
            "Bytes the cleaners removed from compacted logs.",
            &self.bytes_freed,
        );
        counter(
            out,
            "silt_log_cleaner_records_removed_total",
            "Records the cleaners removed (superseded, expired tombstones, aborted).",
            &self.records_removed,
        );
        gauge(
            out,
            "silt_log_cleaner_last_run_seconds",
            "How long the last cleaning took.",
            self.last_run_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        let _ = writeln!(
            out,
            "# HELP silt_log_cleaner_dirty_ratio Dirty share of a compacted partition's cleanable              log (the cleaner's lag; cleaned at min.cleanable.dirty.ratio).
             # TYPE silt_log_cleaner_dirty_ratio gauge"
        );
        let ratios = self.dirty_ratio.lock().unwrap_or_else(|p| p.into_inner());
        for ((t, p), r) in ratios.iter() {
            let t = label(t);
            let _ = writeln!(
                out,
                "silt_log_cleaner_dirty_ratio{{topic=\"{t}\",partition=\"{p}\"}} {r}"
            );
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        v.load(Ordering::Relaxed)
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole scrape.
pub(crate) fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut out = String::with_capacity(8 * 1024);
    counter(
        &mut out,
        "silt_produce_requests_total",
        "Produce requests served.",
        &m.produce_requests,
    );
    counter(
        &mut out,
        "silt_produce_bytes_total",
        "Record bytes received in produce requests.",
        &m.produce_bytes,
    );
    counter(
        &mut out,
        "silt_produce_partition_errors_total",
        "Partitions of produce requests answered with an error.",
        &m.produce_partition_errors,
    );
    m.produce_latency.render(&mut out, "silt_produce_latency_seconds", "Produce request latency.");
    gauge(
        &mut out,
        "silt_produce_queued_bytes",
        "Produce bytes received (or being read) but not yet appended; at most max_queued_produce_bytes.",
        shared.produce_budget.in_use(),
    );
    counter(&mut out, "silt_fetch_requests_total", "Fetch requests served.", &m.fetch_requests);
    counter(
        &mut out,
        "silt_fetch_bytes_total",
        "Record bytes sent in fetch responses.",
        &m.fetch_bytes,
    );
    m.fetch_latency.render(
        &mut out,
        "silt_fetch_latency_seconds",
        "Fetch request latency (long polls included).",
    );
    counter(
        &mut out,
        "silt_isr_shrinks_total",
        "ISR shrinks committed by this broker as leader.",
        &m.isr_shrinks,
    );
    counter(
        &mut out,
        "silt_isr_expands_total",
        "ISR expansions committed by this broker as leader.",
        &m.isr_expands,
    );
    counter(
        &mut out,
        "silt_leader_elections_total",
        "Partition leaderships this broker took over.",
        &m.leader_elections,
    );
    // Summed over the hosted replicas (a deleted topic's count goes with it).
    let corruptions: u64 = shared.replicas.all().iter().map(|p| p.state().corruptions).sum();
    let _ = writeln!(
        out,
        "# HELP silt_log_corruptions_total Reads of the hosted replicas that found corrupt bytes \
         (CRC or framing) since they were opened; each is logged with its segment and \
         position.\n# TYPE silt_log_corruptions_total counter\nsilt_log_corruptions_total {corruptions}"
    );
    counter(
        &mut out,
        "silt_offline_logs_total",
        "Partition logs taken offline on this broker by a failed sync (until a restart).",
        &m.offline_logs,
    );

    let me = shared.config.node_id;
    let (mut led, mut under, mut offline) = (0u64, 0u64, 0u64);
    let c = &shared.cluster;
    let image = c.image();
    for t in image.topics.values() {
        for p in &t.partitions {
            if p.leader.is_none() {
                offline += 1;
            }
            if p.leader == Some(me) {
                led += 1;
                if p.isr.len() < p.replicas.len() {
                    under += 1;
                }
            }
        }
    }
    gauge(
        &mut out,
        "silt_controller",
        "1 when this broker is the controller (the Raft leader).",
        u8::from(c.node.leader() == Some(me)),
    );
    gauge(&mut out, "silt_raft_term", "Current Raft term of the metadata quorum.", c.node.term());
    gauge(
        &mut out,
        "silt_raft_leader",
        "Node id of the Raft leader (-1: none known).",
        c.node.leader().map_or(-1, |l| l as i64),
    );
    gauge(
        &mut out,
        "silt_brokers_alive",
        "Registered, unfenced brokers in the cluster image.",
        image.brokers.values().filter(|b| !b.fenced).count(),
    );
    gauge(&mut out, "silt_partitions_led", "Partitions this broker leads.", led);
    gauge(
        &mut out,
        "silt_topic_config_errors",
        "Topics whose stored config this broker cannot apply (kept on their previous config, or \
         offline here when they had none).",
        shared.config_error_count(),
    );
    gauge(
        &mut out,
        "silt_under_replicated_partitions",
        "Partitions led here whose ISR is smaller than their replica set.",
        under,
    );
    gauge(
        &mut out,
        "silt_offline_partitions",
        "Partitions without a leader (cluster view).",
        offline,
    );

    let mut rows = Vec::new();
    for t in shared.replicas.topics() {
        for (p, h) in shared.replicas.partitions(&t).unwrap_or_default() {
            rows.push((label(&t), p, h.state()));
        }
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (name, help, f) in [
        (
            "silt_log_size_bytes",
            "Bytes of the partition replica's log segments.",
            (|s: &crate::partition::PartitionState| s.size_bytes)
                as fn(&crate::partition::PartitionState) -> u64,
        ),
        ("silt_log_start_offset", "First offset of the partition replica.", |s| s.log_start.0),
        ("silt_log_end_offset", "Log end offset of the partition replica.", |s| s.log_end.0),
        ("silt_high_watermark", "High watermark of the partition replica.", |s| s.high_watermark.0),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (t, p, s) in &rows {
            let _ = writeln!(out, "{name}{{topic=\"{t}\",partition=\"{p}\"}} {}", f(s));
        }
    }
    // Where the producers' state is built here (leaders that served read_committed or
    // transactional produce, and followers): records not yet readable by read_committed.
    let _ = writeln!(
        out,
        "# HELP silt_last_stable_offset_lag High watermark minus last stable offset: records \
         held back from read_committed consumers by open transactions.\n\
         # TYPE silt_last_stable_offset_lag gauge"
    );
    for (t, p, s) in &rows {
        if let Some(lso) = s.last_stable {
            let lag = s.high_watermark.0.saturating_sub(lso.0);
            let _ = writeln!(
                out,
                "silt_last_stable_offset_lag{{topic=\"{t}\",partition=\"{p}\"}} {lag}"
            );
        }
    }
    render_balance(shared, &mut out);
    render_transactions(shared, &mut out);
    render_groups(shared, &mut out);
    render_share_groups(shared, &mut out);
    shared.metrics.cleaner.render(&mut out);
    out
}

/// Reassignment progress, and leader imbalance per broker (from the image: every broker
/// reports the same).
fn render_balance(shared: &Shared, out: &mut String) {
    gauge(
        out,
        "silt_reassignment_bytes_remaining",
        "Bytes the new replicas of partitions this broker leads still have to copy (replica moves).",
        shared.metrics.reassignment_bytes_remaining.load(Ordering::Relaxed),
    );
    let image = shared.cluster.image();
    let moving =
        image.topics.values().flat_map(|t| &t.partitions).filter(|p| p.reassignment.is_some());
    gauge(
        out,
        "silt_reassignments_in_progress",
        "Partitions being moved (cluster-wide).",
        moving.count(),
    );
    let _ = writeln!(
        out,
        "# HELP silt_leader_imbalance_ratio Of the partitions a broker is the preferred replica of, \
         the fraction another broker leads.\n# TYPE silt_leader_imbalance_ratio gauge"
    );
    for (b, (preferred, not_led)) in crate::balance::imbalance(&image) {
        let ratio = if preferred == 0 { 0.0 } else { not_led as f64 / preferred as f64 };
        let _ = writeln!(out, "silt_leader_imbalance_ratio{{broker=\"{b}\"}} {ratio}");
    }
}

/// The transaction coordinator's counters and the transactions open in it now.
fn render_transactions(shared: &Shared, out: &mut String) {
    use silt_core::txn::TxnState;
    let t = &shared.txn;
    counter(
        out,
        "silt_transactions_committed_total",
        "Transactions committed by this coordinator.",
        &t.commits,
    );
    counter(
        out,
        "silt_transactions_aborted_total",
        "Transactions aborted by this coordinator (by the producer, a new incarnation, or the timeout).",
        &t.aborts,
    );
    counter(
        out,
        "silt_transactions_timed_out_total",
        "Transactions this coordinator aborted at their timeout.",
        &t.timed_out,
    );
    let open = crate::txn::coordinator::listed(shared)
        .iter()
        .filter(|l| {
            matches!(
                l.txn.state,
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
            )
        })
        .count();
    gauge(
        out,
        "silt_transactions_ongoing",
        "Transactions open or being completed at this coordinator.",
        open,
    );
}

/// Consumer groups this broker coordinates: members, committed offsets and lag.
fn render_groups(shared: &Shared, out: &mut String) {
    let groups = crate::groups::coordinator::metrics(shared);
    let _ = writeln!(
        out,
        "# HELP silt_group_members Members of each consumer group coordinated here.\n\
         # TYPE silt_group_members gauge"
    );
    for g in &groups {
        let _ = writeln!(out, "silt_group_members{{group=\"{}\"}} {}", label(&g.group), g.members);
    }
    let _ = writeln!(
        out,
        "# HELP silt_group_committed_offset Committed offset per group and partition.\n\
         # TYPE silt_group_committed_offset gauge"
    );
    for g in &groups {
        for (t, p, committed, _) in &g.offsets {
            let _ = writeln!(
                out,
                "silt_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {committed}",
                label(&g.group),
                label(t)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP silt_group_lag Records between the committed offset and the high watermark, per \
         group and partition (partitions with a replica on the coordinator's broker).\n\
         # TYPE silt_group_lag gauge"
    );
    for g in &groups {
        for (t, p, _, lag) in &g.offsets {
            if let Some(lag) = lag {
                let _ = writeln!(
                    out,
                    "silt_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {lag}",
                    label(&g.group),
                    label(t)
                );
            }
        }
    }
}

/// Share groups this broker coordinates: members, records held, and what was redelivered,
/// archived and dead-lettered since the coordinator loaded them.
fn render_share_groups(shared: &Shared, out: &mut String) {
    let groups = crate::share::coordinator::metrics(shared);
    type Pick = fn(&crate::share::coordinator::GroupMetrics) -> u64;
    let series: [(&str, &str, &str, Pick); 5] = [
        (
            "silt_share_group_members",
            "gauge",
            "Members of each share group coordinated here.",
            |g| g.members as u64,
        ),
        (
            "silt_share_group_in_flight",
            "gauge",
            "Records held by members (acquired, not yet acknowledged).",
            |g| g.in_flight,
        ),
        (
            "silt_share_group_redeliveries_total",
            "counter",
            "Records delivered again (released, or their lock expired).",
            |g| g.counters.redeliveries,
        ),
        (
            "silt_share_group_archived_total",
            "counter",
            "Records archived (rejected, or at the delivery limit).",
            |g| g.counters.archived,
        ),
        (
            "silt_share_group_dead_lettered_total",
            "counter",
            "Archived records written to the topic's share.dead.letter.topic.",
            |g| g.counters.dead_lettered,
        ),
    ];
    for (name, kind, help, pick) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &groups {
            let _ = writeln!(out, "{name}{{group=\"{}\"}} {}", label(&g.group), pick(g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
