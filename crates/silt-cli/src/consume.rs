//! `silt consume` without a group: assign partitions, seek, print records in a format.

use std::time::{Duration, Instant};

use silt_client::{Client, ConsumerConfig, ConsumerRecord, Seek, TopicPartition};

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
    if a.group.is_some() {
        return Err(CliError::failed(
            "consumer groups are not available yet (a later milestone)",
            "UNSUPPORTED",
        ));
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
