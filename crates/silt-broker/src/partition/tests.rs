//! Tests of the partition worker through its handle: follower truncation by epoch, acks=all
//! waits, producer snapshots, and produces that overtook their predecessor.

use silt_core::batch::{BatchBuilder, Record};

/// Longer than the worker's `PARK_FOR`.
const PARK_FOR_TEST: std::time::Duration = std::time::Duration::from_millis(600);

use super::*;

fn batch(v: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(&Record::value(v.to_string(), 0));
    b.build_vec().expect("one record")
}

fn leader(epoch: u32) -> RoleSpec {
    RoleSpec::Leader(LeaderView {
        me: 1,
        leader_epoch: LeaderEpoch(epoch),
        partition_epoch: 0,
        replicas: vec![1],
        isr: vec![1],
        lag_max: std::time::Duration::from_secs(10),
    })
}

/// A log with epoch 0 at offsets 0..10 and epoch 1 at 10..15, now following epoch 2.
async fn follower_with_two_epochs(dir: &std::path::Path) -> PartitionHandle {
    let (h, _) =
        PartitionHandle::open("t-0".into(), dir.to_owned(), TopicConfig::default(), leader(0))
            .await
            .expect("opens");
    for i in 0..10 {
        h.append(vec![batch(&format!("a{i}"))], WaitFor::Append).await.expect("appends");
    }
    h.set_role(leader(1)).await.expect("role");
    for i in 0..5 {
        h.append(vec![batch(&format!("b{i}"))], WaitFor::Append).await.expect("appends");
    }
    h.set_role(RoleSpec::Follower { leader_epoch: LeaderEpoch(2) }).await.expect("role");
    h
}

#[tokio::test]
async fn a_follower_keeps_what_the_leader_has_of_its_latest_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let h = follower_with_two_epochs(tmp.path()).await;
    assert_eq!(h.latest_epoch().await.unwrap(), (Some(LeaderEpoch(1)), Offset(15)));
    let leader_answer =
        EpochEnd { found: Some((LeaderEpoch(1), Offset(12))), log_start: Offset(0) };
    assert_eq!(
        h.truncate_by_epoch(LeaderEpoch(2), leader_answer).await.unwrap().log_end,
        Offset(12)
    );
    // A leader epoch other than the one followed is refused, and nothing changes.
    assert!(matches!(
        h.truncate_by_epoch(LeaderEpoch(3), leader_answer).await,
        Err(PartitionError::NotFollower(3))
    ));
    assert_eq!(h.state().log_end, Offset(12), "{:?} {:?}", h.state(), h.latest_epoch().await);
}

#[tokio::test]
async fn a_follower_drops_an_epoch_the_leader_never_saw() {
    let tmp = tempfile::tempdir().unwrap();
    let h = follower_with_two_epochs(tmp.path()).await;
    // The leader's latest epoch <= 1 is 0, ending at 10: all of epoch 1 here diverges.
    let answer = EpochEnd { found: Some((LeaderEpoch(0), Offset(10))), log_start: Offset(0) };
    assert_eq!(h.truncate_by_epoch(LeaderEpoch(2), answer).await.unwrap().log_end, Offset(10));
    assert_eq!(h.latest_epoch().await.unwrap(), (Some(LeaderEpoch(0)), Offset(10)));
}

#[tokio::test]
async fn a_follower_restarts_at_the_leaders_log_start_when_nothing_is_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let h = follower_with_two_epochs(tmp.path()).await;
    let answer = EpochEnd { found: None, log_start: Offset(40) };
    assert_eq!(h.truncate_by_epoch(LeaderEpoch(2), answer).await.unwrap().log_end, Offset(40));
    assert_eq!(h.state().log_start, Offset(40));
}

