//! The history of a fault test — every send (acknowledged with its offset, definitely failed, or
//! unknown) and every record a consumer read — and the checker (RELIABILITY.md §2):
//! - C1 every acknowledged `acks=all` send is in the final read at its (partition, offset);
//! - C2 each (partition, offset) holds one value across sends, reads and the final read;
//! - C4 a reader's offsets only rise, per partition; a send acknowledged before another was
//!   invoked on the same partition has the lower offset; one producer's acknowledged sends to a
//!   partition keep the order it sent them in (values `p<producer>-<seq>`), retries included;
//! - C5 nothing is read that was never sent or that definitely failed.
//!
//! Duplicates (a value at two offsets: a retry after an unknown outcome, without idempotence)
//! are counted and reported, not failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Acked {
        offset: i64,
    },
    /// Certainly not stored.
    Failed,
    /// May or may not be stored.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct SendOp {
    pub value: String,
    pub partition: u32,
    pub invoked: Instant,
    pub completed: Instant,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct ReadOp {
    pub consumer: usize,
    pub partition: u32,
    pub offset: i64,
    pub value: String,
}

/// Sends and reads, appended by the workload tasks.
#[derive(Debug, Default)]
pub struct History {
    sends: Mutex<Vec<SendOp>>,
    reads: Mutex<Vec<ReadOp>>,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub acked: usize,
    pub failed: usize,
    pub unknown: usize,
    pub reads: usize,
    pub final_records: usize,
    /// C1: acknowledged values missing from their (partition, offset).
    pub lost: Vec<String>,
    /// C2: (partition, offset) with more than one value.
    pub conflicts: Vec<String>,
    /// C4: a reader went back, or acknowledged order contradicts offsets.
    pub order: Vec<String>,
    /// C5: values read that were never sent or definitely failed.
    pub phantoms: Vec<String>,
    /// Values stored at more than one offset (reported only).
    pub duplicates: usize,
}

impl Report {
    /// True when every property holds.
    /// C1, C2, C4, C5 and C3 (nothing stored twice: the producers are idempotent).
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.conflicts.is_empty()
            && self.order.is_empty()
            && self.phantoms.is_empty()
            && self.duplicates == 0
    }

    /// One line for the test output.
    pub fn summary(&self) -> String {
        format!(
            "acked={} failed={} unknown={} reads={} final={} lost={} conflicts={} order={} phantoms={} duplicates={}",
            self.acked,
            self.failed,
            self.unknown,
            self.reads,
            self.final_records,
            self.lost.len(),
            self.conflicts.len(),
            self.order.len(),
            self.phantoms.len(),
            self.duplicates
        )
    }
}

fn first<T: std::fmt::Debug>(v: &[T]) -> String {
    format!("{:?}", &v[..v.len().min(5)])
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.summary())?;
        if !self.ok() {
            writeln!(f, "lost (first 5): {}", first(&self.lost))?;
            writeln!(f, "conflicts (first 5): {}", first(&self.conflicts))?;
            writeln!(f, "order (first 5): {}", first(&self.order))?;
            writeln!(f, "phantoms (first 5): {}", first(&self.phantoms))?;
        }
        Ok(())
    }
}

