//! `silt bench produce|consume`: throughput and latency percentiles (HDR histogram, µs
//! resolution). Produce latency is send-to-acknowledgement per record; consume latency is the
//! time of each poll that returned records.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::json;
use silt_client::{
    Client, ConsumerConfig, ProducerConfig, ProducerRecord, Seek, TopicPartition,
    TransactionalConfig, TransactionalProducer,
};

use crate::args::{BenchConsumeArgs, BenchProduceArgs, Output};
use crate::error::CliError;
use crate::produce::{acks, compression};

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Latencies in microseconds.
    pub latency_us: Histogram<u64>,
    pub failed: u64,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("invariant: valid histogram bounds")
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        json!({
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "records_per_sec": self.records as f64 / self.seconds.max(1e-9),
            "mb_per_sec": self.bytes as f64 / 1e6 / self.seconds.max(1e-9),
            "failed": self.failed,
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": self.latency_us.max() as f64 / 1000.0},
        })
    }

    pub(crate) fn print(&self, what: &str, out: Output) -> Result<(), CliError> {
        match out {
            Output::Json => outln!("{}", self.to_json()),
            Output::Text => {
                let j = self.to_json();
                let l = &j["latency_ms"];
                outln!(
                    "{} records {what} in {:.2} s: {:.0} records/s, {:.2} MB/s; latency ms p50 {:.2} p99 {:.2} p999 {:.2} max {:.2}{}",
                    self.records,
                    self.seconds,
                    j["records_per_sec"].as_f64().unwrap_or(0.0),
                    j["mb_per_sec"].as_f64().unwrap_or(0.0),
                    l["p50"].as_f64().unwrap_or(0.0),
                    l["p99"].as_f64().unwrap_or(0.0),
                    l["p999"].as_f64().unwrap_or(0.0),
                    l["max"].as_f64().unwrap_or(0.0),
                    if self.failed > 0 {
                        format!("; {} failed", self.failed)
                    } else {
                        String::new()
                    },
                );
            }
        }
        Ok(())
    }
}

