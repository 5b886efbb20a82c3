use super::*;

const LIMITS: Limits = Limits { lock_ms: 1_000, delivery_limit: 3, max_locks: 10 };

fn take_new(p: &mut SharePartition, offsets: std::ops::Range<u64>, member: &str, now: u64) {
    for o in offsets {
        p.acquire_new(o, member, now, &LIMITS).expect("new record");
    }
}

#[test]
fn accepting_in_order_moves_the_start_and_forgets_the_records() {
    let mut p = SharePartition::starting_at(10);
    take_new(&mut p, 10..15, "a", 0);
    assert_eq!((p.start, p.end, p.acquired()), (10, 15, 5));
    for o in 10..15 {
        assert_eq!(p.acknowledge(o, "a", AckType::Accept, 1, &LIMITS), Ok(None));
    }
    assert_eq!((p.start, p.end), (15, 15));
    assert!(p.records.is_empty());
}

#[test]
fn an_accepted_record_behind_an_unacked_one_keeps_the_start() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..3, "a", 0);
    p.acknowledge(1, "a", AckType::Accept, 1, &LIMITS).unwrap();
    p.acknowledge(2, "a", AckType::Accept, 1, &LIMITS).unwrap();
    assert_eq!(p.start, 0);
    p.acknowledge(0, "a", AckType::Accept, 1, &LIMITS).unwrap();
    assert_eq!(p.start, 3);
}

#[test]
fn only_the_holder_may_acknowledge() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..1, "a", 0);
    assert_eq!(p.acknowledge(0, "b", AckType::Accept, 1, &LIMITS), Err(AckError::NotAcquired(0)));
    assert_eq!(p.acknowledge(7, "a", AckType::Accept, 1, &LIMITS), Err(AckError::NotAcquired(7)));
    p.acknowledge(0, "a", AckType::Accept, 1, &LIMITS).unwrap();
    assert_eq!(p.acknowledge(0, "a", AckType::Accept, 1, &LIMITS), Err(AckError::NotAcquired(0)));
}

#[test]
fn a_released_record_is_available_at_once_with_its_count() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..2, "a", 0);
    p.acknowledge(0, "a", AckType::Release, 1, &LIMITS).unwrap();
    assert_eq!(p.redeliverable(10), vec![0]);
    let d = p.acquire_again(0, "b", 2, &LIMITS).unwrap();
    assert_eq!(d, Delivery { offset: 0, deliveries: 2 });
    assert_eq!(p.redeliverable(10), Vec::<u64>::new());
}

#[test]
fn an_expired_lock_makes_the_record_available_and_renew_extends_it() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..2, "a", 0);
    p.acknowledge(1, "a", AckType::Renew, 900, &LIMITS).unwrap();
    assert_eq!(p.release_locks(999, None, &LIMITS), (0, vec![]));
    assert_eq!(p.release_locks(1_000, None, &LIMITS), (1, vec![]));
    assert_eq!(p.redeliverable(10), vec![0], "1 was renewed until 1900");
    assert_eq!(p.release_locks(1_900, None, &LIMITS), (1, vec![]));
    assert_eq!(p.redeliverable(10), vec![0, 1]);
}

#[test]
fn the_delivery_limit_archives_on_release_and_on_expiry() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..2, "a", 0);
    for round in 1..3u64 {
        p.release_locks(round * 10_000, None, &LIMITS);
        p.acquire_again(0, "a", round * 10_000, &LIMITS).unwrap();
        p.acquire_again(1, "a", round * 10_000, &LIMITS).unwrap();
    }
    // Third delivery of both: releasing archives.
    let a = p.acknowledge(0, "a", AckType::Release, 30_000, &LIMITS).unwrap();
    assert_eq!(
        a,
        Some(Archived { offset: 0, deliveries: 3, reason: ArchiveReason::DeliveryLimit })
    );
    let (n, a) = p.release_locks(100_000, None, &LIMITS);
    assert_eq!(n, 1);
    assert_eq!(
        a,
        vec![Archived { offset: 1, deliveries: 3, reason: ArchiveReason::DeliveryLimit }]
    );
    assert_eq!((p.start, p.end), (2, 2));
    assert!(p.redeliverable(10).is_empty());
}

