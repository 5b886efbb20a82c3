//! `silt produce`: stdin lines to records; exit 0 only if every record was acknowledged.

use bytes::Bytes;
use silt_client::{
    Client, ClientError, ProducerConfig, ProducerRecord, TransactionalConfig, TransactionalProducer,
};
use silt_core::batch::Header;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::{AcksArg, CompressionArg, InputArg, ProduceArgs};
use crate::error::CliError;
use crate::record_json::record_from_json;

/// The client's acks for the CLI flag.
pub fn acks(a: AcksArg) -> silt_client::Acks {
    match a {
        AcksArg::Zero => silt_client::Acks::None,
        AcksArg::One => silt_client::Acks::Leader,
        AcksArg::All => silt_client::Acks::All,
    }
}

/// The codec and level of `--compression` / `--compression-level`, checked.
pub fn compression(
    codec: CompressionArg,
    level: Option<i32>,
) -> Result<(silt_client::Compression, Option<i32>), CliError> {
    use silt_client::Compression as C;
    let codec = match codec {
        CompressionArg::None => C::None,
        CompressionArg::Gzip => C::Gzip,
        CompressionArg::Snappy => C::Snappy,
        CompressionArg::Lz4 => C::Lz4,
        CompressionArg::Zstd => C::Zstd,
    };
    codec.check_level(level).map_err(CliError::usage)?;
    Ok((codec, level))
}

/// `\t`, `\n` and `\\` in a flag value, as in `--format`.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            ('\\', Some('\\')) => {
                chars.next();
                out.push('\\');
            }
            _ => out.push(c),
        }
    }
    out
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

/// `-H K=V` flags as record headers.
pub fn parse_headers(flags: &[String]) -> Result<Vec<Header>, CliError> {
    flags
        .iter()
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::usage(format!("header {f:?} is not K=V")))?;
            Ok(Header { key: k.to_string(), value: Some(Bytes::copy_from_slice(v.as_bytes())) })
        })
        .collect()
}

/// The record for one input line, with the flags' key and headers.
fn line_record(
    a: &ProduceArgs,
    sep: Option<&str>,
    headers: &[Header],
    line: &str,
) -> Result<ProducerRecord, CliError> {
    let mut record = match a.input {
        InputArg::Text => {
            let (key, value) = split_line(line, sep);
            let mut r = ProducerRecord::new(a.topic.clone(), value);
            r.key = key;
            r
        }
        InputArg::Json => {
            let j = record_from_json(line)?;
            ProducerRecord {
                topic: a.topic.clone(),
                key: j.key,
                value: j.value,
                headers: j.headers,
                timestamp_ms: j.timestamp_ms,
                partition: None,
            }
        }
    };
    if let Some(k) = &a.key {
        record.key = Some(Bytes::copy_from_slice(k.as_bytes()));
    }
    record.headers.extend(headers.iter().cloned());
    record.partition = a.partition;
    Ok(record)
}

/// The next input line (`None` at the end of stdin); blank lines are skipped in JSON input.
async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
    input: InputArg,
) -> Result<Option<String>, CliError> {
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| CliError::failed(format!("reading stdin: {e}"), "IO"))?;
        match line {
            Some(l) if input == InputArg::Json && l.trim().is_empty() => continue,
            other => return Ok(other),
        }
    }
}

fn produced(n: u64) {
    eprintln!("produced {n} record{}", if n == 1 { "" } else { "s" });
}

