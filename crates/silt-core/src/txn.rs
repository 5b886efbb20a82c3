//! The transaction coordinator's state machine for one transactional id (issue 18, first part:
//! the pure decision logic; the coordinator, markers and read_committed are not built yet,
//! `docs/transactions.md`).
//!
//! Kafka's states, with transaction protocol v2 (KIP-890) rather than v1: the producer epoch is
//! bumped at the end of **every** transaction (the markers and the next transaction use the new
//! epoch), so a late batch of a finished transaction carries an epoch the partition leader
//! refuses and can never join the next one; and partitions join a transaction when their leader
//! verifies the producer's first transactional batch with the coordinator
//! ([`Txn::add_partition`]), not on the client's word. Every transition must be written to
//! `__transaction_state` (acks=all) before it is acted on or answered.

use std::collections::BTreeSet;

/// A topic partition.
pub type Tp = (String, u32);

/// Where a transactional id's current transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Records are being written to `partitions`.
    Ongoing,
    /// Commit decided (durably): commit markers are being written.
    PrepareCommit,
    /// Abort decided (durably): abort markers are being written.
    PrepareAbort,
    /// Every partition has its commit marker.
    CompleteCommit,
    /// Every partition has its abort marker.
    CompleteAbort,
}

/// Why a request is refused (each is the Kafka error of the same name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// A newer incarnation (or the end of a transaction) bumped the epoch: this producer is a
    /// zombie and must stop.
    #[error("producer epoch {asked} is fenced: the transactional id is at epoch {current}")]
    ProducerFenced { asked: i16, current: i16 },
    /// The previous transaction's markers are still being written: retry shortly.
    #[error("the previous transaction is still completing")]
    ConcurrentTransactions,
    #[error("{0:?} cannot {1}")]
    InvalidTxnState(TxnState, &'static str),
    #[error("transaction timeout {0} ms is outside 1..={MAX_TIMEOUT_MS}")]
    InvalidTransactionTimeout(u64),
}

/// Kafka's `transaction.max.timeout.ms` (15 minutes).
pub const MAX_TIMEOUT_MS: u64 = 900_000;

/// What the coordinator must do once the new state is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Write a commit (or abort) marker with this producer id and epoch to every partition, then
    /// call [`Txn::markers_written`].
    WriteMarkers {
        commit: bool,
        producer_id: i64,
        epoch: i16,
        partitions: BTreeSet<Tp>,
    },
}

/// The answer to InitProducerId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// The producer may start: its id and (bumped) epoch.
    Ready { producer_id: i64, epoch: i16 },
    /// The previous incarnation left a transaction open: it is being aborted (answer
    /// `CONCURRENT_TRANSACTIONS`, the client retries), after `action`.
    AbortFirst(Action),
}

/// One transactional id's coordinator state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: u64,
    pub state: TxnState,
    /// The partitions of the current (or completing) transaction.
    pub partitions: BTreeSet<Tp>,
    /// When the current transaction started (its first partition joined).
    pub started_ms: u64,
    pub updated_ms: u64,
    /// The producer id before the last bump when that bump moved to a fresh id (-1
    /// otherwise): a decided transaction's markers carry it (at `i16::MAX`, its epoch + 1,
    /// where the partitions know the transaction), and a retried EndTxn may still name it.
    pub previous_producer_id: i64,
    /// The open transaction was aborted by a newer incarnation's InitProducerId: the old
    /// incarnation's EndTxn is fenced, never answered as a retry (that would hand it the new
    /// epoch).
    pub fenced_abort: bool,
}

fn check_timeout(timeout_ms: u64) -> Result<(), TxnError> {
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(TxnError::InvalidTransactionTimeout(timeout_ms));
    }
    Ok(())
}

impl Txn {
    /// A transactional id's first InitProducerId: `producer_id` at epoch 0.
    pub fn new(producer_id: i64, timeout_ms: u64, now_ms: u64) -> Result<Txn, TxnError> {
        check_timeout(timeout_ms)?;
        Ok(Txn {
            producer_id,
            epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            started_ms: now_ms,
            updated_ms: now_ms,
            previous_producer_id: -1,
            fenced_abort: false,
        })
    }

