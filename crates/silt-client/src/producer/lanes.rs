//! Per-partition order for the batches in flight. Each partition is a lane with a bounded
//! number of batches in flight (5 with idempotence, as Kafka's
//! `max.in.flight.requests.per.connection`; 1 without it, since only sequence numbers let a
//! broker put pipelined retries back in order). A batch holds a ticket, numbered in sealing
//! order, until it is acknowledged or has failed for good; a retry waits until its ticket is the
//! lane's oldest (the head), so retries go out in the partition's order and never overtake.
//! The bound counts from the oldest open ticket, not the number open: a batch whose answer was
//! lost must stay among the last five its leader remembers however many later ones succeed.
//!
//! Each ticket also carries the generation of the producer identity its batch is stamped with;
//! a new batch is stamped only once no older batch of its lane holds an older generation, so a
//! batch restamped after an identity reset keeps its place ahead of later ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

/// Not stamped yet: blocks nothing.
const UNSTAMPED: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Order {
    next: u64,
    /// Open tickets and the generation each one's batch is stamped with.
    open: BTreeMap<u64, u64>,
}

/// One partition's lane.
#[derive(Debug)]
pub(crate) struct Lane {
    capacity: u64,
    order: watch::Sender<Order>,
}

/// A batch's place in its lane; dropping it (acknowledged or failed) lets the next one go.
#[derive(Debug)]
pub(crate) struct Ticket {
    lane: Arc<Lane>,
    n: u64,
}

impl Lane {
    pub(crate) fn new(in_flight: usize) -> Arc<Lane> {
        Arc::new(Lane {
            capacity: in_flight.max(1) as u64,
            order: watch::Sender::new(Order::default()),
        })
    }

    fn has_room(&self, o: &Order) -> bool {
        o.open.first_key_value().is_none_or(|(oldest, _)| o.next < oldest + self.capacity)
    }

    /// Waits for room in the lane (the next ticket within `capacity` of the oldest open one)
    /// and takes the next ticket.
    pub(crate) async fn enter(self: &Arc<Self>) -> Option<Ticket> {
        let mut rx = self.order.subscribe();
        // Every round waits for a ticket to close; bounded by the tickets ever issued.
        loop {
            rx.wait_for(|o| self.has_room(o)).await.ok()?;
            let mut taken = None;
            self.order.send_if_modified(|o| {
                if !self.has_room(o) {
                    return false;
                }
                let n = o.next;
                o.next += 1;
                o.open.insert(n, UNSTAMPED);
                taken = Some(n);
                true
            });
            if let Some(n) = taken {
                return Some(Ticket { lane: self.clone(), n });
            }
        }
    }
}

impl Ticket {
    /// Whether every older batch of the lane is resolved.
    pub(crate) fn is_head(&self) -> bool {
        self.lane.order.borrow().open.first_key_value().map(|(n, _)| *n) == Some(self.n)
    }

    /// Waits until this is the lane's oldest open batch.
    pub(crate) async fn wait_head(&self) {
        let mut rx = self.lane.order.subscribe();
        let n = self.n;
        // The ticket itself stays open, so the lane cannot close under us.
        let _ = rx.wait_for(|o| o.open.first_key_value().map(|(k, _)| *k) == Some(n)).await;
    }

    /// Waits until no older batch of the lane is stamped with a generation below `generation`.
    pub(crate) async fn wait_older_stamped_at_least(&self, generation: u64) {
        let mut rx = self.lane.order.subscribe();
        let n = self.n;
        let _ = rx.wait_for(|o| o.open.range(..n).all(|(_, g)| *g >= generation)).await;
    }

    /// Records the generation this ticket's batch is now stamped with.
    pub(crate) fn stamped(&self, generation: u64) {
        let n = self.n;
        self.lane.order.send_modify(|o| {
            if let Some(g) = o.open.get_mut(&n) {
                *g = generation;
            }
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let n = self.n;
        self.lane.order.send_modify(|o| {
            o.open.remove(&n);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_later_ticket_becomes_head_only_when_the_older_ones_resolve() {
        let lane = Lane::new(5);
        let a = lane.enter().await.unwrap();
        let b = lane.enter().await.unwrap();
        let c = lane.enter().await.unwrap();
        assert!(a.is_head() && !b.is_head() && !c.is_head());
        drop(b); // resolved out of order: c still waits for a
        assert!(!c.is_head());
        let waiting = tokio::spawn(async move {
            c.wait_head().await;
            c
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(c.is_head());
    }

    #[tokio::test]
    async fn room_counts_from_the_oldest_open_batch() {
        let lane = Lane::new(3);
        let oldest = lane.enter().await.unwrap();
        let b = lane.enter().await.unwrap();
        let c = lane.enter().await.unwrap();
        drop((b, c)); // acknowledged; the oldest's answer is still awaited
        let next = tokio::spawn({
            let lane = lane.clone();
            async move { lane.enter().await.map(|t| t.n) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "3 batches past the oldest would push it out of the window");
        drop(oldest);
        let n = tokio::time::timeout(Duration::from_secs(5), next).await.unwrap().unwrap();
        assert_eq!(n, Some(3));
    }

    #[tokio::test]
    async fn a_lane_holds_at_most_its_capacity() {
        let lane = Lane::new(2);
        let a = lane.enter().await.unwrap();
        let _b = lane.enter().await.unwrap();
        let third = tokio::spawn({
            let lane = lane.clone();
            async move { lane.enter().await.map(|t| t.n) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished(), "a third batch waits for room");
        drop(a);
        let n = tokio::time::timeout(Duration::from_secs(5), third).await.unwrap().unwrap();
        assert_eq!(n, Some(2));
    }

    #[tokio::test]
    async fn a_new_stamp_waits_for_older_batches_of_an_old_generation() {
        let lane = Lane::new(5);
        let old = lane.enter().await.unwrap();
        old.stamped(0);
        let new = lane.enter().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), new.wait_older_stamped_at_least(0))
            .await
            .expect("generation 0 is current");
        let waiting = tokio::spawn(async move {
            new.wait_older_stamped_at_least(1).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the old batch must be restamped or resolved first");
        old.stamped(1);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