/// Issue 15: the leader writes a producer snapshot at each segment roll (keeping the newest
/// few); a truncation drops those above the cut; after a reopen the state is rebuilt from
/// the snapshot and the log after it, and a retry is still recognised.
#[tokio::test]
async fn producer_snapshots_follow_rolls_and_truncations() {
    let tmp = tempfile::tempdir().unwrap();
    let config =
        TopicConfig { segment_bytes: 1024, max_message_bytes: 1024, ..TopicConfig::default() };
    let open =
        |role| PartitionHandle::open("t-0".into(), tmp.path().to_owned(), config.clone(), role);
    let (h, _) = open(leader(0)).await.expect("opens");
    let idempotent = |seq: i32| {
        let mut b = BatchBuilder::new();
        b.push(&Record::value(vec![b'x'; 300], 0));
        let mut data = b.build_vec().expect("one record");
        assert!(silt_core::batch::stamp_producer(&mut data, 42, 0, seq));
        data
    };
    for seq in 0..12 {
        h.append(vec![idempotent(seq)], WaitFor::Append).await.expect("appends");
    }
    let snapshots = producer_snapshot::list(tmp.path());
    assert!(!snapshots.is_empty() && snapshots.len() <= producer_snapshot::KEEP);
    let newest = snapshots.last().unwrap().0;
    h.set_role(RoleSpec::Follower { leader_epoch: LeaderEpoch(1) }).await.expect("role");
    let cut = Offset(newest.0 - 1);
    let answer = EpochEnd { found: Some((LeaderEpoch(0), cut)), log_start: Offset(0) };
    assert_eq!(h.truncate_by_epoch(LeaderEpoch(1), answer).await.unwrap().log_end, cut);
    assert!(producer_snapshot::list(tmp.path()).iter().all(|(o, _)| *o <= cut));
    h.close(false).await.expect("closes");
    let (h, _) = open(leader(2)).await.expect("reopens");
    let last = (cut.0 - 1) as i32;
    let retry = h.append(vec![idempotent(last)], WaitFor::Append).await.expect("answered");
    assert_eq!(retry.base_offset, Offset(cut.0 - 1), "the retry is answered from the log");
    assert_eq!(h.state().log_end, cut, "nothing appended");
}

/// gRPC handles pipelined produce requests concurrently, so a producer's batch can reach
/// the partition before its predecessor: it waits for it (and is appended after it, in
/// sequence order) instead of being refused; one whose predecessor never comes is refused
/// with `OUT_OF_ORDER_SEQUENCE_NUMBER` after a while, nothing appended.
#[tokio::test]
async fn a_batch_that_overtook_its_predecessor_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, _) = PartitionHandle::open(
        "t-0".into(),
        tmp.path().to_owned(),
        TopicConfig::default(),
        leader(0),
    )
    .await
    .expect("opens");
    let idempotent = |seq: i32| {
        let mut data = batch(&format!("s{seq}"));
        assert!(silt_core::batch::stamp_producer(&mut data, 9, 0, seq));
        data
    };
    let second = tokio::spawn({
        let h = h.clone();
        async move { h.append(vec![idempotent(1)], WaitFor::Append).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!second.is_finished(), "the overtaking batch waits");
    let first = h.append(vec![idempotent(0)], WaitFor::Append).await.expect("appended");
    let second = second.await.unwrap().expect("appended after its predecessor");
    assert_eq!((first.base_offset, second.base_offset), (Offset(0), Offset(1)));

    let gap = tokio::spawn({
        let h = h.clone();
        async move { h.append(vec![idempotent(5)], WaitFor::Append).await }
    });
    tokio::time::sleep(PARK_FOR_TEST).await;
    h.tick(false, i64::MAX);
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), gap).await;
    assert!(matches!(
        refused.expect("answered").unwrap(),
        Err(PartitionError::Sequence(producers::SequenceError::OutOfOrder { .. }))
    ));
    assert_eq!(h.state().log_end, Offset(2), "nothing appended");
}

/// A replica whose log holds `runs`: each `(epoch, end)` writes records as leader of
/// `epoch` up to offset `end`. It is left leading `now`.
async fn log_with_epochs(dir: &std::path::Path, runs: &[(u32, u64)], now: u32) -> PartitionHandle {
    let (h, _) =
        PartitionHandle::open("t-0".into(), dir.to_owned(), TopicConfig::default(), leader(0))
            .await
            .expect("opens");
    let mut at = 0;
    for &(epoch, end) in runs {
        h.set_role(leader(epoch)).await.expect("role");
        for i in at..end {
            h.append(vec![batch(&format!("e{epoch}-{i}"))], WaitFor::Append)
                .await
                .expect("appends");
        }
        at = end;
    }
    h.set_role(leader(now)).await.expect("role");
    h
}

