//! Idempotent producers' state of one partition (Kafka's producer state manager): per producer
//! id, its epoch and the sequence ranges and offsets of its last [`WINDOW`] batches. The
//! leader checks each batch that carries a producer id against it: a retry of a batch already
//! in the log is answered with the original offsets instead of being appended again; a gap, an
//! old epoch or a producer it has no state for is refused. The state is a function of the log
//! (every batch carries its producer id, epoch and sequences), so it is rebuilt by a scan of the
//! log, by the leader before its first idempotent append and after any truncation; followers
//! keep it current from what they replicate once built. A rebuild starts from the newest
//! snapshot (see [`producer_snapshot`](super::producer_snapshot)) and replays the log after it.

use std::collections::{HashMap, VecDeque};

use silt_core::Offset;
use silt_core::batch::{BatchHeader, BatchIter, CONTROL_FLAG, Marker, TRANSACTIONAL_FLAG};
use silt_core::stable::Transactions;
use silt_storage::{Log, StorageError};

use super::producer_snapshot;

/// Batches remembered per producer (Kafka's 5: the most requests a producer keeps in flight).
pub const WINDOW: usize = 5;
/// Bytes read per step of a rebuild.
const REBUILD_READ_BYTES: usize = 4 * 1024 * 1024;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Appended {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub epoch: i16,
    pub batches: VecDeque<Appended>,
    /// The newest batch's max timestamp (for expiry).
    pub last_timestamp_ms: i64,
}

impl Entry {
    pub(super) fn new(epoch: i16, last_timestamp_ms: i64) -> Entry {
        Entry { epoch, batches: VecDeque::with_capacity(WINDOW), last_timestamp_ms }
    }
}

/// What the leader does with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// New: append it.
    Append,
    /// Already in the log at these offsets: answer them, append nothing.
    Duplicate { base_offset: Offset, last_offset: Offset },
}

/// Why a batch is refused (nothing of its request is appended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id}: sequence {got} where {expected} was expected")]
    OutOfOrder { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than the current {current}")]
    InvalidEpoch { producer_id: i64, current: i16, got: i16 },
    #[error(
        "producer {producer_id}: no state for it here (expired or never seen) and sequence {got} is not 0"
    )]
    UnknownProducer { producer_id: i64, got: i32 },
}

impl SequenceError {
    /// A batch that comes after a gap its producer's earlier batches may still fill (as
    /// opposed to an old epoch, or a batch the window has forgotten).
    pub fn is_ahead(&self) -> bool {
        match *self {
            SequenceError::OutOfOrder { expected, got, .. } => {
                let d = (i64::from(got) - i64::from(expected)).rem_euclid(i64::from(i32::MAX) + 1);
                d > 0 && d < 1 << 30
            }
            SequenceError::UnknownProducer { got, .. } => got > 0,
            SequenceError::InvalidEpoch { .. } => false,
        }
    }
}

