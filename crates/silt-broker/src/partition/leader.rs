//! What a partition leader knows of its followers: each one's log end offset (LEO) as its last
//! fetch reported it and when it was last caught up. From that come the high watermark (the
//! smallest position over the maximal ISR) and the ISR changes to propose (shrink a follower that
//! has not caught up within `replica.lag.time.max.ms`, expand one that reached the HW). Pure
//! logic: the worker feeds it fetches, the controller's answers and the clock.
//!
//! One change is in flight at a time. Until the image shows its outcome (a new partition epoch),
//! the HW counts the *maximal* ISR, the committed ISR plus the members the change adds (Kafka's
//! rule): a replica about to become an electable ISR member must hold everything committed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silt_core::{LeaderEpoch, Offset};

/// The cluster image's view of a partition this broker leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    pub me: u64,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: u32,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    /// `replica_lag_time_max_ms`: a member not caught up for this long does not count for new
    /// `acks=all` writes (and is proposed for removal from the ISR).
    pub lag_max: Duration,
}

#[derive(Debug, Clone)]
struct Follower {
    /// The position the follower last reported (None: not since this broker became leader).
    leo: Option<Offset>,
    last_caught_up: Instant,
    /// The leader's LEO and the time of the follower's previous fetch (Kafka's rule: a follower
    /// that fetches at or past the leader's LEO of its previous fetch was caught up back then).
    prev_fetch_leader_leo: Offset,
    prev_fetch_time: Instant,
    /// The registration (broker epoch) its fetches came from; 0 until one said.
    broker_epoch: u64,
}

/// A follower not seen fetching yet; its lag clock starts `now`.
fn unseen(now: Instant) -> Follower {
    Follower {
        leo: None,
        last_caught_up: now,
        prev_fetch_leader_leo: Offset::ZERO,
        prev_fetch_time: now,
        broker_epoch: 0,
    }
}

/// A proposed ISR, with the epochs the controller checks against the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: u32,
    pub isr: Vec<u64>,
    /// For each member this change adds, the broker epoch its qualifying fetches came from: the
    /// controller refuses the change if that is not the broker's current registration (KIP-903).
    pub member_epochs: std::collections::BTreeMap<u64, u64>,
}

/// How the controller answered a proposed [`IsrChange`] that it did not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrAnswer {
    /// It was refused; the image is unchanged by it.
    Refused,
    /// No answer (no quorum, timeout): it may or may not have been applied.
    Unknown,
}

/// The ISR change in flight: proposed, and not yet seen in the view.
#[derive(Debug, Clone)]
struct Pending {
    change: IsrChange,
    /// Its last attempt went unanswered: propose the same change again.
    retry: bool,
    /// Some attempt went unanswered, so it may have been applied: a later refusal may be the
    /// refusal of a repeat (stale partition epoch) and proves nothing. Only the view clears it.
    maybe_applied: bool,
}

/// The leader's replication state for one partition.
#[derive(Debug, Clone)]
pub struct LeaderState {
    pub view: LeaderView,
    followers: BTreeMap<u64, Follower>,
    /// The log end when this broker became leader in `view.leader_epoch`: a follower joins the
    /// ISR only once it holds everything up to here (it has truncated to this epoch).
    epoch_start: Offset,
    /// The proposed ISR change whose outcome the view does not show yet.
    pending: Option<Pending>,
}

impl LeaderState {
    /// Becoming leader: followers' positions are unknown until they fetch; the lag clock starts
    /// now, so nobody is shrunk for time spent before this broker led.
    pub fn new(view: LeaderView, log_end: Offset, now: Instant) -> LeaderState {
        let followers =
            view.replicas.iter().filter(|r| **r != view.me).map(|r| (*r, unseen(now))).collect();
        LeaderState { view, followers, epoch_start: log_end, pending: None }
    }

    /// Each follower's position as last seen (None: not seen fetching since this broker led).
    pub fn follower_positions(&self) -> Vec<(u64, Option<Offset>)> {
        self.followers.iter().map(|(r, f)| (*r, f.leo)).collect()
    }

    /// A newer image for the same leadership (ISR or partition epoch changed). A replica that
    /// just entered the ISR counts as caught up now. A new partition epoch is the outcome of the
    /// change in flight (applied, or overtaken by another change): it is no longer pending.
    pub fn update_view(&mut self, view: LeaderView, now: Instant) {
        if self.pending.as_ref().is_some_and(|p| p.change.partition_epoch != view.partition_epoch) {
            self.pending = None;
        }
        for r in &view.isr {
            if !self.view.isr.contains(r)
                && let Some(f) = self.followers.get_mut(r)
            {
                f.last_caught_up = now;
            }
        }
        // A reassignment adds followers (unseen until they fetch) and removes others.
        self.followers.retain(|r, _| view.replicas.contains(r));
        for r in view.replicas.iter().filter(|r| **r != view.me) {
            self.followers.entry(*r).or_insert_with(|| unseen(now));
        }
        self.view = view;
    }

