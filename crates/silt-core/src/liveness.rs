//! Broker liveness as the controller sees it: heartbeats in, fencing decisions out. A broker is
//! due for fencing when it has not heartbeated (with its current epoch) for the session timeout.
//! A new controller waits one session timeout (the grace period) before fencing anyone, so
//! brokers have time to find it. Pure: the caller passes the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Last heartbeats seen by this controller.
#[derive(Debug, Clone)]
pub struct Liveness {
    session_timeout: Duration,
    grace_until: Instant,
    last: HashMap<u64, (u64, Instant)>,
}

impl Liveness {
    /// A controller that took over at `now`.
    pub fn new(now: Instant, session_timeout: Duration) -> Liveness {
        Liveness { session_timeout, grace_until: now + session_timeout, last: HashMap::new() }
    }

    /// Records a heartbeat from broker `id` at broker epoch `epoch`.
    pub fn heartbeat(&mut self, id: u64, epoch: u64, now: Instant) {
        self.last.insert(id, (epoch, now));
    }

    /// Counts a (re-)registration seen in the image as a heartbeat: a broker that just
    /// registered with a new epoch gets a full session before it can be fenced.
    pub fn observe_registration(&mut self, id: u64, epoch: u64, now: Instant) {
        if self.last.get(&id).is_none_or(|(e, _)| *e != epoch) {
            self.last.insert(id, (epoch, now));
        }
    }

    /// Whether broker `id` at `epoch` heartbeated within the session timeout.
    pub fn is_alive(&self, id: u64, epoch: u64, now: Instant) -> bool {
        self.last
            .get(&id)
            .is_some_and(|(e, t)| *e == epoch && now.duration_since(*t) < self.session_timeout)
    }

    /// The unfenced brokers `(id, epoch)` to fence at `now`: silent for a session timeout (or
    /// never heard from since this controller started), once the grace period is over.
    pub fn to_fence(
        &self,
        now: Instant,
        unfenced: impl IntoIterator<Item = (u64, u64)>,
    ) -> Vec<(u64, u64)> {
        if now < self.grace_until {
            return Vec::new();
        }
        unfenced.into_iter().filter(|&(id, epoch)| !self.is_alive(id, epoch, now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_brokers_are_fenced_only_after_the_grace_period() {
        let t0 = Instant::now();
        let s = Duration::from_secs(3);
        let mut l = Liveness::new(t0, s);
        l.heartbeat(1, 7, t0);
        assert!(
            l.to_fence(t0 + Duration::from_secs(2), [(1, 7), (2, 1)]).is_empty(),
            "grace period"
        );
        l.heartbeat(1, 7, t0 + Duration::from_secs(2));
        let due = l.to_fence(t0 + Duration::from_secs(4), [(1, 7), (2, 1)]);
        assert_eq!(due, [(2, 1)], "broker 2 never heartbeated; broker 1 did 2 s ago");
        assert_eq!(
            l.to_fence(t0 + Duration::from_secs(6), [(1, 7)]),
            [(1, 7)],
            "now silent for 4 s"
        );
        // A heartbeat from an old epoch does not keep the new registration alive.
        l.heartbeat(3, 1, t0 + Duration::from_secs(6));
        assert_eq!(l.to_fence(t0 + Duration::from_secs(6), [(3, 2)]), [(3, 2)]);
    }

    #[test]
    fn a_new_registration_gets_a_full_session_before_it_can_be_fenced() {
        let t0 = Instant::now();
        let s = Duration::from_secs(3);
        let mut l = Liveness::new(t0, s);
        l.heartbeat(3, 1, t0);
        let later = t0 + Duration::from_secs(10);
        l.observe_registration(3, 2, later);
        assert!(l.to_fence(later + Duration::from_secs(1), [(3, 2)]).is_empty());
        l.observe_registration(3, 2, later + Duration::from_secs(2)); // same epoch: no refresh
        assert_eq!(l.to_fence(later + Duration::from_secs(3), [(3, 2)]), [(3, 2)]);
    }
}