/// The last sequence of a batch (sequences wrap from `i32::MAX` to 0, as in Kafka).
fn last_seq(first: i32, record_count: u32) -> i32 {
    let span = i64::from(record_count.max(1)) - 1;
    ((i64::from(first) + span) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// The producers' state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Producers {
    by_id: HashMap<i64, Entry>,
    /// The partition's transactions: which producers have one open, the aborted ones.
    pub txns: Transactions,
}

impl Producers {
    /// The state of the log's batches: the newest snapshot at or below the log's end, then
    /// every batch after it (from the log's start without a snapshot).
    pub fn rebuild(log: &Log) -> Result<Producers, StorageError> {
        let end = log.log_end_offset();
        let (mut p, from) = match producer_snapshot::load_newest(log.dir(), end) {
            // Records deleted since (retention) are skipped; the snapshot kept their state.
            Some((at, p)) => (p, at.max(log.log_start_offset())),
            None => (Producers::default(), log.log_start_offset()),
        };
        p.replay(log, from)?;
        Ok(p)
    }

    /// Records every batch of `log` from `from` to its end.
    fn replay(&mut self, log: &Log, from: Offset) -> Result<(), StorageError> {
        let p = self;
        let end = log.log_end_offset();
        let mut at = from;
        // Each step moves past at least one batch; bounded by the offsets in the log.
        while at < end {
            let read = log.read(at, REBUILD_READ_BYTES)?;
            let mut next = at;
            for b in BatchIter::new(read.data) {
                let Ok(b) = b else { break };
                if let Some(h) = BatchHeader::parse(&b) {
                    p.record_batch(&h, &b);
                    next = next.max(h.next_offset());
                }
            }
            if next <= at {
                break;
            }
            at = next;
        }
        Ok(())
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (&i64, &Entry)> {
        self.by_id.iter()
    }

    /// Adds a producer's state (a snapshot being read); returns the one it replaces.
    pub(super) fn insert(&mut self, id: i64, entry: Entry) -> Option<Entry> {
        self.by_id.insert(id, entry)
    }

    #[cfg(test)]
    pub(super) fn by_id_mut(&mut self) -> &mut HashMap<i64, Entry> {
        &mut self.by_id
    }

    /// How many producers have state here.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The leader's decision for each batch of one request, in order, as if the earlier ones
    /// were appended; any refusal refuses the whole request (nothing is changed here).
    pub fn plan(&self, headers: &[BatchHeader]) -> Result<Vec<Decision>, SequenceError> {
        let mut scratch: HashMap<i64, Entry> = HashMap::new();
        let mut out = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            if h.producer_id < 0 {
                out.push(Decision::Append);
                continue;
            }
            let entry = scratch.get(&h.producer_id).or_else(|| self.by_id.get(&h.producer_id));
            let d = decide(entry, h, self.txns.is_open(h.producer_id))?;
            if d == Decision::Append {
                // Placeholder offsets: later batches of the request only look at sequences.
                let mut e = entry.cloned();
                let fake = Offset(u64::MAX - i as u64);
                apply(&mut e, h, fake, fake);
                if let Some(e) = e {
                    scratch.insert(h.producer_id, e);
                }
            }
            out.push(d);
        }
        Ok(out)
    }

    /// Remembers an appended data batch (`h` as stored: its real base offset); a
    /// transactional one opens its producer's transaction here unless one is open.
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let mut e = self.by_id.remove(&h.producer_id);
        apply(&mut e, h, h.base_offset, h.last_offset());
        if let Some(e) = e {
            self.by_id.insert(h.producer_id, e);
        }
        if h.attributes & (TRANSACTIONAL_FLAG | CONTROL_FLAG) == TRANSACTIONAL_FLAG {
            self.txns.on_data(h.producer_id, h.base_offset.0);
        }
    }

    /// Remembers an appended batch of any kind: a transaction marker ends its producer's
    /// transaction here (and moves the producer to the marker's epoch); others as
    /// [`record`](Self::record).
    pub fn record_batch(&mut self, h: &BatchHeader, batch: &[u8]) {
        if h.attributes & CONTROL_FLAG == 0 {
            return self.record(h);
        }
        let Some(m) = Marker::decode(bytes::Bytes::copy_from_slice(batch)) else { return };
        let e = self
            .by_id
            .entry(m.producer_id)
            .or_insert_with(|| Entry::new(m.producer_epoch, h.max_timestamp));
        if m.producer_epoch > e.epoch {
            *e = Entry::new(m.producer_epoch, e.last_timestamp_ms);
        }
        e.last_timestamp_ms = e.last_timestamp_ms.max(h.max_timestamp);
        self.txns.on_marker(m.producer_id, m.commit, h.base_offset.0);
    }

    /// Forgets producers whose newest batch is older than `max_age_ms`, except those with a
    /// transaction open here (the coordinator's timeout ends those).
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) {
        let txns = &self.txns;
        self.by_id.retain(|id, e| {
            txns.is_open(*id) || now_ms.saturating_sub(e.last_timestamp_ms) <= max_age_ms
        });
    }
}

