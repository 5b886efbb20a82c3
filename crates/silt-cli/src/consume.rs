//! `silt consume`: without a group, assign partitions, seek and print records in a format; with
//! `--group`, join the group, start at its committed offsets and commit what was printed.
//! SIGINT/SIGTERM and a closed stdout end it cleanly (exit 0): a group member commits what it
//! printed and leaves at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use silt_client::{
    Client, ClientError, CommitMode, ConsumerConfig, ConsumerRecord, Delivery, GroupConfig,
    Isolation, Seek, TopicPartition,
};

use crate::args::{ConsumeArgs, IsolationArg, Output};
use crate::error::CliError;
use crate::output::write_error;
use crate::produce::unescape;
/// Renders a record with the `%t %p %o %k %v %T %h` placeholders (`%%` is a percent sign);
/// `format` is already unescaped ([`unescape`]: `\t` and `\n` are a tab and a newline).
pub fn render(format: &str, r: &ConsumerRecord) -> String {
    let text = |b: &Option<bytes::Bytes>| {
        b.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned()
    };
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    't' => out.push_str(&r.topic),
                    'p' => out.push_str(&r.partition.to_string()),
                    'o' => out.push_str(&r.offset.to_string()),
                    'k' => out.push_str(&text(&r.key)),
                    'v' => out.push_str(&text(&r.value)),
                    'T' => out.push_str(&r.timestamp_ms.to_string()),
                    'h' => {
                        let hs: Vec<String> = r
                            .headers
                            .iter()
                            .map(|h| format!("{}={}", h.key, text(&h.value)))
                            .collect();
                        out.push_str(&hs.join(","));
                    }
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Where to start, from `--from-beginning`, `--offset` and `--from-timestamp`; `None` when
/// none was given.
pub fn start_from_flags(a: &ConsumeArgs) -> Result<Option<Seek>, CliError> {
    if a.from_beginning {
        return Ok(Some(Seek::Earliest));
    }
    if let Some(ts) = &a.from_timestamp {
        return Ok(Some(Seek::Timestamp(crate::time::parse_time(ts)?)));
    }
    let Some(o) = a.offset.as_deref() else { return Ok(None) };
    let seek = match o.trim() {
        "earliest" | "beginning" => Seek::Earliest,
        "latest" | "end" => Seek::Latest,
        n => match n.parse::<i64>() {
            Ok(v) if n.starts_with('-') => Seek::FromEnd(v.unsigned_abs()),
            Ok(v) => Seek::Offset(v),
            Err(_) => {
                return Err(CliError::usage(format!(
                    "--offset {o:?}: use earliest, latest, N or -N (N before the end)"
                )));
            }
        },
    };
    Ok(Some(seek))
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Prints records in the chosen format, buffered and flushed after each poll.
struct Printer {
    json: bool,
    format: String,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Printer {
    fn new(a: &ConsumeArgs, output: Output) -> Printer {
        Printer {
            json: output == Output::Json,
            format: unescape(&a.format),
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    fn print(&mut self, r: &ConsumerRecord) -> Result<(), CliError> {
        let line = if self.json {
            crate::record_json::record_to_json(r).to_string()
        } else {
            render(&self.format, r)
        };
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(write_error)
    }

    fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush().map_err(write_error)
    }
}

/// When to stop: after N records, after an idle time, or at the partitions' ends (`-e`).
struct Stop {
    count: Option<u64>,
    idle: Option<Duration>,
    /// Each partition's end when consume started (`-e`): its high watermark, or its last
    /// stable offset with `--isolation read_committed`.
    ends: Option<BTreeMap<TopicPartition, i64>>,
    printed: u64,
    last_record: Instant,
}

impl Stop {
    async fn new(client: &Client, a: &ConsumeArgs, partitions: &[u32]) -> Result<Stop, CliError> {
        let ends = if a.exit_at_end {
            let mut ends = BTreeMap::new();
            for &partition in partitions {
                let tp = TopicPartition { topic: a.topic.clone(), partition };
                let end = client.end_offset(&tp, isolation(a.isolation)).await?;
                ends.insert(tp, end);
            }
            Some(ends)
        } else {
            None
        };
        Ok(Stop {
            count: a.count,
            idle: a.timeout_ms.map(Duration::from_millis),
            ends,
            printed: 0,
            last_record: Instant::now(),
        })
    }

    fn counted_out(&self) -> bool {
        self.count.is_some_and(|n| self.printed >= n)
    }

    /// Whether to stop before the next poll; `position` is a partition's next offset to read
    /// (None: not read by this consumer).
    fn done(&self, position: impl Fn(&TopicPartition) -> Option<i64>) -> bool {
        if self.counted_out() || self.idle.is_some_and(|d| self.last_record.elapsed() >= d) {
            return true;
        }
        self.ends.as_ref().is_some_and(|ends| {
            let mut read = ends.iter().filter_map(|(tp, end)| position(tp).map(|p| p >= *end));
            let mut any = false;
            read.all(|reached| {
                any = true;
                reached
            }) && any
        })
    }
}

fn isolation(a: IsolationArg) -> Isolation {
    match a {
        IsolationArg::ReadUncommitted => Isolation::ReadUncommitted,
        IsolationArg::ReadCommitted => Isolation::ReadCommitted,
    }
}

pub async fn run(client: &Client, a: ConsumeArgs, output: Output) -> Result<(), CliError> {
    if a.share_group.is_some() {
        return crate::share::consume(client, a, output).await;
    }
    let start = start_from_flags(&a)?;
    if let Some(group) = a.group.clone() {
        return run_group(client, a, output, &group, start).await;
    }
    let partitions = match a.partition {
        Some(p) => vec![p],
        None => (0..client.partition_count(&a.topic).await?).collect(),
    };
    let mut consumer =
        client.consumer(ConsumerConfig { isolation: isolation(a.isolation), ..Default::default() });
    let tps = partitions
        .iter()
        .map(|&partition| TopicPartition { topic: a.topic.clone(), partition })
        .collect();
    consumer.assign(tps, start.unwrap_or(Seek::Latest)).await?;
    let mut stop = Stop::new(client, &a, &partitions).await?;
    let mut printer = Printer::new(&a, output);
    let stopping = stop_signal();
    tokio::pin!(stopping);
    loop {
        if stop.done(|tp| consumer.position(tp)) {
            return Ok(());
        }
        let records = tokio::select! {
            r = consumer.poll() => r?,
            () = &mut stopping => return Ok(()),
        };
        if !records.is_empty() {
            stop.last_record = Instant::now();
        }
        for r in records {
            if stop.counted_out() {
                break;
            }
            printer.print(&r)?;
            stop.printed += 1;
        }
        printer.flush()?;
    }
}

/// `consume --group`: at-least-once, committing the offsets after the printed records. A
/// partition without a commit starts at `start` (earliest by default).
async fn run_group(
    client: &Client,
    a: ConsumeArgs,
    output: Output,
    group: &str,
    start: Option<Seek>,
) -> Result<(), CliError> {
    // A group may subscribe to a topic that does not exist yet; the CLI says so instead.
    let n = client.partition_count(&a.topic).await?;
    let mut stop = Stop::new(client, &a, &(0..n).collect::<Vec<_>>()).await?;
    let mut config = GroupConfig::new(group);
    config.client_id = "silt-cli".into();
    config.commit = CommitMode::Manual;
    config.delivery = Delivery::AtLeastOnce;
    config.reset = start.unwrap_or(Seek::Earliest);
    config.fetch.isolation = isolation(a.isolation);
    let mut consumer = client.subscribe(config, vec![a.topic.clone()]).await?;
    let committer = consumer.committer();
    let mut printer = Printer::new(&a, output);
    let stopping = stop_signal();
    tokio::pin!(stopping);
    let result = loop {
        if stop.done(|tp| consumer.position(tp)) {
            break Ok(());
        }
        let records: Result<Vec<ConsumerRecord>, ClientError> = tokio::select! {
            r = consumer.poll() => r,
            () = &mut stopping => break Ok(()),
        };
        let records = match records {
            Ok(r) => r,
            Err(e) => break Err(CliError::from(e)),
        };
        if !records.is_empty() {
            stop.last_record = Instant::now();
        }
        // Commit exactly what reached stdout, also when stdout closed part way.
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut printed = Ok(());
        for r in records {
            if stop.counted_out() {
                break;
            }
            if let Err(e) = printer.print(&r) {
                printed = Err(e);
                break;
            }
            stop.printed += 1;
            next.insert(
                TopicPartition { topic: r.topic.clone(), partition: r.partition },
                r.offset + 1,
            );
        }
        let printed = printed.and_then(|()| printer.flush());
        if printed.is_err() {
            // What is buffered may not have been written: commit none of this poll.
            next.clear();
        }
        if let Err(e) = committer.commit(next).await {
            break Err(CliError::from(e));
        }
        if let Err(e) = printed {
            break Err(e);
        }
    };
    consumer.close().await?;
    result
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use silt_core::batch::Header;

    use super::*;

    #[test]
    fn format_placeholders_render_every_field() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 42,
            timestamp_ms: 1000,
            key: Some(Bytes::from("k")),
            value: Some(Bytes::from("v")),
            headers: vec![Header { key: "h".into(), value: Some(Bytes::from("x")) }],
        };
        let format = unescape("%t/%p@%o %k=%v %T [%h] 100%%\\t.");
        assert_eq!(render(&format, &r), "t/2@42 k=v 1000 [h=x] 100%\t.");
        assert_eq!(render("%v", &r), "v");
        assert_eq!(render("%q", &r), "%q");
    }
}