    /// Whether `replica` is one of this partition's followers.
    pub fn is_follower(&self, replica: u64) -> bool {
        self.followers.contains_key(&replica)
    }

    /// A follower's fetch came from its registration `broker_epoch` (0: not said). Another
    /// registration than before is another process (KIP-903): what the previous one fetched
    /// says nothing about this one's log, so its position is forgotten until it fetches again.
    pub fn on_registration(&mut self, replica: u64, broker_epoch: u64) {
        let Some(f) = self.followers.get_mut(&replica) else { return };
        if broker_epoch == 0 || f.broker_epoch == broker_epoch {
            return;
        }
        if f.broker_epoch != 0 {
            f.leo = None;
            f.prev_fetch_leader_leo = Offset::ZERO;
        }
        f.broker_epoch = broker_epoch;
    }

    /// Records a follower's fetch at `fetch_offset` while the leader's LEO is `leader_leo`.
    pub fn on_fetch(
        &mut self,
        replica: u64,
        fetch_offset: Offset,
        leader_leo: Offset,
        now: Instant,
    ) {
        let Some(f) = self.followers.get_mut(&replica) else { return };
        if fetch_offset >= leader_leo {
            f.last_caught_up = now;
        } else if fetch_offset >= f.prev_fetch_leader_leo {
            f.last_caught_up = f.last_caught_up.max(f.prev_fetch_time);
        }
        f.prev_fetch_leader_leo = leader_leo;
        f.prev_fetch_time = now;
        f.leo = Some(fetch_offset);
    }

    /// The smallest position over the maximal ISR (the committed one and the members a pending
    /// change adds), given the leader's own countable end (its synced end for `fsync` topics, its
    /// LEO otherwise). A member that has not fetched yet holds it at 0.
    pub fn isr_min(&self, own: Offset) -> Offset {
        let pending = self.pending.iter().flat_map(|p| &p.change.isr);
        self.view
            .isr
            .iter()
            .chain(pending)
            .filter(|r| **r != self.view.me)
            .map(|r| self.followers.get(r).and_then(|f| f.leo).unwrap_or(Offset::ZERO))
            .fold(own, Offset::min)
    }

    /// ISR members (the leader included) that have caught up within `lag_max`: what a new
    /// `acks=all` write can count on now, before a shrink has gone through the controller (which
    /// may be unreachable). Counts the committed ISR only, never a pending expansion.
    pub fn live_isr(&self, now: Instant) -> usize {
        self.view
            .isr
            .iter()
            .filter(|r| {
                **r == self.view.me
                    || self
                        .followers
                        .get(r)
                        .is_some_and(|f| now.duration_since(f.last_caught_up) <= self.view.lag_max)
            })
            .count()
    }

    /// The ISR to propose, if it should change: members that have not caught up within `lag_max`
    /// leave; replicas whose position reached both `hw` and this epoch's start join. The change
    /// is pending from then on, and nothing new is proposed while it is: only the same change
    /// again after an unanswered attempt (a proposal from a view it may already have changed
    /// would be refused as stale anyway).
    pub fn isr_change(&mut self, hw: Offset, now: Instant, lag_max: Duration) -> Option<IsrChange> {
        if let Some(p) = &mut self.pending {
            return std::mem::take(&mut p.retry).then(|| p.change.clone());
        }
        let change = self.next_isr(hw, now, lag_max)?;
        self.pending = Some(Pending { change: change.clone(), retry: false, maybe_applied: false });
        Some(change)
    }

    /// The controller's answer to the pending `change`, when it did not accept it (an accepted
    /// change stays pending until the view shows its partition epoch). A refusal ends it, unless
    /// an earlier attempt may have been applied; an unknown outcome keeps it counted in the HW
    /// and has it proposed again.
    pub fn isr_answered(&mut self, change: &IsrChange, answer: IsrAnswer) {
        let Some(p) = self.pending.as_mut().filter(|p| p.change == *change) else { return };
        match answer {
            IsrAnswer::Refused if !p.maybe_applied => self.pending = None,
            IsrAnswer::Refused => p.retry = false,
            IsrAnswer::Unknown => {
                p.retry = true;
                p.maybe_applied = true;
            }
        }
    }