    /// The next epoch; at the top of the range, a fresh producer id at epoch 0 (Kafka's rule).
    /// (The epoch never passes `i16::MAX - 1`, so the markers' epoch + 1 always fits.)
    fn bump(&mut self, fresh_id: impl FnOnce() -> i64) {
        if self.epoch >= i16::MAX - 1 {
            self.previous_producer_id = self.producer_id;
            self.producer_id = fresh_id();
            self.epoch = 0;
        } else {
            self.previous_producer_id = -1;
            self.epoch += 1;
        }
    }

    /// The producer id and epoch the markers of a decided transaction carry: the transaction's
    /// producer id at its epoch + 1 (after a move to a fresh id, the old id at `i16::MAX`).
    pub fn marker_identity(&self) -> (i64, i16) {
        if self.previous_producer_id >= 0 {
            (self.previous_producer_id, i16::MAX)
        } else {
            (self.producer_id, self.epoch)
        }
    }

    fn check_epoch(&self, asked: i16) -> Result<(), TxnError> {
        if asked != self.epoch {
            return Err(TxnError::ProducerFenced { asked, current: self.epoch });
        }
        Ok(())
    }

    /// InitProducerId by a (new) incarnation: fences every older one by bumping the epoch; an
    /// open transaction is aborted first.
    pub fn init(
        &mut self,
        timeout_ms: u64,
        now_ms: u64,
        fresh_id: impl FnOnce() -> i64,
    ) -> Result<Init, TxnError> {
        check_timeout(timeout_ms)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                let action = self.abort(now_ms, fresh_id);
                self.fenced_abort = true;
                Ok(Init::AbortFirst(action))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.bump(fresh_id);
                self.fenced_abort = false;
                self.timeout_ms = timeout_ms;
                self.state = TxnState::Empty;
                self.partitions.clear();
                self.updated_ms = now_ms;
                Ok(Init::Ready { producer_id: self.producer_id, epoch: self.epoch })
            }
        }
    }

    /// A partition leader verifies the producer's first transactional batch for `tp` (v2: this
    /// is how partitions join a transaction). Starts a transaction when none is open.
    pub fn add_partition(
        &mut self,
        producer_id: i64,
        epoch: i16,
        tp: Tp,
        now_ms: u64,
    ) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::ProducerFenced { asked: epoch, current: self.epoch });
        }
        self.check_epoch(epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.state = TxnState::Ongoing;
                self.partitions = BTreeSet::from([tp]);
                self.started_ms = now_ms;
                self.updated_ms = now_ms;
                Ok(())
            }
            TxnState::Ongoing => {
                self.partitions.insert(tp);
                self.updated_ms = now_ms;
                Ok(())
            }
        }
    }

    /// EndTxn: commit or abort the open transaction; the epoch is bumped (v2) and the markers
    /// carry the new one. A retried EndTxn of the transaction just ended (its producer id and
    /// epoch, the same decision) succeeds without doing anything again, unless a newer
    /// incarnation aborted that transaction (then the caller is fenced).
    pub fn end(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: u64,
        fresh_id: impl FnOnce() -> i64,
    ) -> Result<Action, TxnError> {
        let (marker_id, marker_epoch) = self.marker_identity();
        let retried = (producer_id, epoch) == (marker_id, marker_epoch.wrapping_sub(1))
            && matches!(
                (self.state, commit),
                (TxnState::PrepareCommit | TxnState::CompleteCommit, true)
                    | (TxnState::PrepareAbort | TxnState::CompleteAbort, false)
            );
        if retried && !self.fenced_abort {
            return Ok(Action::Nothing);
        }
        if producer_id != self.producer_id {
            return Err(TxnError::ProducerFenced { asked: epoch, current: self.epoch });
        }
        self.check_epoch(epoch)?;
        match self.state {
            TxnState::Ongoing if commit => {
                self.bump(fresh_id);
                self.state = TxnState::PrepareCommit;
                self.updated_ms = now_ms;
                Ok(self.markers(true))
            }
            TxnState::Ongoing => Ok(self.abort(now_ms, fresh_id)),
            // Nothing was written: an empty transaction ends at once (a new epoch all the same,
            // so the next transaction cannot be joined by this one's stragglers).
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.bump(fresh_id);
                self.state =
                    if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
                self.partitions.clear();
                self.updated_ms = now_ms;
                Ok(Action::Nothing)
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
        }
    }

    fn markers(&self, commit: bool) -> Action {
        let (producer_id, epoch) = self.marker_identity();
        Action::WriteMarkers { commit, producer_id, epoch, partitions: self.partitions.clone() }
    }

    fn abort(&mut self, now_ms: u64, fresh_id: impl FnOnce() -> i64) -> Action {
        self.bump(fresh_id);
        self.fenced_abort = false;
        self.state = TxnState::PrepareAbort;
        self.updated_ms = now_ms;
        self.markers(false)
    }

    /// Every partition has its marker: the transaction is complete.
    pub fn markers_written(&mut self, now_ms: u64) -> Result<(), TxnError> {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            s => return Err(TxnError::InvalidTxnState(s, "complete: no markers are due")),
        };
        self.partitions.clear();
        self.updated_ms = now_ms;
        Ok(())
    }

    /// An open transaction past its timeout is aborted, and its producer fenced by the bump.
    pub fn expire(&mut self, now_ms: u64, fresh_id: impl FnOnce() -> i64) -> Option<Action> {
        let due = self.state == TxnState::Ongoing
            && now_ms.saturating_sub(self.started_ms) > self.timeout_ms;
        due.then(|| self.abort(now_ms, fresh_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> Tp {
        ("orders".to_string(), p)
    }

    fn no_fresh() -> i64 {
        panic!("no new producer id expected")
    }

    #[test]
    fn a_transaction_commits_with_markers_at_a_bumped_epoch_and_stragglers_are_fenced() {
        let mut t = Txn::new(7, 60_000, 0).unwrap();
        assert_eq!(t.init(60_000, 0, no_fresh), Ok(Init::Ready { producer_id: 7, epoch: 1 }));
        t.add_partition(7, 1, tp(0), 10).unwrap();
        t.add_partition(7, 1, tp(1), 11).unwrap();
        let action = t.end(7, 1, true, 20, no_fresh).unwrap();
        assert_eq!(
            action,
            Action::WriteMarkers {
                commit: true,
                producer_id: 7,
                epoch: 2,
                partitions: [tp(0), tp(1)].into()
            }
        );
        assert_eq!(t.state, TxnState::PrepareCommit);
        // A late batch of the finished transaction (epoch 1) cannot join anything.
        assert_eq!(
            t.add_partition(7, 1, tp(2), 21),
            Err(TxnError::ProducerFenced { asked: 1, current: 2 })
        );
        assert_eq!(t.add_partition(7, 2, tp(2), 21), Err(TxnError::ConcurrentTransactions));
        assert_eq!(t.end(7, 1, true, 22, no_fresh), Ok(Action::Nothing), "a retried EndTxn");
        t.markers_written(30).unwrap();
        assert_eq!((t.state, t.partitions.len()), (TxnState::CompleteCommit, 0));
        // The next transaction runs at the new epoch.
        t.add_partition(7, 2, tp(2), 40).unwrap();
        assert_eq!(t.state, TxnState::Ongoing);
    }

    #[test]
    fn a_new_incarnation_fences_the_old_and_aborts_its_open_transaction() {
        let mut t = Txn::new(7, 60_000, 0).unwrap();
        t.add_partition(7, 0, tp(0), 1).unwrap();
        let Ok(Init::AbortFirst(Action::WriteMarkers { commit: false, epoch: 1, .. })) =
            t.init(60_000, 2, no_fresh)
        else {
            panic!("the open transaction is aborted first: {t:?}")
        };
        assert_eq!(t.init(60_000, 3, no_fresh), Err(TxnError::ConcurrentTransactions));
        t.markers_written(4).unwrap();
        assert_eq!(t.init(60_000, 5, no_fresh), Ok(Init::Ready { producer_id: 7, epoch: 2 }));
        // The zombie (epoch 0) can neither write nor commit.
        assert!(matches!(t.add_partition(7, 0, tp(0), 6), Err(TxnError::ProducerFenced { .. })));
        assert!(matches!(t.end(7, 0, true, 6, no_fresh), Err(TxnError::ProducerFenced { .. })));
    }

    #[test]
    fn a_zombies_abort_is_not_taken_for_a_retry_of_the_fencing_abort() {
        let mut t = Txn::new(7, 60_000, 0).unwrap();
        t.add_partition(7, 0, tp(0), 1).unwrap();
        assert!(matches!(t.init(60_000, 2, no_fresh), Ok(Init::AbortFirst(_))));
        // The old incarnation aborts (epoch 0, the epoch just before the markers'): fenced,
        // not handed epoch 1 as if it had asked for this abort.
        assert!(matches!(t.end(7, 0, false, 3, no_fresh), Err(TxnError::ProducerFenced { .. })));
        t.markers_written(4).unwrap();
        assert!(matches!(t.end(7, 0, false, 5, no_fresh), Err(TxnError::ProducerFenced { .. })));
        // A producer's own abort retried is still a retry.
        assert_eq!(t.init(60_000, 6, no_fresh), Ok(Init::Ready { producer_id: 7, epoch: 2 }));
        t.add_partition(7, 2, tp(0), 7).unwrap();
        assert!(matches!(t.end(7, 2, false, 8, no_fresh), Ok(Action::WriteMarkers { .. })));
        assert_eq!(t.end(7, 2, false, 9, no_fresh), Ok(Action::Nothing));
    }

    #[test]
    fn markers_at_the_move_to_a_fresh_id_carry_the_transactions_id_and_a_retry_still_works() {
        let mut t = Txn::new(7, 60_000, 0).unwrap();
        t.epoch = i16::MAX - 1;
        t.add_partition(7, i16::MAX - 1, tp(0), 1).unwrap();
        let action = t.end(7, i16::MAX - 1, true, 2, || 8).unwrap();
        // The partitions know the transaction as producer 7: the markers say 7, epoch MAX.
        assert_eq!(
            action,
            Action::WriteMarkers {
                commit: true,
                producer_id: 7,
                epoch: i16::MAX,
                partitions: [tp(0)].into()
            }
        );
        assert_eq!((t.producer_id, t.epoch), (8, 0), "the next transaction's identity");
        // The EndTxn retried with the old id is a retry, not a fenced producer.
        assert_eq!(t.end(7, i16::MAX - 1, true, 3, no_fresh), Ok(Action::Nothing));
        t.markers_written(4).unwrap();
        assert_eq!(t.end(7, i16::MAX - 1, true, 5, no_fresh), Ok(Action::Nothing));
        t.add_partition(8, 0, tp(0), 6).unwrap();
        assert!(matches!(
            t.end(8, 0, true, 7, no_fresh),
            Ok(Action::WriteMarkers { producer_id: 8, epoch: 1, .. })
        ));
        assert_eq!(t.previous_producer_id, -1);
    }

    #[test]
    fn a_hanging_transaction_is_aborted_at_its_timeout() {
        let mut t = Txn::new(7, 1_000, 0).unwrap();
        t.add_partition(7, 0, tp(0), 100).unwrap();
        assert_eq!(t.expire(1_100, no_fresh), None);
        let Some(Action::WriteMarkers { commit: false, epoch: 1, partitions, .. }) =
            t.expire(1_101, no_fresh)
        else {
            panic!("aborted at the timeout")
        };
        assert_eq!(partitions, [tp(0)].into());
        assert_eq!(t.state, TxnState::PrepareAbort);
        assert!(matches!(t.end(7, 0, true, 1_200, no_fresh), Err(TxnError::ProducerFenced { .. })));
    }

    #[test]
    fn the_epoch_wraps_to_a_fresh_producer_id_and_bad_timeouts_are_refused() {
        let mut t = Txn::new(7, 60_000, 0).unwrap();
        t.epoch = i16::MAX - 1;
        assert_eq!(t.init(60_000, 0, || 8), Ok(Init::Ready { producer_id: 8, epoch: 0 }));
        assert_eq!(Txn::new(1, 0, 0), Err(TxnError::InvalidTransactionTimeout(0)));
        assert_eq!(
            t.init(MAX_TIMEOUT_MS + 1, 0, no_fresh),
            Err(TxnError::InvalidTransactionTimeout(MAX_TIMEOUT_MS + 1))
        );
        assert!(matches!(t.add_partition(9, 0, tp(0), 0), Err(TxnError::ProducerFenced { .. })));
        assert!(matches!(t.markers_written(0), Err(TxnError::InvalidTxnState(TxnState::Empty, _))));
    }
}
