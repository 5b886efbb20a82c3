//! The idempotent producers' side of the worker: producing with dedupe decisions, parking a
//! produce that overtook its predecessor, and the producers' state and snapshots kept with the
//! log.

use std::time::{Duration, Instant};

use silt_core::Offset;
use silt_core::batch::BatchHeader;

use super::super::producer_snapshot;
use super::super::producers::{Decision, Producers};
use super::{Appended, CommittedRead, PartitionError, Reply, WaitFor, Waiter, Worker};

/// A produce waiting for its producer's previous batch.
pub(super) struct Parked {
    pub batches: Vec<Vec<u8>>,
    pub wait: WaitFor,
    pub reply: Reply<Appended>,
    pub held: Option<crate::service::produce_budget::Held>,
    pub since: Instant,
}

/// Produces parked at once per partition (5 per producer for a few producers; more are
/// refused at once).
const PARK_MAX: usize = 32;
/// How long a produce waits for its predecessor. Checked whenever the worker handles a command
/// (the flush tick wakes it at least every `flush_interval_ms`), so a refusal can come later.
const PARK_FOR: Duration = Duration::from_millis(500);

impl Worker {
    /// Appends a produce and answers it (or queues its answer for the HW); one whose idempotent
    /// batch arrived before its predecessor is parked instead. True if something was appended.
    pub(super) fn append_or_park(&mut self, mut p: Parked) -> bool {
        match self.append(&mut p.batches, p.wait) {
            Ok(a) => {
                drop(p.held);
                if p.wait == WaitFor::Commit {
                    self.waiters.push_back(Waiter { appended: a, reply: p.reply });
                } else {
                    let _ = p.reply.send(Ok(a));
                }
                true
            }
            Err(PartitionError::Sequence(e))
                if e.is_ahead() && self.parked.len() < PARK_MAX && p.since.elapsed() < PARK_FOR =>
            {
                self.parked.push(p);
                false
            }
            Err(e) => {
                let _ = p.reply.send(Err(e));
                false
            }
        }
    }

    /// After an append: the parked produces whose predecessors may now be in, in arrival order,
    /// until a pass appends nothing (each pass that goes on appended at least one).
    pub(super) fn retry_parked(&mut self) {
        while !self.parked.is_empty() {
            let mut progressed = false;
            for p in std::mem::take(&mut self.parked) {
                progressed |= self.append_or_park(p);
            }
            if !progressed {
                break;
            }
        }
    }

    /// Refuses the parked produces that waited [`PARK_FOR`] for their predecessor: the client
    /// resends them in order (`OUT_OF_ORDER_SEQUENCE_NUMBER`, nothing appended).
    pub(super) fn expire_parked(&mut self) {
        if self.parked.iter().any(|p| p.since.elapsed() >= PARK_FOR) {
            for p in std::mem::take(&mut self.parked) {
                // Past its time it is answered, not parked again.
                self.append_or_park(p);
            }
        }
    }

    pub(super) fn refuse_parked(&mut self, why: impl Fn() -> PartitionError) {
        for p in self.parked.drain(..) {
            let _ = p.reply.send(Err(why()));
        }
    }

    /// The leader's dedupe decisions for a request's batches (`None` when none carries a
    /// producer id); builds the producers' state from the log first if needed.
    pub(super) fn plan_producers(
        &mut self,
        batches: &[Vec<u8>],
    ) -> Result<Option<Vec<Decision>>, PartitionError> {
        // The common case (no producer ids) costs a header parse per batch and no allocation.
        let idempotent = |b: &Vec<u8>| BatchHeader::parse(b).is_some_and(|h| h.producer_id >= 0);
        if !batches.iter().any(idempotent) {
            return Ok(None);
        }
        let headers: Vec<BatchHeader> =
            batches.iter().filter_map(|b| BatchHeader::parse(b)).collect();
        if headers.len() != batches.len() {
            return Ok(None);
        }
        let p = self.ensure_producers()?;
        Ok(Some(p.plan(&headers)?))
    }

    /// The producers' state (and the partition's transactions), built from the log first if
    /// needed.
    pub(super) fn ensure_producers(&mut self) -> Result<&Producers, PartitionError> {
        if self.producers.is_none() {
            let started = Instant::now();
            let p = Producers::rebuild(self.log_ref())?;
            tracing::info!(dir = %self.log_ref().dir().display(), producers = p.len(), open_transactions = p.txns.open_count(), took = ?started.elapsed(), "rebuilt the producers' state from the log");
            self.producers = Some(p);
        }
        Ok(self.producers.as_ref().expect("invariant: built above"))
    }

    /// `read_committed`: batches below the last stable offset and the aborted transactions
    /// with records among them.
    pub(super) fn read_committed(
        &mut self,
        from: Offset,
        max_bytes: usize,
    ) -> Result<CommittedRead, PartitionError> {
        let hw = self.high_watermark;
        let last_stable = Offset(self.ensure_producers()?.txns.last_stable_offset(hw.0));
        let r = self.log().read_upto(from, max_bytes, last_stable);
        let read = self.note_read(r, from)?;
        let txns = &self.producers.as_ref().expect("invariant: built above").txns;
        let aborted = txns.aborted_in(read.first_offset.0.min(from.0), read.next_offset.0);
        Ok(CommittedRead { read, last_stable, aborted })
    }

    /// Retention moved the log start: aborted spans wholly below it are forgotten.
    pub(super) fn trim_transactions(&mut self) {
        let start = self.log_ref().log_start_offset().0;
        if let Some(p) = self.producers.as_mut() {
            p.txns.trim(start);
        }
    }

    /// Drops the producers' state before the log is cut to `kept` (`None`: emptied), with the
    /// snapshots above it (it is rebuilt when next needed).
    pub(super) fn forget_producers(&mut self, kept: Option<Offset>) {
        self.producers = None;
        producer_snapshot::delete_above(self.log_ref().dir(), kept);
    }

    /// After an append that rolled the active segment: a snapshot of the producers' state at
    /// the log's end (built first if needed, from the previous snapshot on), so a later rebuild
    /// replays at most about a segment.
    pub(super) fn snapshot_producers(&mut self) {
        if self.producers.is_none() {
            match Producers::rebuild(self.log_ref()) {
                Ok(p) => self.producers = Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build the producers' state for a snapshot");
                    return;
                }
            }
        }
        let (log, p) = (self.log_ref(), self.producers.as_ref().expect("invariant: built above"));
        if let Err(e) = producer_snapshot::write(log.dir(), log.log_end_offset(), p) {
            tracing::warn!(dir = %log.dir().display(), error = %e, "cannot write a producer snapshot");
        }
    }
}
