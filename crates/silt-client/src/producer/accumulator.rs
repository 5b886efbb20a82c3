//! The producer's batching decisions, pure: which partition a record goes to, when a partition's
//! batch is full, and when its linger time is up. The async shell feeds it records and the
//! clock and ships what it returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use silt_core::batch::{BatchBuilder, Record};
use silt_core::partitioner::partition_for_key;

/// A batch being filled for one partition, with a waiter per record.
#[derive(Debug)]
pub(crate) struct OpenBatch<W> {
    pub builder: BatchBuilder,
    pub waiters: Vec<W>,
    pub timestamps: Vec<i64>,
    pub deadline: Instant,
}

/// A batch ready to send.
#[derive(Debug)]
pub(crate) struct Sealed<W> {
    pub topic: String,
    pub partition: u32,
    pub data: bytes::Bytes,
    pub waiters: Vec<W>,
    pub timestamps: Vec<i64>,
}

/// Picks partitions: explicit, else by key hash (Kafka's murmur2), else a per-topic sticky
/// partition that moves on after about one batch worth of bytes, so null-key records fill
/// batches instead of scattering (Kafka's sticky partitioner).
#[derive(Debug, Default)]
pub(crate) struct Partitioner {
    sticky: HashMap<String, (u32, usize)>,
    next: u32,
}

impl Partitioner {
    pub fn choose(
        &mut self,
        topic: &str,
        explicit: Option<u32>,
        key: Option<&[u8]>,
        partitions: u32,
        record_bytes: usize,
        batch_max_bytes: usize,
    ) -> u32 {
        if let Some(p) = explicit {
            return p;
        }
        if let Some(k) = key {
            return partition_for_key(k, partitions);
        }
        let partitions = partitions.max(1);
        let next = &mut self.next;
        let slot = self.sticky.entry(topic.to_string()).or_insert_with(|| {
            *next = next.wrapping_add(1);
            (*next % partitions, 0)
        });
        if slot.1 >= batch_max_bytes {
            *next = next.wrapping_add(1);
            *slot = ((slot.0 + 1) % partitions, 0);
        }
        slot.1 += record_bytes;
        slot.0 % partitions
    }
}

/// Open batches per (topic, partition).
#[derive(Debug)]
pub(crate) struct Accumulator<W> {
    batch_max_bytes: usize,
    linger: Duration,
    open: HashMap<(String, u32), OpenBatch<W>>,
}

impl<W> Accumulator<W> {
    pub fn new(batch_max_bytes: usize, linger: Duration) -> Accumulator<W> {
        Accumulator { batch_max_bytes, linger, open: HashMap::new() }
    }

    /// Adds a record; returns a batch sealed to make room for it, if any. A record larger than
    /// `batch_max_bytes` travels alone in its own batch.
    pub fn add(
        &mut self,
        topic: &str,
        partition: u32,
        record: &Record,
        waiter: W,
        now: Instant,
    ) -> Option<Sealed<W>> {
        let key = (topic.to_string(), partition);
        let mut sealed = None;
        if let Some(open) = self.open.get(&key)
            && !open.builder.is_empty()
            && open.builder.size_with(record) > self.batch_max_bytes
        {
            sealed = self.seal(&key);
        }
        let linger = self.linger;
        let cap = self.batch_max_bytes.min(1 << 20);
        let open = self.open.entry(key).or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(cap),
            waiters: Vec::new(),
            timestamps: Vec::new(),
            deadline: now + linger,
        });
        open.builder.push(record);
        open.waiters.push(waiter);
        open.timestamps.push(record.timestamp_ms);
        sealed
    }

    fn seal(&mut self, key: &(String, u32)) -> Option<Sealed<W>> {
        let open = self.open.remove(key)?;
        let data = open.builder.build()?;
        Some(Sealed {
            topic: key.0.clone(),
            partition: key.1,
            data,
            waiters: open.waiters,
            timestamps: open.timestamps,
        })
    }

    /// Seals every batch whose linger time is up at `now` (all of them when `all`).
    pub fn ready(&mut self, now: Instant, all: bool) -> Vec<Sealed<W>> {
        let keys: Vec<_> = self
            .open
            .iter()
            .filter(|(_, b)| all || b.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| self.seal(k)).collect()
    }

    /// The earliest linger deadline of an open batch.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|b| b.deadline).min()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rec(n: usize) -> Record {
        Record::value(Bytes::from(vec![1u8; n]), 1)
    }

    #[test]
    fn partition_choice_explicit_keyed_and_sticky() {
        let mut p = Partitioner::default();
        assert_eq!(p.choose("t", Some(3), Some(b"k"), 4, 10, 100), 3);
        assert_eq!(p.choose("t", None, Some(b"21"), 10, 10, 100), partition_for_key(b"21", 10));
        let first = p.choose("t", None, None, 4, 40, 100);
        assert_eq!(p.choose("t", None, None, 4, 40, 100), first);
        assert_eq!(
            p.choose("t", None, None, 4, 40, 100),
            first,
            "sticky until a batch worth of bytes"
        );
        let second = p.choose("t", None, None, 4, 40, 100);
        assert_ne!(first, second, "moves on after about one batch");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            seen.insert(p.choose("t", None, None, 4, 100, 100));
        }
        assert_eq!(seen.len(), 4, "null keys spread over every partition");
    }

    #[test]
    fn batches_never_exceed_the_limit_unless_one_record_is_larger() {
        let mut a = Accumulator::new(4096, Duration::from_secs(60));
        let now = Instant::now();
        let mut sealed = Vec::new();
        for i in 0..100 {
            sealed.extend(a.add("t", 0, &rec(100), i, now));
        }
        sealed.extend(a.ready(now, true));
        assert!(sealed.len() > 1);
        assert!(sealed.iter().all(|s| s.data.len() <= 4096));
        let waiters: Vec<i32> = sealed.iter().flat_map(|s| s.waiters.clone()).collect();
        assert_eq!(waiters, (0..100).collect::<Vec<_>>(), "order kept across batches");
        let big = a.add("t", 0, &rec(10_000), 0, now);
        assert!(big.is_none());
        let out = a.ready(now, true);
        assert_eq!(out.len(), 1);
        assert!(out[0].data.len() > 10_000);
    }

    #[test]
    fn linger_holds_a_batch_until_its_deadline() {
        let mut a = Accumulator::new(1 << 20, Duration::from_millis(50));
        let t0 = Instant::now();
        a.add("t", 0, &rec(10), (), t0);
        assert!(a.ready(t0 + Duration::from_millis(10), false).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(a.ready(t0 + Duration::from_millis(50), false).len(), 1);
        assert!(a.is_empty());
    }
}
