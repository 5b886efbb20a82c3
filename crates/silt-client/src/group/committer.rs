//! `Committer`: a group member's commits, from any task. Committed offsets never regress
//! because of this member: its commits are sent one at a time (each answered before the next),
//! a commit never overwrites a later one of the same partition (commits are numbered when made),
//! and an async commit of a partition revoked since it was made is dropped — the consumer
//! commits revoked partitions synchronously before confirming their release. The coordinator
//! refuses commits of partitions the member no longer holds (`STALE_MEMBER_EPOCH`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silt_proto::v1::{self, ErrorCode};
use tokio::task::JoinHandle;

use super::consumer::Membership;
use super::link::GroupLink;
use crate::{ClientError, TopicPartition};

/// How long a commit keeps retrying (coordinator moves, leader elections).
pub(super) const COMMIT_DEADLINE: Duration = Duration::from_secs(30);

/// Commits offsets for the group's member from any task (cheap to clone).
#[derive(Debug, Clone)]
pub struct Committer {
    pub(super) link: GroupLink,
    pub(super) membership: Arc<Mutex<Membership>>,
    /// Held while a commit is sent: one at a time, each answered before the next is sent.
    pub(super) turn: Arc<tokio::sync::Mutex<()>>,
}

/// A commit made and not yet sent.
#[derive(Debug)]
struct Made {
    /// Its number (the order commits were made in).
    seq: u64,
    offsets: Vec<v1::OffsetCommit>,
    /// For an async commit: each partition's grant when it was made (absent: not owned then).
    grants: Option<BTreeMap<TopicPartition, u64>>,
}

/// The offsets of `made` still to be sent now: not a partition a later commit has already been
/// sent for (`sent`), and for an async commit not a partition revoked (or never owned) since it
/// was made (its grant then against `grants` now). Returns (to send, dropped).
fn still_to_send(
    made: Made,
    sent: &BTreeMap<TopicPartition, u64>,
    grants: &BTreeMap<TopicPartition, u64>,
) -> (Vec<v1::OffsetCommit>, Vec<v1::OffsetCommit>) {
    made.offsets.into_iter().partition(|o| {
        let tp = TopicPartition { topic: o.topic.clone(), partition: o.partition };
        let newest = sent.get(&tp).is_none_or(|&s| s < made.seq);
        let granted = made
            .grants
            .as_ref()
            .is_none_or(|then| then.get(&tp).is_some_and(|g| grants.get(&tp) == Some(g)));
        newest && granted
    })
}

