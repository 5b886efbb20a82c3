//! The long poll shared by consumer fetches and replica fetches: read, and if the answer is not
//! ready, wait until a watched partition changes (its HW, log end or state), the deadline
//! passes, or the broker starts stopping; then read again.

use std::future::Future;
use std::time::Instant;

use futures_util::future::select_all;
use tokio::sync::watch;

use super::PartitionHandle;

/// Runs `read` (which answers `(answer, ready)`) until the answer is ready, `deadline` passes,
/// the broker stops (`stopping`), or there is no partition to watch; returns the last answer.
/// The watches are taken before each read, so a change between the read and the wait still
/// wakes the poll.
pub(crate) async fn long_poll<'h, T, Fut>(
    handles: impl Iterator<Item = &'h PartitionHandle> + Clone,
    deadline: Instant,
    stopping: &watch::Sender<bool>,
    mut read: impl FnMut() -> Fut,
) -> T
where
    Fut: Future<Output = (T, bool)>,
{
    let mut stop = stopping.subscribe();
    loop {
        let mut watches: Vec<_> = handles.clone().map(PartitionHandle::watch).collect();
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (answer, ready) = read().await;
        let now = Instant::now();
        if ready || now >= deadline || watches.is_empty() || *stop.borrow_and_update() {
            return answer;
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = tokio::time::timeout(deadline - now, changed) => {}
            // Stopping: read once more and answer with what there is.
            _ = stop.changed() => {}
        }
    }
}