impl History {
    pub fn record_send(&self, op: SendOp) {
        self.sends.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn record_read(&self, op: ReadOp) {
        self.reads.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn sends(&self) -> Vec<SendOp> {
        self.sends.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Acknowledged sends so far.
    pub fn acked(&self) -> usize {
        self.sends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Acked { .. }))
            .count()
    }

    /// Checks the history against `final_read` ((partition, offset) -> value, everything below
    /// the HW read by a fresh consumer at the end).
    pub fn check(&self, final_read: &BTreeMap<(u32, i64), String>) -> Report {
        let sends = self.sends();
        let reads = self.reads.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut r =
            Report { reads: reads.len(), final_records: final_read.len(), ..Report::default() };
        let mut by_value: HashMap<&str, &SendOp> = HashMap::new();
        for s in &sends {
            by_value.insert(&s.value, s);
            match s.outcome {
                Outcome::Acked { .. } => r.acked += 1,
                Outcome::Failed => r.failed += 1,
                Outcome::Unknown => r.unknown += 1,
            }
        }
        // C1
        for s in &sends {
            if let Outcome::Acked { offset } = s.outcome
                && final_read.get(&(s.partition, offset)) != Some(&s.value)
            {
                r.lost.push(format!(
                    "{} at {}/{offset} (final has {:?})",
                    s.value,
                    s.partition,
                    final_read.get(&(s.partition, offset))
                ));
            }
        }
        // C2
        let mut at: BTreeMap<(u32, i64), String> = final_read.clone();
        let mut check_at = |key: (u32, i64), v: &str, what: &str, r: &mut Report| match at.get(&key)
        {
            Some(existing) if existing != v => {
                r.conflicts.push(format!("{}/{}: {existing} vs {v} ({what})", key.0, key.1))
            }
            Some(_) => {}
            None => {
                at.insert(key, v.to_string());
            }
        };
        for s in &sends {
            if let Outcome::Acked { offset } = s.outcome {
                check_at((s.partition, offset), &s.value, "ack", &mut r);
            }
        }
        for rd in &reads {
            check_at((rd.partition, rd.offset), &rd.value, "read", &mut r);
        }
        // C4: readers only go forward.
        let mut last: HashMap<(usize, u32), i64> = HashMap::new();
        for rd in &reads {
            let prev = last.insert((rd.consumer, rd.partition), rd.offset);
            if prev.is_some_and(|p| p >= rd.offset) {
                r.order.push(format!(
                    "consumer {} read {}/{} after {}",
                    rd.consumer,
                    rd.partition,
                    rd.offset,
                    prev.unwrap_or_default()
                ));
            }
        }
        // C4: real-time order of acknowledged sends per partition.
        let mut acked: Vec<&SendOp> =
            sends.iter().filter(|s| matches!(s.outcome, Outcome::Acked { .. })).collect();
        acked.sort_by_key(|s| s.completed);
        let mut max_done: HashMap<u32, (i64, Instant)> = HashMap::new();
        let mut by_invoke = acked.clone();
        by_invoke.sort_by_key(|s| s.invoked);
        // For each send, the largest offset among sends of its partition completed before it
        // was invoked must be smaller than its own.
        let mut i = 0;
        for s in &by_invoke {
            while i < acked.len() && acked[i].completed < s.invoked {
                let a = acked[i];
                if let Outcome::Acked { offset } = a.outcome {
                    let e = max_done.entry(a.partition).or_insert((offset, a.completed));
                    if offset > e.0 {
                        *e = (offset, a.completed);
                    }
                }
                i += 1;
            }
            if let (Outcome::Acked { offset }, Some((before, _))) =
                (s.outcome, max_done.get(&s.partition))
                && offset <= *before
            {
                r.order.push(format!(
                    "{} got {}/{offset} though {before} was acknowledged before it was sent",
                    s.value, s.partition
                ));
            }
        }
        // C4: one producer's order per partition survives retries.
        let mut per_producer: BTreeMap<(String, u32), Vec<(u64, i64)>> = BTreeMap::new();
        for s in &sends {
            if let Outcome::Acked { offset } = s.outcome
                && let Some((producer, seq)) = s.value.rsplit_once('-')
                && let Ok(seq) = seq.parse::<u64>()
            {
                per_producer
                    .entry((producer.to_string(), s.partition))
                    .or_default()
                    .push((seq, offset));
            }
        }
        for ((producer, partition), mut acks) in per_producer {
            acks.sort();
            for w in acks.windows(2) {
                if w[1].1 <= w[0].1 {
                    r.order.push(format!(
                        "{producer}: seq {} at {partition}/{} but later seq {} at {partition}/{}",
                        w[0].0, w[0].1, w[1].0, w[1].1
                    ));
                }
            }
        }
        // C5
        let all_read = reads.iter().map(|rd| &rd.value).chain(final_read.values());
        for v in all_read {
            match by_value.get(v.as_str()) {
                None => r.phantoms.push(format!("{v} was never sent")),
                Some(s) if s.outcome == Outcome::Failed => {
                    r.phantoms.push(format!("{v} was read though its send definitely failed"))
                }
                Some(_) => {}
            }
        }
        // Duplicates.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for v in final_read.values() {
            *seen.entry(v.as_str()).or_default() += 1;
        }
        r.duplicates = seen.values().filter(|n| **n > 1).count();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(h: &History, v: &str, p: u32, outcome: Outcome) {
        let now = Instant::now();
        h.record_send(SendOp {
            value: v.into(),
            partition: p,
            invoked: now,
            completed: now,
            outcome,
        });
    }

    #[test]
    fn the_checker_finds_losses_conflicts_and_phantoms() {
        let h = History::default();
        send(&h, "a", 0, Outcome::Acked { offset: 0 });
        send(&h, "b", 0, Outcome::Acked { offset: 1 });
        send(&h, "c", 0, Outcome::Failed);
        let mut fin = BTreeMap::new();
        fin.insert((0, 0), "a".to_string());
        fin.insert((0, 1), "b".to_string());
        assert!(h.check(&fin).ok(), "{}", h.check(&fin));
        // b lost, c (failed) read, x never sent.
        fin.insert((0, 1), "c".to_string());
        fin.insert((0, 2), "x".to_string());
        let r = h.check(&fin);
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.phantoms.len(), 2);
        // One producer's later send stored before its earlier one.
        send(&h, "p0-1", 1, Outcome::Acked { offset: 0 });
        send(&h, "p0-2", 1, Outcome::Acked { offset: 5 });
        send(&h, "p0-3", 1, Outcome::Acked { offset: 4 });
        // Both the real-time rule (2 was acknowledged before 3 was sent) and the producer's
        // order catch it.
        assert_eq!(h.check(&fin).order.len(), 2, "{}", h.check(&fin));
        // A reader going back.
        h.record_read(ReadOp { consumer: 0, partition: 0, offset: 1, value: "c".into() });
        h.record_read(ReadOp { consumer: 0, partition: 0, offset: 0, value: "a".into() });
        assert_eq!(h.check(&fin).order.len(), 3);
    }
}
