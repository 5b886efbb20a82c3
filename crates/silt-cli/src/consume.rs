//! `silt consume`: without a group, assign partitions, seek and print records in a format; with
//! `--group`, join the group, start at its committed offsets and commit what was printed.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use silt_client::{
    Client, CommitMode, ConsumerConfig, ConsumerRecord, Delivery, GroupConfig, Seek, TopicPartition,
};

use crate::args::ConsumeArgs;
use crate::error::CliError;

/// Renders a record with the `%t %p %o %k %v %T %h` placeholders (`%%` is a percent sign,
/// `\t` and `\n` are a tab and a newline).
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
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            _ => out.push(c),
        }
    }
    out
}

pub async fn run(client: &Client, a: ConsumeArgs) -> Result<(), CliError> {
    if let Some(group) = a.group.clone() {
        return run_group(client, a, &group).await;
    }
    let partitions = match a.partition {
        Some(p) => vec![p],
        None => (0..client.partition_count(&a.topic).await?).collect(),
    };
    let start = if a.from_beginning {
        Seek::Earliest
    } else if let Some(o) = a.offset {
        Seek::Offset(o)
    } else if let Some(ts) = a.from_timestamp {
        Seek::Timestamp(ts)
    } else {
        Seek::Latest
    };
    let mut consumer = client.consumer(ConsumerConfig::default());
    let tps = partitions
        .into_iter()
        .map(|partition| TopicPartition { topic: a.topic.clone(), partition })
        .collect();
    consumer.assign(tps, start).await?;
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let idle = a.timeout_ms.map(Duration::from_millis);
    loop {
        if a.count.is_some_and(|n| printed >= n) || idle.is_some_and(|d| last_record.elapsed() >= d)
        {
            return Ok(());
        }
        let records = consumer.poll().await?;
        if !records.is_empty() {
            last_record = Instant::now();
        }
        for r in records {
            println!("{}", render(&a.format, &r));
            printed += 1;
            if a.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
    }
}

/// Where a partition without a committed offset starts, from the flags (earliest by default).
fn reset_from(a: &ConsumeArgs) -> Seek {
    if let Some(o) = a.offset {
        Seek::Offset(o)
    } else if let Some(ts) = a.from_timestamp {
        Seek::Timestamp(ts)
    } else {
        Seek::Earliest
    }
}

/// `consume --group`: at-least-once, committing the offsets after the printed records.
async fn run_group(client: &Client, a: ConsumeArgs, group: &str) -> Result<(), CliError> {
    // A group may subscribe to a topic that does not exist yet; the CLI says so instead.
    client.partition_count(&a.topic).await?;
    let mut config = GroupConfig::new(group);
    config.client_id = "silt-cli".into();
    config.commit = CommitMode::Manual;
    config.delivery = Delivery::AtLeastOnce;
    config.reset = reset_from(&a);
    let mut consumer = client.subscribe(config, vec![a.topic.clone()]).await?;
    let committer = consumer.committer();
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let idle = a.timeout_ms.map(Duration::from_millis);
    let result = loop {
        if a.count.is_some_and(|n| printed >= n) || idle.is_some_and(|d| last_record.elapsed() >= d)
        {
            break Ok(());
        }
        let records = match consumer.poll().await {
            Ok(r) => r,
            Err(e) => break Err(CliError::from(e)),
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for r in records {
            if a.count.is_some_and(|n| printed >= n) {
                break;
            }
            println!("{}", render(&a.format, &r));
            printed += 1;
            next.insert(
                TopicPartition { topic: r.topic.clone(), partition: r.partition },
                r.offset + 1,
            );
        }
        if let Err(e) = committer.commit(next).await {
            break Err(CliError::from(e));
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
        assert_eq!(render("%t/%p@%o %k=%v %T [%h] 100%%\\t.", &r), "t/2@42 k=v 1000 [h=x] 100%\t.");
        assert_eq!(render("%v", &r), "v");
        assert_eq!(render("%q", &r), "%q");
    }
}
