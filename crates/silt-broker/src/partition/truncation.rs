//! The follower's truncation decision for one `OffsetForLeaderEpoch` answer (Kafka KIP-101 and
//! KIP-279): where its log stops agreeing with the leader's as far as that answer tells, and
//! whether it must ask again. Pure: the worker applies the cut to the log.
//!
//! The leader answers with its largest epoch E' at or below the follower's latest epoch, and
//! where E' ended in its log. If the follower has E' too, one leader wrote both copies of E', so
//! the logs agree up to the smaller of the two ends: that is the divergence point. If the follower
//! never had E', its records past the end of its own largest epoch below E' diverge, but so may
//! some below it (the leader's copy of that epoch may be shorter): the follower cuts there and
//! asks again with its new latest epoch. Each such round strictly lowers the follower's latest
//! epoch, so the loop ends.

use silt_core::{LeaderEpoch, Offset};
use silt_storage::EpochEntry;

use super::EpochEnd;

/// What to do with the log after one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cut {
    /// The new log end; nothing is cut when it is at or past the current end.
    pub to: Offset,
    /// The logs agree up to `to`: fetching may start there. False: ask again with the latest
    /// epoch left after the cut.
    pub converged: bool,
}

/// The largest epoch at or below `epoch` in `epochs` (oldest first), and where it ends: the
/// next epoch's start, or `log_end` for the latest. The follower's half of the lookup the leader
/// answers with `Log::end_offset_for_epoch`.
fn end_of(
    epochs: &[EpochEntry],
    epoch: LeaderEpoch,
    log_end: Offset,
) -> Option<(LeaderEpoch, Offset)> {
    let i = epochs.partition_point(|e| e.epoch <= epoch);
    let found = epochs.get(i.checked_sub(1)?)?;
    Some((found.epoch, epochs.get(i).map_or(log_end, |next| next.start_offset)))
}

/// The latest epoch that still has records below `to`.
fn latest_below(epochs: &[EpochEntry], to: Offset) -> Option<LeaderEpoch> {
    epochs.iter().take_while(|e| e.start_offset < to).last().map(|e| e.epoch)
}

/// The cut for the leader's answer, given this replica's epochs (oldest first), log start and
/// log end. A log without epochs has nothing to diverge; a leader without any epoch at or below
/// ours shares nothing with us (cut to its log start).
pub(super) fn cut(
    epochs: &[EpochEntry],
    log_start: Offset,
    log_end: Offset,
    leader: &EpochEnd,
) -> Cut {
    let Some(mine) = epochs.last().map(|e| e.epoch) else {
        return Cut { to: log_end, converged: true };
    };
    let Some((answered, leader_end)) = leader.found else {
        return Cut { to: leader.log_start, converged: true };
    };
    let to = if answered == mine {
        leader_end.min(log_end)
    } else {
        let my_end = end_of(epochs, answered, log_end).map_or(log_start, |(_, end)| end);
        leader_end.min(my_end)
    };
    if to < log_start {
        // The worker restarts the log empty there: nothing is left to compare.
        return Cut { to, converged: true };
    }
    let left = latest_below(epochs, to.min(log_end));
    Cut { to, converged: left.is_none_or(|e| e == answered) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(pairs: &[(u32, u64)]) -> Vec<EpochEntry> {
        pairs
            .iter()
            .map(|&(e, s)| EpochEntry { epoch: LeaderEpoch(e), start_offset: Offset(s) })
            .collect()
    }

    fn answer(epoch: u32, end: u64) -> EpochEnd {
        EpochEnd { found: Some((LeaderEpoch(epoch), Offset(end))), log_start: Offset(0) }
    }

    #[test]
    fn sharing_the_answered_epoch_converges_at_the_smaller_end() {
        let mine = epochs(&[(0, 0), (1, 10)]);
        let c = cut(&mine, Offset(0), Offset(15), &answer(1, 12));
        assert_eq!(c, Cut { to: Offset(12), converged: true });
        let c = cut(&mine, Offset(0), Offset(15), &answer(1, 30));
        assert_eq!(
            c,
            Cut { to: Offset(15), converged: true },
            "the leader is ahead: nothing to cut"
        );
    }

    #[test]
    fn lacking_the_answered_epoch_cuts_and_asks_again() {
        // Here: epoch 0 at 0..10, epoch 2 at 10..15. The leader's answer for 2 is its epoch 1.
        let mine = epochs(&[(0, 0), (2, 10)]);
        let c = cut(&mine, Offset(0), Offset(15), &answer(1, 20));
        assert_eq!(c, Cut { to: Offset(10), converged: false });
        // The second round, asking 0, agrees.
        let mine = epochs(&[(0, 0)]);
        let c = cut(&mine, Offset(0), Offset(10), &answer(0, 8));
        assert_eq!(c, Cut { to: Offset(8), converged: true });
    }

    #[test]
    fn nothing_shared_restarts_at_the_leaders_start_and_converges() {
        let mine = epochs(&[(3, 5)]);
        let none = EpochEnd { found: None, log_start: Offset(40) };
        assert_eq!(
            cut(&mine, Offset(5), Offset(9), &none),
            Cut { to: Offset(40), converged: true }
        );
        // The leader's answered epoch is older than all of ours: no epoch is left to compare.
        let c = cut(&mine, Offset(5), Offset(9), &answer(1, 7));
        assert_eq!(c, Cut { to: Offset(5), converged: true });
    }
}