#[test]
fn a_rejected_record_is_archived_with_its_reason() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..1, "a", 0);
    let a = p.acknowledge(0, "a", AckType::Reject, 1, &LIMITS).unwrap();
    assert_eq!(a, Some(Archived { offset: 0, deliveries: 1, reason: ArchiveReason::Rejected }));
    assert_eq!(p.start, 1);
}

#[test]
fn a_member_leaving_releases_only_its_records() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..2, "a", 0);
    take_new(&mut p, 2..4, "b", 0);
    assert_eq!(p.release_locks(1, Some("a"), &LIMITS), (2, vec![]));
    assert_eq!(p.redeliverable(10), vec![0, 1]);
    assert_eq!(p.acquired(), 2);
}

#[test]
fn the_window_is_bounded_by_max_locks() {
    let mut p = SharePartition::starting_at(0);
    assert_eq!(p.room(&LIMITS), 10);
    take_new(&mut p, 0..10, "a", 0);
    assert_eq!(p.room(&LIMITS), 0);
    // Done records behind a held one still count: the window is offsets, not locks.
    for o in 1..10 {
        p.acknowledge(o, "a", AckType::Accept, 1, &LIMITS).unwrap();
    }
    assert_eq!(p.room(&LIMITS), 0);
    p.acknowledge(0, "a", AckType::Accept, 1, &LIMITS).unwrap();
    assert_eq!(p.room(&LIMITS), 10);
}

#[test]
fn gaps_and_lost_records_move_the_window() {
    let mut p = SharePartition::starting_at(0);
    take_new(&mut p, 0..2, "a", 0);
    p.skip_to(5); // 2..5 were control records
    assert_eq!((p.start, p.end), (0, 5));
    assert!(p.acquire_new(3, "a", 0, &LIMITS).is_none(), "below the end");
    p.acquire_new(7, "a", 0, &LIMITS).unwrap(); // 5, 6 compacted away
    assert_eq!(p.end, 8);
    p.release_locks(10_000, None, &LIMITS);
    p.lost_below(1); // retention removed offset 0
    assert_eq!(p.start, 1);
    p.forget(1); // compacted away while available
    assert_eq!(p.start, 7);
    assert_eq!(p.redeliverable(10), vec![7]);
}

#[test]
fn a_snapshot_restores_counts_and_done_records_and_drops_locks() {
    let mut p = SharePartition::starting_at(100);
    take_new(&mut p, 100..106, "a", 0);
    p.acknowledge(101, "a", AckType::Accept, 1, &LIMITS).unwrap();
    p.acknowledge(102, "a", AckType::Accept, 1, &LIMITS).unwrap();
    p.acknowledge(103, "a", AckType::Reject, 1, &LIMITS).unwrap();
    p.acknowledge(104, "a", AckType::Release, 1, &LIMITS).unwrap();
    p.acquire_again(104, "b", 2, &LIMITS).unwrap();
    let s = p.snapshot();
    assert_eq!((s.start, s.end), (100, 106));
    assert_eq!(s.runs.len(), 5, "{s:?}"); // 100 | 101-102 | 103 | 104 (2 deliveries) | 105
    let json = serde_json::to_vec(&s).unwrap();
    let back: Snapshot = serde_json::from_slice(&json).unwrap();
    let r = SharePartition::restore(&back);
    assert_eq!((r.start, r.end), (100, 106));
    assert_eq!(r.redeliverable(10), vec![100, 104, 105]);
    assert_eq!(r.records[&104].deliveries, 2);
    assert_eq!(r.acquired(), 0);
    assert_eq!(r.in_flight(), 3);
}

#[test]
fn a_lying_snapshot_is_clamped() {
    let s = Snapshot {
        start: 10,
        end: 5,
        runs: vec![
            Run { first: 0, last: u64::MAX, state: PersistedState::Available, deliveries: 1 },
            Run { first: 9, last: 3, state: PersistedState::Available, deliveries: 1 },
        ],
    };
    let r = SharePartition::restore(&s);
    assert_eq!((r.start, r.end), (10, 10));
    assert!(r.records.is_empty());
}
