//! The log cleaner (compacted topics, `cleanup.policy=compact`): `log_cleaner_threads` tasks,
//! each owning the hosted partitions that hash to it. Every `log_cleaner_backoff_ms` a cleaner
//! asks each of its compacted partitions for a plan (the partition's thread answers from its log:
//! what lies below the high watermark and the last stable offset and is dirty enough), runs the
//! plan on a blocking thread, I/O-throttled to its share of
//! `log_cleaner_io_max_bytes_per_second`, and has the partition's thread swap the cleaned
//! segments in. Leaders and followers clean their own logs, as in Kafka: every replica keeps the
//! latest record per key, at the same offsets.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use silt_core::Offset;
use silt_storage::IoThrottle;

use crate::broker::Shared;

pub(crate) async fn run(shared: Arc<Shared>, index: usize) {
    let c = &shared.config;
    let threads = c.log_cleaner_threads.max(1);
    let backoff = Duration::from_millis(c.log_cleaner_backoff_ms.max(1));
    let rate = (c.log_cleaner_io_max_bytes_per_second > 0)
        .then(|| (c.log_cleaner_io_max_bytes_per_second / threads as u64).max(1));
    let budget = (c.log_cleaner_dedupe_buffer_bytes / threads).max(1 << 20);
    loop {
        tokio::time::sleep(backoff).await;
        for (topic, partition, handle) in shared.replicas.all_named() {
            if owner(&topic, partition, threads) != index {
                continue;
            }
            let now = crate::service::now_ms();
            let Ok((ratio, plan)) = handle.clean_plan(now).await else { continue };
            let m = &shared.metrics.cleaner;
            {
                let mut ratios = m.dirty_ratio.lock().unwrap_or_else(|p| p.into_inner());
                if plan.is_none() && ratio == 0.0 {
                    ratios.remove(&(topic.clone(), partition));
                } else {
                    ratios.insert((topic.clone(), partition), ratio);
                }
            }
            let Some((plan, aborted)) = plan else { continue };
            let ran = tokio::task::spawn_blocking(move || {
                let is_aborted = |producer: i64, o: Offset| {
                    aborted.iter().any(|a| {
                        a.producer_id == producer && a.first_offset <= o.0 && o.0 <= a.last_offset
                    })
                };
                plan.run(&is_aborted, now, budget, &mut IoThrottle::new(rate))
            })
            .await;
            let cleaned = match ran {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(topic, partition, error = %e, "cleaning failed");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "cleaner task failed");
                    continue;
                }
            };
            let stats = cleaned.stats;
            match handle.install_cleaned(cleaned).await {
                Ok(freed) => {
                    m.runs.fetch_add(1, Ordering::Relaxed);
                    m.bytes_read.fetch_add(stats.bytes_read, Ordering::Relaxed);
                    m.bytes_freed.fetch_add(freed, Ordering::Relaxed);
                    m.records_removed.fetch_add(stats.records_removed, Ordering::Relaxed);
                    m.last_run_micros.store(stats.duration.as_micros() as u64, Ordering::Relaxed);
                    tracing::info!(topic, partition, segments = stats.segments, bytes_read = stats.bytes_read, freed, records_removed = stats.records_removed, took = ?stats.duration, "cleaned");
                }
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "installing a cleaning failed")
                }
            }
        }
    }
}

/// Which cleaner owns a partition.
fn owner(topic: &str, partition: u32, threads: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (topic, partition).hash(&mut h);
    (h.finish() % threads as u64) as usize
}
