//! `silt produce`: stdin lines to records; exit 0 only if every record was acknowledged.

use bytes::Bytes;
use silt_client::{Client, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::{AcksArg, ProduceArgs};
use crate::error::CliError;

/// The client's acks for the CLI flag.
pub fn acks(a: AcksArg) -> silt_client::Acks {
    match a {
        AcksArg::Zero => silt_client::Acks::None,
        AcksArg::One => silt_client::Acks::Leader,
        AcksArg::All => silt_client::Acks::All,
    }
}

/// Splits a line into key and value at the first separator (no separator: value only).
pub fn split_line(line: &str, sep: Option<&str>) -> (Option<Bytes>, Bytes) {
    match sep.and_then(|s| line.split_once(s)) {
        Some((k, v)) => {
            (Some(Bytes::copy_from_slice(k.as_bytes())), Bytes::copy_from_slice(v.as_bytes()))
        }
        None => (None, Bytes::copy_from_slice(line.as_bytes())),
    }
}

pub async fn run(client: &Client, a: ProduceArgs) -> Result<(), CliError> {
    let producer = client.producer(ProducerConfig {
        acks: acks(a.acks),
        linger_ms: a.linger_ms,
        ..ProducerConfig::default()
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = Vec::new();
    let mut sent = 0u64;
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| CliError::failed(format!("reading stdin: {e}"), "IO"))?;
        let Some(line) = line else { break };
        let (key, value) = split_line(&line, a.key_separator.as_deref());
        let mut record = ProducerRecord::new(a.topic.clone(), value);
        record.key = key;
        record.partition = a.partition;
        pending.push(producer.send(record).await?);
        sent += 1;
    }
    producer.flush().await?;
    let mut acked = 0u64;
    let mut first_error = None;
    for f in pending {
        match f.await {
            Ok(_) => acked += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    producer.close().await?;
    eprintln!("produced {acked} records");
    match first_error {
        None => Ok(()),
        Some(e) => {
            let code = e.code.map_or("PRODUCE_FAILED".to_string(), crate::error::code_name);
            Err(CliError::failed(
                format!("{} of {sent} records failed: {}", sent - acked, e.message),
                code,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(split_line("k:v:w", Some(":")), (Some(Bytes::from("k")), Bytes::from("v:w")));
        assert_eq!(split_line("novalue", Some(":")), (None, Bytes::from("novalue")));
        assert_eq!(split_line("a:b", None), (None, Bytes::from("a:b")));
    }
}
