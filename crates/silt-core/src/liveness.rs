//! Broker liveness as the controller sees it: heartbeats in, fencing decisions out. A broker is
//! due for fencing when it has not heartbeated (with its current epoch) for the session timeout.
//! A new controller knows no heartbeats yet: it fences nobody during a grace period, and a broker
//! it already knows must check in within that grace period. Pure: the caller passes the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Last heartbeats seen by this controller.
#[derive(Debug, Clone)]
pub struct Liveness {
    session_timeout: Duration,
    took_over: Instant,
    grace: Duration,
    last: HashMap<u64, (u64, Instant)>,
}

impl Liveness {
    /// A controller that took over at `now`; brokers get `grace` to check in with it.
    pub fn new(now: Instant, session_timeout: Duration, grace: Duration) -> Liveness {
        Liveness {
            session_timeout,
            took_over: now,
            grace: grace.min(session_timeout),
            last: HashMap::new(),
        }
    }

    /// Records a heartbeat from broker `id` at broker epoch `epoch`.
    pub fn heartbeat(&mut self, id: u64, epoch: u64, now: Instant) {
        self.last.insert(id, (epoch, now));
    }

    /// Notes a registered broker (from the image). One first seen within the grace period must
    /// heartbeat before it ends; one that registers later gets a full session.
    pub fn observe_registration(&mut self, id: u64, epoch: u64, now: Instant) {
        if self.last.get(&id).is_some_and(|(e, _)| *e == epoch) {
            return;
        }
        let grace_end = self.took_over + self.grace;
        let heard = if now < grace_end {
            // Alive until the grace period ends, as if last heard `session - grace` before it.
            grace_end.checked_sub(self.session_timeout).unwrap_or(self.took_over)
        } else {
            now
        };
        self.last.insert(id, (epoch, heard));
    }

    /// Whether broker `id` at `epoch` heartbeated within the session timeout.
    pub fn is_alive(&self, id: u64, epoch: u64, now: Instant) -> bool {
        self.last.get(&id).is_some_and(|(e, t)| {
            *e == epoch && now.saturating_duration_since(*t) < self.session_timeout
        })
    }

    /// The unfenced brokers `(id, epoch)` to fence at `now`: silent for a session timeout (or
    /// not checked in by the end of the grace period), never during the grace period.
    pub fn to_fence(
        &self,
        now: Instant,
        unfenced: impl IntoIterator<Item = (u64, u64)>,
    ) -> Vec<(u64, u64)> {
        if now < self.took_over + self.grace {
            return Vec::new();
        }
        unfenced.into_iter().filter(|&(id, epoch)| !self.is_alive(id, epoch, now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(3);
    const G: Duration = Duration::from_millis(1500);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn silent_brokers_are_fenced_after_the_session_timeout_and_never_in_the_grace_period() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S, G);
        l.heartbeat(1, 7, t0);
        assert!(l.to_fence(at(t0, 1000), [(1, 7), (2, 1)]).is_empty(), "grace period");
        l.heartbeat(1, 7, at(t0, 2000));
        assert_eq!(l.to_fence(at(t0, 4000), [(1, 7), (2, 1)]), [(2, 1)], "2 never heartbeated");
        assert_eq!(l.to_fence(at(t0, 5500), [(1, 7)]), [(1, 7)], "now silent for 3.5 s");
        // A heartbeat from an old epoch does not keep a new registration alive.
        l.heartbeat(3, 1, at(t0, 6000));
        assert_eq!(l.to_fence(at(t0, 6000), [(3, 2)]), [(3, 2)]);
    }

    #[test]
    fn known_brokers_must_check_in_within_the_grace_period() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S, G);
        // Both registered before this controller took over; only 1 checks in.
        l.observe_registration(1, 1, t0);
        l.observe_registration(2, 1, t0);
        l.heartbeat(1, 1, at(t0, 500));
        assert!(l.to_fence(at(t0, 1400), [(1, 1), (2, 1)]).is_empty());
        assert_eq!(
            l.to_fence(at(t0, 1600), [(1, 1), (2, 1)]),
            [(2, 1)],
            "2 missed the grace period"
        );
    }

    #[test]
    fn a_registration_after_the_grace_period_gets_a_full_session() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S, G);
        l.heartbeat(3, 1, t0);
        l.observe_registration(3, 2, at(t0, 10_000));
        assert!(l.to_fence(at(t0, 12_000), [(3, 2)]).is_empty());
        l.observe_registration(3, 2, at(t0, 12_000)); // same epoch: no refresh
        assert_eq!(l.to_fence(at(t0, 13_000), [(3, 2)]), [(3, 2)]);
    }
}
