//! One partition's view of transactions (issue 18, first part: pure logic, not yet kept by the
//! partitions): which producers have a transaction open and from which offset, the last stable
//! offset (LSO) that `read_committed` consumers may read up to, and the aborted transactions a
//! `read_committed` fetch reports so the client skips their records (as Kafka's aborted index
//! does). Fed in log order: each transactional data batch ([`Transactions::on_data`]) and each
//! marker ([`Transactions::on_marker`]); rebuilt by replaying the log after a restart.

use std::collections::BTreeMap;

/// An aborted transaction's span in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Its first record here.
    pub first_offset: u64,
    /// Its abort marker.
    pub last_offset: u64,
}

/// Open transactions by producer, and the aborted ones still in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transactions {
    open: BTreeMap<i64, u64>,
    aborted: Vec<AbortedTxn>,
}

impl Transactions {
    /// A transactional batch of `producer_id` starting at `first_offset` was appended: it opens a
    /// transaction here unless one is open.
    pub fn on_data(&mut self, producer_id: i64, first_offset: u64) {
        self.open.entry(producer_id).or_insert(first_offset);
    }

    /// A marker of `producer_id` at `offset`: its transaction here ends. Returns the aborted span
    /// (recorded) for an abort; `None` for a commit, or a marker with nothing open (a retried
    /// marker, or a transaction that wrote nothing here).
    pub fn on_marker(&mut self, producer_id: i64, commit: bool, offset: u64) -> Option<AbortedTxn> {
        let first_offset = self.open.remove(&producer_id)?;
        if commit {
            return None;
        }
        let a = AbortedTxn { producer_id, first_offset, last_offset: offset };
        self.aborted.push(a);
        Some(a)
    }

    /// Below this offset every transaction is decided: the first offset of the earliest open
    /// one, or the high watermark when none is open (never above it).
    pub fn last_stable_offset(&self, high_watermark: u64) -> u64 {
        self.open.values().copied().min().map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// The aborted transactions with records in `[from, to)`, in log order: what a
    /// `read_committed` fetch of that range returns for the client to skip.
    pub fn aborted_in(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.first_offset < to && a.last_offset >= from)
            .copied()
            .collect()
    }

    /// The log was truncated to `log_end` (a follower's divergent suffix): forget what began at
    /// or after it; a marker at or after it is gone, so its transaction is open again.
    pub fn truncate(&mut self, log_end: u64) {
        self.open.retain(|_, first| *first < log_end);
        let mut reopened = Vec::new();
        self.aborted.retain(|a| {
            if a.last_offset < log_end {
                return true;
            }
            if a.first_offset < log_end {
                reopened.push((a.producer_id, a.first_offset));
            }
            false
        });
        for (pid, first) in reopened {
            self.open.entry(pid).or_insert(first);
        }
    }

    /// Retention removed everything below `log_start`: forget aborted spans wholly below it.
    pub fn trim(&mut self, log_start: u64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }

    /// How many producers have a transaction open here.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Whether `producer_id` has a transaction open here.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// The open transactions: producer id and first offset here, by producer id.
    pub fn open(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.open.iter().map(|(p, o)| (*p, *o))
    }

    /// The aborted transactions still in the log, in log order.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// The state a snapshot recorded.
    pub fn restore(open: impl IntoIterator<Item = (i64, u64)>, aborted: Vec<AbortedTxn>) -> Self {
        Transactions { open: open.into_iter().collect(), aborted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lso_holds_at_the_earliest_open_transaction_and_moves_when_it_ends() {
        let mut t = Transactions::default();
        assert_eq!(t.last_stable_offset(10), 10, "nothing open: the high watermark");
        t.on_data(1, 10);
        t.on_data(2, 12);
        t.on_data(1, 14); // a later batch of the same transaction
        assert_eq!(t.last_stable_offset(20), 10);
        assert_eq!(t.last_stable_offset(5), 5, "never above the high watermark");
        assert_eq!(t.on_marker(1, true, 16), None);
        assert_eq!(t.last_stable_offset(20), 12);
        let a = t.on_marker(2, false, 17).expect("an abort is recorded");
        assert_eq!(a, AbortedTxn { producer_id: 2, first_offset: 12, last_offset: 17 });
        assert_eq!(t.last_stable_offset(20), 20);
        assert_eq!(t.on_marker(2, false, 18), None, "a retried marker changes nothing");
        assert_eq!(t.open_count(), 0);
    }

    #[test]
    fn aborted_spans_are_reported_for_overlapping_fetches_and_survive_truncation_correctly() {
        let mut t = Transactions::default();
        t.on_data(1, 0);
        t.on_marker(1, false, 5);
        t.on_data(2, 6);
        t.on_marker(2, false, 9);
        assert_eq!(t.aborted_in(0, 3).len(), 1);
        assert_eq!(t.aborted_in(5, 7).len(), 2, "touches both spans");
        assert_eq!(t.aborted_in(10, 20), vec![]);
        // Truncated below the second abort marker: that transaction is open again.
        t.truncate(8);
        assert_eq!(t.open_count(), 1);
        assert_eq!(t.last_stable_offset(8), 6);
        assert_eq!(t.aborted_in(0, 100).len(), 1);
        t.trim(6);
        assert_eq!(t.aborted_in(0, 100), vec![], "the first span is below the log start");
    }
}