/// The follower's side of KIP-279 as its fetcher runs it: ask the leader where the latest
/// epoch here ended, truncate, and ask again until the epochs agree (at most 10 rounds).
/// Answers the log end after each round.
async fn converge(follower: &PartitionHandle, leader: &PartitionHandle, epoch: u32) -> Vec<u64> {
    let epoch = LeaderEpoch(epoch);
    let mut ends = Vec::new();
    for _ in 0..10 {
        let (Some(latest), _) = follower.latest_epoch().await.expect("latest epoch") else {
            break;
        };
        let answer = leader.epoch_end(epoch, latest).await.expect("leader answers");
        let t = follower.truncate_by_epoch(epoch, answer).await.expect("truncates");
        ends.push(t.log_end.0);
        if t.converged {
            break;
        }
    }
    ends
}

/// Opens a follower and a leader of epoch 5 from their epoch histories, runs the KIP-279
/// loop, and answers the log end after each round and the follower's final latest epoch.
async fn diverged(
    follower: &[(u32, u64)],
    leader: &[(u32, u64)],
) -> (Vec<u64>, (Option<u32>, u64)) {
    let (fd, ld) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let f = log_with_epochs(fd.path(), follower, follower.last().unwrap().0).await;
    f.set_role(RoleSpec::Follower { leader_epoch: LeaderEpoch(5) }).await.unwrap();
    let l = log_with_epochs(ld.path(), leader, 5).await;
    let ends = converge(&f, &l, 5).await;
    let (latest, end) = f.latest_epoch().await.unwrap();
    assert_eq!(f.state().log_end, end);
    (ends, (latest.map(|e| e.0), end.0))
}

#[tokio::test]
async fn a_follower_lacking_the_leaders_epoch_asks_again_until_the_epochs_agree() {
    // KIP-279's case: the leader has epoch 1, which the follower never had. Asked for 2, the
    // leader answers (1, 20); the follower's epoch 0 runs to 10, but the leader's epoch 0
    // ended at 8, so offsets 8..10 diverge too and only a second round (asking 0) finds it.
    let (ends, last) = diverged(&[(0, 10), (2, 15)], &[(0, 8), (1, 20)]).await;
    assert_eq!(ends, [10, 8], "log end after each round");
    assert_eq!(last, (Some(0), 8));
}

#[tokio::test]
async fn a_follower_ahead_of_the_leader_in_the_same_epoch_cuts_to_the_leaders_end() {
    let (ends, last) = diverged(&[(0, 10), (1, 15)], &[(0, 10), (1, 12), (2, 18)]).await;
    assert_eq!(ends, [12], "one round: the follower has the epoch the leader answered");
    assert_eq!(last, (Some(1), 12));
}

#[tokio::test]
async fn twice_diverged_logs_converge_to_their_last_common_offset() {
    // Only epoch 0 is shared, and the leader's ends at 4: every later epoch differs.
    let (ends, last) = diverged(&[(0, 6), (2, 10), (4, 14)], &[(0, 4), (1, 8), (3, 20)]).await;
    assert_eq!(ends, [10, 6, 4], "log end after each round");
    assert_eq!(last, (Some(0), 4));
}

#[tokio::test]
async fn acks_all_waits_for_the_followers_position() {
    let tmp = tempfile::tempdir().unwrap();
    let view = LeaderView {
        me: 1,
        leader_epoch: LeaderEpoch(4),
        partition_epoch: 0,
        replicas: vec![1, 2],
        isr: vec![1, 2],
        lag_max: std::time::Duration::from_secs(10),
    };
    let (h, _) = PartitionHandle::open(
        "t-0".into(),
        tmp.path().to_owned(),
        TopicConfig::default(),
        RoleSpec::Leader(view),
    )
    .await
    .unwrap();
    let waiting = {
        let h = h.clone();
        tokio::spawn(async move { h.append(vec![batch("x")], WaitFor::Commit).await })
    };
    // The follower has not fetched: the HW cannot pass the record.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    assert_eq!(h.state().high_watermark, Offset(0));
    // A fetch at 0 reads the record; the next at 1 reports it copied.
    let r = h.replica_fetch(2, 0, LeaderEpoch(4), Offset(0), 1 << 20).await.unwrap();
    assert!(!r.data.is_empty());
    assert!(matches!(
        h.replica_fetch(2, 0, LeaderEpoch(3), Offset(1), 1 << 20).await,
        Err(PartitionError::FencedEpoch { asked: 3, current: 4 })
    ));
    let r = h.replica_fetch(2, 0, LeaderEpoch(4), Offset(1), 1 << 20).await.unwrap();
    assert_eq!(r.high_watermark, Offset(1));
    let appended = waiting.await.unwrap().unwrap();
    assert_eq!((appended.base_offset, appended.synced), (Offset(0), true));
}