impl Committer {
    /// Commits, for each partition, the next offset to consume; returns when committed (a
    /// partition a later commit of this member was already sent for is left out). Refused with
    /// `STALE_MEMBER_EPOCH` when the member no longer owns one of the partitions.
    pub async fn commit(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<(), ClientError> {
        self.commit_with_metadata(offsets.into_iter().map(|(tp, o)| (tp, o, String::new()))).await
    }

    /// Like [`commit`](Self::commit), with a metadata string per offset.
    pub async fn commit_with_metadata(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64, String)>,
    ) -> Result<(), ClientError> {
        let made = self.make(offsets, false);
        self.send(made).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers a commit now (and for an async one notes the partitions' grants).
    fn make(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64, String)>,
        is_async: bool,
    ) -> Made {
        let offsets: Vec<v1::OffsetCommit> = offsets
            .into_iter()
            .map(|(tp, offset, metadata)| v1::OffsetCommit {
                topic: tp.topic,
                partition: tp.partition,
                offset,
                metadata,
            })
            .collect();
        let mut m = self.lock();
        let seq = m.next_commit;
        m.next_commit += 1;
        let grants = is_async.then(|| {
            offsets
                .iter()
                .map(|o| TopicPartition { topic: o.topic.clone(), partition: o.partition })
                .filter_map(|tp| Some((tp.clone(), *m.grants.get(&tp)?)))
                .collect()
        });
        Made { seq, offsets, grants }
    }

    /// Sends a commit in its turn, without what a later commit or a revocation superseded.
    async fn send(&self, made: Made) -> Result<(), ClientError> {
        if made.offsets.is_empty() {
            return Ok(());
        }
        let _turn = self.turn.lock().await;
        let (member_id, member_epoch, offsets) = {
            let mut m = self.lock();
            if m.member_id.is_empty() {
                return Err(ClientError::server(
                    ErrorCode::UnknownMemberId as i32,
                    "not a member of the group (yet)",
                ));
            }
            let seq = made.seq;
            let (offsets, dropped) = still_to_send(made, &m.sent, &m.grants);
            if !dropped.is_empty() {
                tracing::debug!(
                    group = %self.link.group,
                    dropped = dropped.len(),
                    "commit of partitions revoked or committed since dropped"
                );
            }
            for o in &offsets {
                let tp = TopicPartition { topic: o.topic.clone(), partition: o.partition };
                m.sent.insert(tp, seq);
            }
            (m.member_id.clone(), m.epoch, offsets)
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let req = v1::CommitOffsetsRequest {
            group: self.link.group.clone(),
            member_id,
            member_epoch,
            offsets,
        };
        self.link
            .call(COMMIT_DEADLINE, |mut c| {
                let req = req.clone();
                async move { c.commit_offsets(req).await }
            })
            .await?;
        Ok(())
    }

    /// Starts a commit and returns at once; the handle yields its outcome. Commits are sent in
    /// the order they were made; a partition revoked before this one is sent (or not owned when
    /// it was made) is dropped from it: commit synchronously in `on_revoked` instead.
    pub fn commit_async(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> JoinHandle<Result<(), ClientError>> {
        let this = self.clone();
        let made = self.make(offsets.into_iter().map(|(tp, o)| (tp, o, String::new())), true);
        tokio::spawn(async move { this.send(made).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> TopicPartition {
        TopicPartition { topic: "t".into(), partition: p }
    }

    fn made(seq: u64, parts: &[u32], grants: Option<&[(u32, u64)]>) -> Made {
        Made {
            seq,
            offsets: parts
                .iter()
                .map(|&p| v1::OffsetCommit {
                    topic: "t".into(),
                    partition: p,
                    offset: 10,
                    metadata: String::new(),
                })
                .collect(),
            grants: grants.map(|g| g.iter().map(|&(p, n)| (tp(p), n)).collect()),
        }
    }

    fn parts(offsets: &[v1::OffsetCommit]) -> Vec<u32> {
        offsets.iter().map(|o| o.partition).collect()
    }

    #[test]
    fn an_async_commit_drops_partitions_revoked_since_it_was_made() {
        let grants: BTreeMap<_, _> = [(tp(0), 1), (tp(2), 7)].into();
        let sent = BTreeMap::new();
        // p1 was revoked (no grant now); p2 was revoked and taken again (a new grant).
        let (send, dropped) =
            still_to_send(made(5, &[0, 1, 2], Some(&[(0, 1), (1, 2), (2, 3)])), &sent, &grants);
        assert_eq!((parts(&send), parts(&dropped)), (vec![0], vec![1, 2]));
        // Not owned when it was made: dropped too.
        let (send, _) = still_to_send(made(6, &[0, 3], Some(&[(0, 1)])), &sent, &grants);
        assert_eq!(parts(&send), vec![0]);
        // A synchronous commit is sent whatever the grants (the coordinator decides).
        let (send, _) = still_to_send(made(7, &[1, 3], None), &sent, &grants);
        assert_eq!(parts(&send), vec![1, 3]);
    }

    #[test]
    fn a_commit_never_overwrites_a_later_one_already_sent() {
        let grants: BTreeMap<_, _> = [(tp(0), 1), (tp(1), 1)].into();
        let sent: BTreeMap<_, _> = [(tp(0), 9)].into();
        let (send, dropped) = still_to_send(made(8, &[0, 1], None), &sent, &grants);
        assert_eq!((parts(&send), parts(&dropped)), (vec![1], vec![0]));
        let (send, _) = still_to_send(made(10, &[0, 1], None), &sent, &grants);
        assert_eq!(parts(&send), vec![0, 1]);
    }
}