    /// The ISR change due from the view and the followers' positions, if any.
    fn next_isr(&self, hw: Offset, now: Instant, lag_max: Duration) -> Option<IsrChange> {
        let mut isr: Vec<u64> = self
            .view
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r == self.view.me
                    || self
                        .followers
                        .get(r)
                        .is_none_or(|f| now.duration_since(f.last_caught_up) <= lag_max)
            })
            .collect();
        for (r, f) in &self.followers {
            if !isr.contains(r)
                && self.view.replicas.contains(r)
                && f.leo.is_some_and(|leo| leo >= hw && leo >= self.epoch_start)
                && now.duration_since(f.last_caught_up) <= lag_max
            {
                isr.push(*r);
            }
        }
        if !isr.contains(&self.view.me) {
            isr.push(self.view.me);
        }
        isr.sort_by_key(|r| self.view.replicas.iter().position(|x| x == r));
        let mut current = self.view.isr.clone();
        current.sort_by_key(|r| self.view.replicas.iter().position(|x| x == r));
        let member_epochs = isr
            .iter()
            .filter(|r| !self.view.isr.contains(r))
            .filter_map(|r| Some((*r, self.followers.get(r)?.broker_epoch)))
            .filter(|(_, e)| *e != 0)
            .collect();
        (isr != current).then_some(IsrChange {
            leader_epoch: self.view.leader_epoch,
            partition_epoch: self.view.partition_epoch,
            isr,
            member_epochs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(isr: &[u64]) -> LeaderView {
        LeaderView {
            me: 1,
            leader_epoch: LeaderEpoch(3),
            partition_epoch: 7,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            lag_max: Duration::from_secs(10),
        }
    }

    #[test]
    fn hw_is_the_smallest_isr_position_and_unknown_followers_hold_it() {
        let t0 = Instant::now();
        let mut s = LeaderState::new(view(&[1, 2, 3]), Offset(10), t0);
        assert_eq!(s.isr_min(Offset(10)), Offset(0));
        s.on_fetch(2, Offset(8), Offset(10), t0);
        assert_eq!(s.isr_min(Offset(10)), Offset(0));
        s.on_fetch(3, Offset(9), Offset(10), t0);
        assert_eq!(s.isr_min(Offset(10)), Offset(8));
        // The leader's own (synced) end bounds it too.
        assert_eq!(s.isr_min(Offset(5)), Offset(5));
        // A replica outside the ISR does not count.
        s.update_view(view(&[1, 3]), t0);
        assert_eq!(s.isr_min(Offset(10)), Offset(9));
    }

    #[test]
    fn a_lagging_follower_is_shrunk_after_the_lag_time_and_rejoins_at_the_hw() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = LeaderState::new(view(&[1, 2, 3]), Offset(0), t0);
        s.on_fetch(2, Offset(0), Offset(0), t0);
        s.on_fetch(3, Offset(0), Offset(0), t0);
        // Leader moves ahead; 2 keeps up, 3 stops fetching.
        let t1 = t0 + Duration::from_secs(6);
        s.on_fetch(2, Offset(50), Offset(50), t1);
        assert_eq!(s.isr_change(Offset(0), t1, lag), None);
        let t2 = t0 + Duration::from_secs(11);
        s.on_fetch(2, Offset(90), Offset(100), t2);
        assert_eq!(s.live_isr(t2), 2, "3 no longer counts for new writes");
        let c = s.isr_change(Offset(0), t2, lag).expect("3 is shrunk");
        assert_eq!(
            c,
            IsrChange {
                leader_epoch: LeaderEpoch(3),
                partition_epoch: 7,
                isr: vec![1, 2],
                member_epochs: Default::default(),
            }
        );
        // The image applies it (a new partition epoch).
        s.update_view(LeaderView { partition_epoch: 8, ..view(&[1, 2]) }, t2);
        // 3 comes back and reaches the HW: it rejoins.
        s.on_fetch(3, Offset(60), Offset(100), t2);
        assert_eq!(s.isr_change(Offset(90), t2, lag), None, "below the HW it stays out");
        s.on_fetch(3, Offset(100), Offset(100), t2);
        assert_eq!(s.isr_change(Offset(90), t2, lag).map(|c| c.isr), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_follower_fetching_the_previous_leo_counts_as_caught_up_then() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = LeaderState::new(view(&[1, 2]), Offset(0), t0);
        // Under steady load the follower is always one fetch behind, never at the LEO.
        for i in 1..30u64 {
            let t = t0 + Duration::from_secs(i);
            s.on_fetch(2, Offset(i * 10 - 10), Offset(i * 10), t);
        }
        assert_eq!(s.isr_change(Offset(0), t0 + Duration::from_secs(30), lag), None);
    }

    #[test]
    fn the_hw_counts_a_replica_whose_isr_expansion_is_pending() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = LeaderState::new(view(&[1]), Offset(40), t0);
        s.on_fetch(2, Offset(40), Offset(40), t0);
        let c = s.isr_change(Offset(40), t0, lag).expect("2 reached the HW: it joins");
        assert_eq!(c.isr, vec![1, 2]);
        // The leader appends up to 60 before the image has the new ISR: committing 40..60 on the
        // leader alone would let 2 become an electable ISR member without those records.
        assert_eq!(s.isr_min(Offset(60)), Offset(40), "the maximal ISR holds the HW");
        assert_eq!(s.live_isr(t0), 1, "min.insync.replicas counts the committed ISR only");
        s.update_view(LeaderView { partition_epoch: 8, ..view(&[1, 2]) }, t0);
        assert_eq!(s.isr_min(Offset(60)), Offset(40), "and so does the committed one");
    }

    #[test]
    fn a_follower_that_re_registered_is_counted_from_its_new_fetches_only() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = LeaderState::new(view(&[1]), Offset(40), t0);
        s.on_registration(2, 5);
        s.on_fetch(2, Offset(40), Offset(40), t0);
        // A new process of broker 2 (registration 7) fetches: the old one's position is gone.
        s.on_registration(2, 7);
        assert!(s.isr_change(Offset(40), t0, lag).is_none(), "no expansion on the old position");
        s.on_fetch(2, Offset(40), Offset(40), t0);
        let c = s.isr_change(Offset(40), t0, lag).expect("2 caught up again: it joins");
        assert_eq!(c.isr, vec![1, 2]);
        assert_eq!(c.member_epochs, std::collections::BTreeMap::from([(2, 7)]), "KIP-903");
    }

    /// Leader of view isr [1] from offset 40, follower 2 caught up at 40: the expansion to
    /// [1, 2] is proposed.
    fn expanding(t0: Instant) -> (LeaderState, IsrChange) {
        let mut s = LeaderState::new(view(&[1]), Offset(40), t0);
        s.on_fetch(2, Offset(40), Offset(40), t0);
        let c = s.isr_change(Offset(40), t0, Duration::from_secs(10)).expect("2 joins");
        (s, c)
    }

    #[test]
    fn a_refused_expansion_stops_counting_for_the_hw() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let (mut s, c) = expanding(t0);
        assert_eq!(s.isr_change(Offset(40), t0, lag), None, "one change in flight at a time");
        // An answer about another change is not about this one.
        s.isr_answered(&IsrChange { partition_epoch: 6, ..c.clone() }, IsrAnswer::Refused);
        assert_eq!(s.isr_min(Offset(60)), Offset(40));
        s.isr_answered(&c, IsrAnswer::Refused);
        assert_eq!(s.isr_min(Offset(60)), Offset(60));
        assert_eq!(s.isr_change(Offset(40), t0, lag), Some(c), "proposed afresh");
    }

    #[test]
    fn an_unanswered_change_is_proposed_again_and_counts_until_the_image_decides() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let (mut s, c) = expanding(t0);
        s.isr_answered(&c, IsrAnswer::Unknown);
        assert_eq!(s.isr_min(Offset(60)), Offset(40), "it may have been applied");
        assert_eq!(s.isr_change(Offset(60), t0, lag), Some(c.clone()), "the same change again");
        assert_eq!(s.isr_change(Offset(60), t0, lag), None);
        // The repeat is refused, perhaps as stale because the first attempt was applied.
        s.isr_answered(&c, IsrAnswer::Refused);
        assert_eq!(s.isr_min(Offset(60)), Offset(40), "a refused repeat proves nothing");
        // The image moved on without 2: the expansion was not applied.
        s.update_view(LeaderView { partition_epoch: 8, ..view(&[1]) }, t0);
        assert_eq!(s.isr_min(Offset(60)), Offset(60));
    }

    #[test]
    fn a_follower_joins_only_past_this_epochs_start() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = LeaderState::new(view(&[1]), Offset(40), t0);
        s.on_fetch(2, Offset(30), Offset(40), t0);
        assert_eq!(s.isr_change(Offset(20), t0, lag), None);
        s.on_fetch(2, Offset(40), Offset(40), t0);
        assert_eq!(s.isr_change(Offset(20), t0, lag).map(|c| c.isr), Some(vec![1, 2]));
    }
}