/// `--transactional-id`: one transaction per `--transaction-records` lines, the last when stdin
/// ends. A failure aborts the open transaction (what earlier ones committed stays); an
/// interrupted run leaves it open for the coordinator's timeout or the id's next producer.
async fn run_transactional(
    client: &Client,
    a: &ProduceArgs,
    id: &str,
    sep: Option<&str>,
    headers: &[Header],
) -> Result<(), CliError> {
    if a.transaction_records == 0 {
        return Err(CliError::usage("--transaction-records must be at least 1"));
    }
    let mut config = TransactionalConfig::new(id);
    config.transaction_timeout_ms = a.transaction_timeout_ms;
    (config.compression, config.compression_level) =
        compression(a.compression, a.compression_level)?;
    let mut p = TransactionalProducer::new(client, config).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut committed, mut in_txn) = (0u64, 0u64);
    let mut bad_input = None;
    loop {
        let Some(line) = next_line(&mut lines, a.input).await? else { break };
        let record = match line_record(a, sep, headers, &line) {
            Ok(r) => r,
            Err(mut e) => {
                // Stop reading; commit what was read before the bad line.
                e.what = format!("line {}: {}", committed + in_txn + 1, e.what);
                bad_input = Some(e);
                break;
            }
        };
        if in_txn == 0 {
            p.begin()?;
        }
        let sent = p.send(record).await;
        in_txn += 1;
        if let Err(e) = sent {
            return Err(abort_after(&mut p, committed, e).await);
        }
        if in_txn == a.transaction_records {
            if let Err(e) = p.commit().await {
                return Err(abort_after(&mut p, committed, e).await);
            }
            committed += in_txn;
            in_txn = 0;
        }
    }
    if in_txn > 0 {
        if let Err(e) = p.commit().await {
            return Err(abort_after(&mut p, committed, e).await);
        }
        committed += in_txn;
    }
    produced(committed);
    bad_input.map_or(Ok(()), Err)
}

/// Aborts the open transaction after `e` (best effort) and reports what was committed.
async fn abort_after(p: &mut TransactionalProducer, committed: u64, e: ClientError) -> CliError {
    if let Err(abort) = p.abort().await {
        eprintln!("warning: aborting the transaction failed: {abort}");
    }
    produced(committed);
    CliError::from(e)
}

pub async fn run(client: &Client, a: ProduceArgs) -> Result<(), CliError> {
    let headers = parse_headers(&a.headers)?;
    let sep = a.key_separator.as_deref().map(unescape);
    if sep.as_deref() == Some("") {
        return Err(CliError::usage("--key-separator is empty"));
    }
    if let Some(id) = &a.transactional_id {
        return run_transactional(client, &a, id, sep.as_deref(), &headers).await;
    }
    let (codec, level) = compression(a.compression, a.compression_level)?;
    let producer = client
        .try_producer(ProducerConfig {
            acks: acks(a.acks),
            linger_ms: a.linger_ms,
            enable_idempotence: a.idempotence,
            compression: codec,
            compression_level: level,
            ..ProducerConfig::default()
        })
        .map_err(|e| CliError::usage(e.to_string()))?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = Vec::new();
    let mut sent = 0u64;
    let mut bad_input = None;
    loop {
        let Some(line) = next_line(&mut lines, a.input).await? else { break };
        let record = match line_record(&a, sep.as_deref(), &headers, &line) {
            Ok(r) => r,
            Err(mut e) => {
                // Stop reading, but deliver (and count) what was already sent.
                e.what = format!("line {}: {}", sent + 1, e.what);
                bad_input = Some(e);
                break;
            }
        };
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
    produced(acked);
    if let Some(e) = bad_input {
        return Err(e);
    }
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
        let tab = unescape("\\t");
        assert_eq!(split_line("k\tv", Some(&tab)), (Some(Bytes::from("k")), Bytes::from("v")));
    }

    #[test]
    fn escapes_in_flags_are_unescaped() {
        assert_eq!(unescape("a\\tb\\nc\\\\d\\x"), "a\tb\nc\\d\\x");
    }

    #[test]
    fn headers_are_key_equals_value() {
        let hs = parse_headers(&["trace=abc".into(), "empty=".into(), "eq=a=b".into()]).unwrap();
        assert_eq!(hs[0], Header { key: "trace".into(), value: Some(Bytes::from("abc")) });
        assert_eq!(hs[1].value.as_deref(), Some(&b""[..]));
        assert_eq!(hs[2].value.as_deref(), Some(&b"a=b"[..]));
        assert_eq!(parse_headers(&["novalue".into()]).unwrap_err().exit, 2);
        assert_eq!(parse_headers(&["=v".into()]).unwrap_err().exit, 2);
    }
}