pub async fn produce(client: &Client, a: BenchProduceArgs, out: Output) -> Result<(), CliError> {
    if a.producers == 0 || a.record_size == 0 {
        return Err(CliError::usage("--producers and --record-size must be positive"));
    }
    client.partition_count(&a.topic).await?;
    if a.transactional {
        return produce_transactional(client, a, out).await;
    }
    let hist = Arc::new(Mutex::new(histogram()));
    let values = Arc::new(crate::payload::values(a.payload, a.record_size));
    let (codec, level) = compression(a.compression, a.compression_level)?;
    let per_producer = a.records / a.producers as u64;
    let extra = a.records % a.producers as u64;
    let rate_each = a.rate as f64 / a.producers as f64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.producers {
        let n = per_producer + u64::from((i as u64) < extra);
        let producer = client
            .try_producer(ProducerConfig {
                acks: acks(a.acks),
                linger_ms: a.linger_ms,
                batch_max_bytes: a.batch_bytes,
                enable_idempotence: a.idempotence,
                max_in_flight: a.max_in_flight,
                compression: codec,
                compression_level: level,
                ..ProducerConfig::default()
            })
            .map_err(|e| CliError::usage(e.to_string()))?;
        let (topic, values, hist) = (a.topic.clone(), values.clone(), hist.clone());
        let keys = a.keys;
        tasks.push(tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut failed = 0u64;
            let mut record = |r: Result<silt_client::RecordMetadata, silt_client::ProduceError>,
                              t: Duration| {
                match r {
                    Ok(_) => {
                        let _ = hist
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .record(t.as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        if failed == 0 {
                            eprintln!("warning: a record failed: {e}");
                        }
                        failed += 1;
                    }
                }
            };
            let start = Instant::now();
            for j in 0..n {
                if rate_each > 0.0 {
                    let due = start + Duration::from_secs_f64(j as f64 / rate_each);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let n = i as u64 + j * a.producers as u64;
                let value = values[n as usize % values.len()].clone();
                let mut rec = ProducerRecord::new(topic.clone(), value);
                if let Some(k) = keys {
                    rec = rec.with_key(format!("key-{}", n % k.max(1)));
                }
                let fut = producer.send(rec).await?;
                pending.push(async move { (fut.await, sent.elapsed()) });
                while let Some(Some((r, t))) = futures_util::FutureExt::now_or_never(pending.next())
                {
                    record(r, t);
                }
            }
            producer.flush().await?;
            while let Some((r, t)) = pending.next().await {
                record(r, t);
            }
            producer.close().await?;
            Ok::<u64, silt_client::ClientError>(failed)
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed +=
            t.await.map_err(|e| CliError::failed(format!("producer task: {e}"), "INTERNAL"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let latency_us = Arc::try_unwrap(hist)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| histogram());
    produce_report(&a, seconds, latency_us, failed, out)
}

fn produce_report(
    a: &BenchProduceArgs,
    seconds: f64,
    latency_us: Histogram<u64>,
    failed: u64,
    out: Output,
) -> Result<(), CliError> {
    let ok = a.records - failed;
    let report =
        Report { records: ok, bytes: ok * a.record_size as u64, seconds, latency_us, failed };
    report.print("produced", out)?;
    if failed > 0 {
        return Err(CliError::failed(
            format!("{failed} of {} records failed", a.records),
            "PRODUCE_FAILED",
        ));
    }
    Ok(())
}

/// `bench produce --transactional`: each producer commits a transaction every
/// `--commit-interval-ms` (acks=all); a record's latency is from its send to its commit. A
/// failed transaction is aborted and its records count as failed.
async fn produce_transactional(
    client: &Client,
    a: BenchProduceArgs,
    out: Output,
) -> Result<(), CliError> {
    let values = Arc::new(crate::payload::values(a.payload, a.record_size));
    let (codec, level) = compression(a.compression, a.compression_level)?;
    let per_producer = a.records / a.producers as u64;
    let extra = a.records % a.producers as u64;
    let interval = Duration::from_millis(a.commit_interval_ms.max(1));
    let run = format!("{:x}", silt_core::random_u64());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.producers {
        let n = per_producer + u64::from((i as u64) < extra);
        let mut config = TransactionalConfig::new(format!("silt-bench-{run}-{i}"));
        config.batch_max_bytes = a.batch_bytes;
        (config.compression, config.compression_level) = (codec, level);
        let mut p = TransactionalProducer::new(client, config).await?;
        let (topic, values, keys) = (a.topic.clone(), values.clone(), a.keys);
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut sent, mut failed) = (0u64, 0u64);
            while sent < n {
                p.begin()?;
                let opened = Instant::now();
                let mut times = Vec::new();
                while sent < n && opened.elapsed() < interval {
                    times.push(Instant::now());
                    let value = values[sent as usize % values.len()].clone();
                    let mut record = ProducerRecord::new(topic.clone(), value);
                    if let Some(k) = keys {
                        record = record.with_key(format!("key-{}", sent % k.max(1)));
                    }
                    p.send(record).await?;
                    sent += 1;
                }
                match p.commit().await {
                    Ok(()) => {
                        for t in times {
                            let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                        }
                    }
                    Err(e) => {
                        eprintln!("warning: transaction failed, aborting it: {e}");
                        failed += times.len() as u64;
                        p.abort().await?;
                    }
                }
            }
            Ok::<_, silt_client::ClientError>((hist, failed))
        }));
    }
    let (mut latency_us, mut failed) = (histogram(), 0);
    for t in tasks {
        let (h, f) =
            t.await.map_err(|e| CliError::failed(format!("producer task: {e}"), "INTERNAL"))??;
        let _ = latency_us.add(h);
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    produce_report(&a, seconds, latency_us, failed, out)
}

/// Stop a consume bench after this long without any record.
const CONSUME_IDLE: Duration = Duration::from_secs(10);

/// What a consume bench reads from: assigned partitions, or a group membership.
enum Source {
    Assigned(silt_client::Consumer),
    Group(Box<silt_client::GroupConsumer>),
}

impl Source {
    async fn poll(&mut self) -> Result<Vec<silt_client::ConsumerRecord>, silt_client::ClientError> {
        match self {
            Source::Assigned(c) => c.poll().await,
            Source::Group(c) => c.poll().await,
        }
    }
}

pub async fn consume(client: &Client, a: BenchConsumeArgs, out: Output) -> Result<(), CliError> {
    if a.share_group.is_some() {
        return crate::share::bench(client, a, out).await;
    }
    let mut consumer = match &a.group {
        Some(g) => {
            let mut config = silt_client::GroupConfig::new(g);
            config.client_id = "silt-bench".into();
            config.commit = silt_client::CommitMode::Auto { interval: Duration::from_secs(1) };
            Source::Group(Box::new(client.subscribe(config, vec![a.topic.clone()]).await?))
        }
        None => {
            let n = client.partition_count(&a.topic).await?;
            let mut consumer = client.consumer(ConsumerConfig::default());
            let tps = (0..n)
                .map(|partition| TopicPartition { topic: a.topic.clone(), partition })
                .collect();
            consumer.assign(tps, Seek::Earliest).await?;
            Source::Assigned(consumer)
        }
    };
    let mut hist = histogram();
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    let mut last = Instant::now();
    while records < a.records && last.elapsed() < CONSUME_IDLE {
        let t = Instant::now();
        let batch = consumer.poll().await?;
        if batch.is_empty() {
            continue;
        }
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
        last = Instant::now();
        records += batch.len() as u64;
        bytes += batch.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64).sum::<u64>();
    }
    let report = Report {
        records,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        latency_us: hist,
        failed: 0,
    };
    report.print("consumed", out)?;
    if let Source::Group(g) = consumer {
        g.close().await?;
    }
    if records < a.records {
        return Err(CliError::failed(
            format!("only {records} of {} records arrived", a.records),
            "INCOMPLETE",
        ));
    }
    Ok(())
}
