//! The producer's batching decisions, pure: which partition a record goes to, when a partition's
//! batch is full, and when its linger time is up. The async shell feeds it records and the
//! clock and ships what it returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use silt_core::batch::{BatchBuilder, Compression, Record};
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

/// Picks partitions: explicit, else by key hash (Kafka's murmur2), else Kafka's uniform sticky
/// partitioner (KIP-794): a keyless record goes to a per-topic partition chosen at random, until
/// `switch_bytes` of them went there; then another one at random. Batches fill up instead of
/// scattering, and producers (each with its own random start) spread over every partition.
#[derive(Debug)]
pub(crate) struct Partitioner {
    sticky: HashMap<String, (u32, usize)>,
    /// xorshift64* state; never 0.
    rng: u64,
}

impl Partitioner {
    /// A partitioner whose random choices start from `seed`.
    pub fn new(seed: u64) -> Partitioner {
        Partitioner { sticky: HashMap::new(), rng: seed | 1 }
    }

    /// A partitioner with a random seed.
    pub fn random() -> Partitioner {
        Partitioner::new(silt_core::random_u64())
    }

    fn next_random(&mut self, below: u32) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        ((self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % u64::from(below.max(1))) as u32
    }

    pub fn choose(
        &mut self,
        topic: &str,
        explicit: Option<u32>,
        key: Option<&[u8]>,
        partitions: u32,
        record_bytes: usize,
        switch_bytes: usize,
    ) -> u32 {
        if let Some(p) = explicit {
            return p;
        }
        if let Some(k) = key {
            return partition_for_key(k, partitions);
        }
        let partitions = partitions.max(1);
        let current = self.sticky.get(topic).copied();
        let (partition, sent) = match current {
            Some((p, sent)) if p < partitions && sent < switch_bytes => (p, sent),
            Some((p, _)) if partitions > 1 && p < partitions => {
                // Another partition than the one just filled, uniformly.
                let step = 1 + self.next_random(partitions - 1);
                ((p + step) % partitions, 0)
            }
            _ => (self.next_random(partitions), 0),
        };
        self.sticky.insert(topic.to_string(), (partition, sent + record_bytes));
        partition
    }
}

/// Open batches per (topic, partition).
#[derive(Debug)]
pub(crate) struct Accumulator<W> {
    batch_max_bytes: usize,
    linger: Duration,
    compression: (Compression, Option<i32>),
    open: HashMap<(String, u32), OpenBatch<W>>,
}

impl<W> Accumulator<W> {
    pub fn new(batch_max_bytes: usize, linger: Duration) -> Accumulator<W> {
        Accumulator {
            batch_max_bytes,
            linger,
            compression: (Compression::None, None),
            open: HashMap::new(),
        }
    }

    /// Compresses every batch with `codec` when it is sealed.
    pub fn with_compression(mut self, codec: Compression, level: Option<i32>) -> Accumulator<W> {
        self.compression = (codec, level);
        self
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
        let mut open = self.open.remove(key)?;
        open.builder.set_compression(self.compression.0, self.compression.1);
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
        let mut p = Partitioner::new(7);
        assert_eq!(p.choose("t", Some(3), Some(b"k"), 4, 10, 100), 3);
        assert_eq!(p.choose("t", None, Some(b"21"), 10, 10, 100), partition_for_key(b"21", 10));
        let first = p.choose("t", None, None, 4, 40, 100);
        assert_eq!(p.choose("t", None, None, 4, 40, 100), first);
        assert_eq!(
            p.choose("t", None, None, 4, 40, 100),
            first,
            "sticky until switch_bytes went there"
        );
        let second = p.choose("t", None, None, 4, 40, 100);
        assert_ne!(first, second, "moves on after switch_bytes");
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..4000 {
            *seen.entry(p.choose("t", None, None, 4, 100, 100)).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 4, "null keys spread over every partition");
        assert!(seen.values().all(|&n| n > 600), "roughly uniform: {seen:?}");
    }

    #[test]
    fn producers_start_on_different_partitions() {
        let starts: std::collections::BTreeSet<u32> = (0..64)
            .map(|_| Partitioner::random().choose("t", None, None, 8, 1, 16 * 1024))
            .collect();
        assert!(starts.len() > 1, "every new producer started on {starts:?}");
    }

    #[test]
    fn a_shrunk_partition_count_is_respected() {
        let mut p = Partitioner::new(3);
        for _ in 0..100 {
            assert!(p.choose("t", None, None, 8, 10, 50) < 8);
        }
        for _ in 0..100 {
            assert!(p.choose("t", None, None, 2, 10, 50) < 2);
        }
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