/// `open`: the producer has a transaction open in this partition.
fn decide(entry: Option<&Entry>, h: &BatchHeader, open: bool) -> Result<Decision, SequenceError> {
    let (id, seq) = (h.producer_id, h.base_sequence);
    if h.attributes & CONTROL_FLAG != 0 {
        // A marker (written by brokers only): never from an epoch older than the producer's,
        // and one ending an open transaction must be above its data's epoch (v2: the markers
        // carry the bumped epoch). A late marker of an earlier transaction, from a deposed
        // coordinator, has the epoch the next transaction's data has: refused, so it cannot
        // end that transaction.
        return match entry {
            Some(e) if h.producer_epoch < e.epoch || (open && h.producer_epoch <= e.epoch) => {
                Err(SequenceError::InvalidEpoch {
                    producer_id: id,
                    current: e.epoch,
                    got: h.producer_epoch,
                })
            }
            _ => Ok(Decision::Append),
        };
    }
    if seq < 0 {
        // The group coordinator's transactional offset commit (clients' batches are numbered,
        // checked at produce): not deduplicated, only never from an older epoch.
        return match entry {
            Some(e) if h.producer_epoch < e.epoch => Err(SequenceError::InvalidEpoch {
                producer_id: id,
                current: e.epoch,
                got: h.producer_epoch,
            }),
            _ => Ok(Decision::Append),
        };
    }
    let Some(e) = entry else {
        return if seq == 0 {
            Ok(Decision::Append)
        } else {
            Err(SequenceError::UnknownProducer { producer_id: id, got: seq })
        };
    };
    if h.producer_epoch < e.epoch {
        return Err(SequenceError::InvalidEpoch {
            producer_id: id,
            current: e.epoch,
            got: h.producer_epoch,
        });
    }
    if h.producer_epoch > e.epoch {
        // A new epoch starts its sequences again.
        return if seq == 0 {
            Ok(Decision::Append)
        } else {
            Err(SequenceError::OutOfOrder { producer_id: id, expected: 0, got: seq })
        };
    }
    let last = last_seq(seq, h.record_count);
    if let Some(b) = e.batches.iter().find(|b| b.first_seq == seq && b.last_seq == last) {
        return Ok(Decision::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
    }
    let expected = e.batches.back().map_or(0, |b| next_seq(b.last_seq));
    if seq == expected {
        Ok(Decision::Append)
    } else {
        Err(SequenceError::OutOfOrder { producer_id: id, expected, got: seq })
    }
}

fn apply(entry: &mut Option<Entry>, h: &BatchHeader, base_offset: Offset, last_offset: Offset) {
    if h.attributes & CONTROL_FLAG != 0 {
        // A marker moves the producer to its epoch; its sequences start again there.
        match entry {
            Some(e) if e.epoch >= h.producer_epoch => {}
            _ => *entry = Some(Entry::new(h.producer_epoch, h.max_timestamp)),
        }
        return;
    }
    let e = match entry {
        Some(e) if e.epoch == h.producer_epoch => e,
        Some(e) if e.epoch > h.producer_epoch => return, // a fenced epoch's batch (rebuild)
        _ => entry.insert(Entry::new(h.producer_epoch, h.max_timestamp)),
    };
    e.last_timestamp_ms = e.last_timestamp_ms.max(h.max_timestamp);
    if h.base_sequence < 0 {
        return; // a coordinator's sequence-less batch: nothing to deduplicate against
    }
    if e.batches.len() == WINDOW {
        e.batches.pop_front();
    }
    e.batches.push_back(Appended {
        first_seq: h.base_sequence,
        last_seq: last_seq(h.base_sequence, h.record_count),
        base_offset,
        last_offset,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: i64, epoch: i16, seq: i32, records: u32, base: u64) -> BatchHeader {
        BatchHeader {
            base_offset: Offset(base),
            batch_length: 100,
            partition_leader_epoch: silt_core::LeaderEpoch(0),
            magic: 1,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    fn one(p: &Producers, h: BatchHeader) -> Result<Decision, SequenceError> {
        p.plan(&[h]).map(|d| d[0])
    }

    #[test]
    fn in_order_batches_append_and_each_of_the_last_five_is_a_duplicate() {
        let mut p = Producers::default();
        for i in 0..7u64 {
            let h = batch(7, 0, (i * 3) as i32, 3, 100 + i * 3);
            assert_eq!(one(&p, h), Ok(Decision::Append), "batch {i}");
            p.record(&h);
        }
        for i in 2..7u64 {
            let retry = batch(7, 0, (i * 3) as i32, 3, 0);
            let want = Decision::Duplicate {
                base_offset: Offset(100 + i * 3),
                last_offset: Offset(100 + i * 3 + 2),
            };
            assert_eq!(one(&p, retry), Ok(want), "retry of batch {i}");
        }
        // Older than the window: not deduplicated, refused as out of order.
        assert!(matches!(one(&p, batch(7, 0, 3, 3, 0)), Err(SequenceError::OutOfOrder { .. })));
        assert_eq!(one(&p, batch(7, 0, 21, 1, 0)), Ok(Decision::Append));
    }

    #[test]
    fn a_gap_an_old_epoch_and_an_unknown_producer_are_refused() {
        let mut p = Producers::default();
        p.record(&batch(1, 2, 0, 5, 0));
        assert_eq!(
            one(&p, batch(1, 2, 6, 1, 0)),
            Err(SequenceError::OutOfOrder { producer_id: 1, expected: 5, got: 6 })
        );
        assert_eq!(
            one(&p, batch(1, 1, 5, 1, 0)),
            Err(SequenceError::InvalidEpoch { producer_id: 1, current: 2, got: 1 })
        );
        assert_eq!(one(&p, batch(1, 3, 0, 1, 0)), Ok(Decision::Append), "a new epoch from 0");
        assert!(matches!(one(&p, batch(1, 3, 4, 1, 0)), Err(SequenceError::OutOfOrder { .. })));
        assert_eq!(
            one(&p, batch(9, 0, 4, 1, 0)),
            Err(SequenceError::UnknownProducer { producer_id: 9, got: 4 })
        );
        assert_eq!(one(&p, batch(9, 0, 0, 1, 0)), Ok(Decision::Append));
        assert_eq!(one(&p, batch(-1, -1, -1, 1, 0)), Ok(Decision::Append), "no producer id");
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut p = Producers::default();
        p.record(&batch(4, 0, 0, 1, 0));
        let mut e = p.by_id.remove(&4).unwrap();
        e.batches.back_mut().unwrap().last_seq = i32::MAX - 3;
        p.by_id.insert(4, e);
        let wrapping = batch(4, 0, i32::MAX - 2, 5, 10);
        assert_eq!(one(&p, wrapping), Ok(Decision::Append));
        p.record(&wrapping);
        assert_eq!(last_seq(i32::MAX - 2, 5), 1);
        assert_eq!(one(&p, batch(4, 0, 2, 1, 0)), Ok(Decision::Append), "after the wrap");
        let retry = batch(4, 0, i32::MAX - 2, 5, 0);
        assert!(matches!(one(&p, retry), Ok(Decision::Duplicate { .. })));
    }

    #[test]
    fn a_request_is_planned_batch_after_batch_and_refused_whole() {
        let p = Producers::default();
        let ok = [batch(3, 0, 0, 2, 0), batch(3, 0, 2, 2, 0), batch(3, 0, 4, 1, 0)];
        assert_eq!(p.plan(&ok).unwrap(), vec![Decision::Append; 3]);
        let gap = [batch(3, 0, 0, 2, 0), batch(3, 0, 3, 1, 0)];
        assert!(p.plan(&gap).is_err());
        assert_eq!(p.len(), 0, "planning changes nothing");
    }

    fn marker(id: i64, epoch: i16, commit: bool, at: u64) -> (BatchHeader, Vec<u8>) {
        let m = Marker { commit, producer_id: id, producer_epoch: epoch, coordinator_epoch: 0 };
        let bytes = m.encode(1_000);
        let h = BatchHeader { base_offset: Offset(at), ..BatchHeader::parse(&bytes).unwrap() };
        (h, bytes)
    }

    #[test]
    fn transactional_batches_open_a_transaction_and_its_marker_ends_it_at_a_new_epoch() {
        let mut p = Producers::default();
        let mut data = batch(5, 1, 0, 2, 10);
        data.attributes = TRANSACTIONAL_FLAG;
        p.record(&data);
        assert_eq!(p.txns.last_stable_offset(20), 10, "open from its first batch");
        let (h, bytes) = marker(5, 2, false, 12);
        assert_eq!(one(&p, h), Ok(Decision::Append));
        p.record_batch(&h, &bytes);
        assert_eq!(p.txns.last_stable_offset(20), 20);
        assert_eq!(p.txns.aborted_in(0, 20).len(), 1);
        // The next transaction's epoch starts at sequence 0; the old epoch is fenced.
        let mut next = batch(5, 2, 0, 1, 13);
        next.attributes = TRANSACTIONAL_FLAG;
        assert_eq!(one(&p, next), Ok(Decision::Append));
        let mut late = batch(5, 1, 2, 1, 0);
        late.attributes = TRANSACTIONAL_FLAG;
        assert!(matches!(one(&p, late), Err(SequenceError::InvalidEpoch { .. })));
        // A marker from an older epoch than the producer's is refused too.
        assert!(matches!(
            one(&p, marker(5, 1, true, 14).0),
            Err(SequenceError::InvalidEpoch { .. })
        ));
        // A late marker of the previous transaction (epoch 2, from a deposed coordinator)
        // cannot end the next transaction, whose data has epoch 2 too.
        p.record(&next);
        assert!(matches!(
            one(&p, marker(5, 2, false, 15).0),
            Err(SequenceError::InvalidEpoch { .. })
        ));
        assert_eq!(one(&p, marker(5, 3, true, 15).0), Ok(Decision::Append));
    }

    #[test]
    fn a_producer_with_an_open_transaction_does_not_expire() {
        let mut p = Producers::default();
        let mut data = batch(6, 0, 0, 1, 0);
        data.attributes = TRANSACTIONAL_FLAG;
        p.record(&data);
        p.expire(i64::MAX, 1);
        assert_eq!(p.len(), 1);
        let (h, bytes) = marker(6, 1, true, 1);
        p.record_batch(&h, &bytes);
        p.expire(i64::MAX, 1);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn silent_producers_expire() {
        let mut p = Producers::default();
        p.record(&batch(1, 0, 0, 1, 0));
        let week = crate::config::DEFAULT_PRODUCER_ID_EXPIRATION_MS as i64;
        p.expire(1_000 + week, week);
        assert_eq!(p.len(), 1);
        p.expire(1_001 + week, week);
        assert_eq!(p.len(), 0);
    }
}
