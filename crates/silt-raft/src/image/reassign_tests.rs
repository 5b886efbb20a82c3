//! Tests of adding partitions, replica moves, preferred elections and decommissioning.

use super::tests::{create, image_with_brokers, register};
use super::*;

fn reassign(img: &mut ClusterImage, partition: u32, target: Option<Vec<u64>>) -> CommandResponse {
    img.apply(&Command::ReassignPartition {
        topic: "t".into(),
        partition,
        target,
        throttle_bytes_per_sec: 0,
    })
}

/// The leader of `t/partition` expands its ISR to `isr` with the current epochs.
fn expand(img: &mut ClusterImage, partition: u32, isr: Vec<u64>) -> CommandResponse {
    let p = img.topics["t"].partitions[partition as usize].clone();
    img.apply(&Command::AlterPartition {
        topic: "t".into(),
        partition,
        leader: p.leader.unwrap(),
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr,
        member_epochs: Default::default(),
    })
}

fn part(img: &ClusterImage, partition: usize) -> PartitionImage {
    img.topics["t"].partitions[partition].clone()
}

#[test]
fn added_partitions_are_appended_and_led() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2]]);
    let add = Command::CreatePartitions {
        topic: "t".into(),
        from: 1,
        assignment: vec![vec![2, 3], vec![3, 1]],
    };
    assert_eq!(img.apply(&add), CommandResponse::Done);
    // The same command again (a retry, or a second admin call from the same count) adds nothing.
    assert!(matches!(
        img.apply(&add),
        CommandResponse::Rejected(Rejection::PartitionCountChanged { expected: 1, current: 3, .. })
    ));
    let ps = &img.topics["t"].partitions;
    assert_eq!(ps.len(), 3);
    assert_eq!((ps[1].leader, ps[1].isr.clone()), (Some(2), vec![2, 3]));
    assert_eq!(ps[2].leader, Some(3));
    for bad in [vec![], vec![vec![1, 1]]] {
        let r =
            img.apply(&Command::CreatePartitions { topic: "t".into(), from: 3, assignment: bad });
        assert!(matches!(r, CommandResponse::Rejected(Rejection::InvalidAssignment { .. })));
    }
    let r = img.apply(&Command::CreatePartitions {
        topic: "u".into(),
        from: 0,
        assignment: vec![vec![1]],
    });
    assert!(matches!(r, CommandResponse::Rejected(Rejection::UnknownTopic { .. })));
    assert_eq!(img.topics["t"].partitions.len(), 3, "refusals change nothing");
}

#[test]
fn a_move_keeps_the_union_until_the_new_replica_is_in_sync_then_drops_the_old_one() {
    let mut img = image_with_brokers(&[1, 2, 3, 4]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    assert_eq!(reassign(&mut img, 0, Some(vec![1, 2, 4])), CommandResponse::Done);
    let p = part(&img, 0);
    assert_eq!(p.replicas, vec![1, 2, 4, 3], "target first, then the replica it removes");
    assert_eq!(p.isr, vec![1, 2, 3], "the new replica joins by catching up");
    let r = p.reassignment.clone().unwrap();
    assert_eq!((r.adding(), r.removing()), (vec![4], vec![3]));
    // A second move of the same partition waits for this one.
    assert!(matches!(
        reassign(&mut img, 0, Some(vec![1, 3, 4])),
        CommandResponse::Rejected(Rejection::ReassignmentInProgress { .. })
    ));
    // Broker 4 caught up: the same entry completes the move.
    let CommandResponse::PartitionEpoch(e) = expand(&mut img, 0, vec![1, 2, 3, 4]) else {
        panic!()
    };
    let p = part(&img, 0);
    assert_eq!((p.replicas.clone(), p.isr.clone()), (vec![1, 2, 4], vec![1, 2, 4]));
    assert!(p.reassignment.is_none());
    assert_eq!(e, p.partition_epoch);
    assert_eq!(p.leader, Some(1), "the leader stays when it is kept");
}

#[test]
fn moving_the_leader_off_elects_an_in_sync_target_replica() {
    let mut img = image_with_brokers(&[1, 2, 3, 4]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    reassign(&mut img, 0, Some(vec![4, 2, 3]));
    let before = part(&img, 0);
    assert_eq!(before.leader, Some(1), "the old leader serves while 4 catches up");
    expand(&mut img, 0, vec![1, 2, 3, 4]);
    let p = part(&img, 0);
    assert_eq!(p.replicas, vec![4, 2, 3]);
    assert_eq!(p.leader, Some(4));
    assert_eq!(p.leader_epoch, before.leader_epoch + 1);
}

#[test]
fn every_change_of_the_replica_set_starts_a_new_leader_epoch() {
    // A replica removed (its log deleted) and added again must not be judged by what its
    // leader saw of the deleted log, nor by fetches sent before: a new epoch fences both.
    let mut img = image_with_brokers(&[1, 2]);
    create(&mut img, "t", vec![vec![1]]);
    let e0 = part(&img, 0).leader_epoch;
    reassign(&mut img, 0, Some(vec![2]));
    assert_eq!(part(&img, 0).leader_epoch, e0 + 1, "a move starts");
    reassign(&mut img, 0, None);
    assert_eq!(part(&img, 0).leader_epoch, e0 + 2, "a cancel");
    reassign(&mut img, 0, Some(vec![1, 2]));
    expand(&mut img, 0, vec![1, 2]);
    let p = part(&img, 0);
    assert_eq!((p.leader, p.leader_epoch), (Some(1), e0 + 4), "a start and a completion");
    // Reordering the same replicas copies nothing and keeps the epoch.
    reassign(&mut img, 0, Some(vec![2, 1]));
    assert_eq!(part(&img, 0).leader_epoch, e0 + 4);
}

#[test]
fn lowering_the_replication_factor_completes_at_once_and_raising_it_copies() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1]]);
    reassign(&mut img, 0, Some(vec![1, 2, 3]));
    assert_eq!(part(&img, 0).isr, vec![1]);
    expand(&mut img, 0, vec![1, 2]);
    assert!(part(&img, 0).reassignment.is_some(), "3 is not in sync yet");
    expand(&mut img, 0, vec![1, 2, 3]);
    assert_eq!(part(&img, 0).replicas, vec![1, 2, 3]);
    assert_eq!(reassign(&mut img, 0, Some(vec![2, 3])), CommandResponse::Done);
    let p = part(&img, 0);
    assert_eq!((p.replicas, p.isr, p.leader), (vec![2, 3], vec![2, 3], Some(2)));
    assert!(p.reassignment.is_none());
}

#[test]
fn a_cancel_returns_to_the_original_replicas() {
    let mut img = image_with_brokers(&[1, 2, 3, 4]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    assert!(matches!(
        reassign(&mut img, 0, None),
        CommandResponse::Rejected(Rejection::NoReassignmentInProgress { .. })
    ));
    let before = part(&img, 0);
    reassign(&mut img, 0, Some(vec![4, 1, 2]));
    assert_eq!(part(&img, 0).replicas, vec![4, 1, 2, 3]);
    assert_eq!(reassign(&mut img, 0, None), CommandResponse::Done);
    let p = part(&img, 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (before.replicas, before.isr, before.leader)
    );
    assert!(p.reassignment.is_none());
}

#[test]
fn bad_moves_are_refused_and_change_nothing() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2]]);
    let before = img.clone();
    for target in [vec![], vec![1, 1], vec![1, 9]] {
        assert!(
            matches!(
                reassign(&mut img, 0, Some(target.clone())),
                CommandResponse::Rejected(Rejection::InvalidReplicas { .. })
            ),
            "{target:?}"
        );
    }
    assert!(matches!(
        reassign(&mut img, 7, Some(vec![1])),
        CommandResponse::Rejected(Rejection::UnknownPartition { .. })
    ));
    assert_eq!(img, before);
    // The same replicas in another order: only the preference changes.
    assert_eq!(reassign(&mut img, 0, Some(vec![2, 1])), CommandResponse::Done);
    assert_eq!(part(&img, 0).replicas, vec![2, 1]);
    assert!(part(&img, 0).reassignment.is_none());
}

#[test]
fn preferred_election_moves_leadership_only_to_a_live_in_sync_preferred_replica() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
    let e1 = img.brokers[&1].epoch;
    img.apply(&Command::FenceBroker { id: 1, epoch: e1 });
    let all = vec![("t".to_string(), 0), ("t".to_string(), 1), ("t".to_string(), 9)];
    let CommandResponse::Elections(out) =
        img.apply(&Command::ElectPreferredLeaders { partitions: all.clone() })
    else {
        panic!()
    };
    assert_eq!(
        out,
        vec![
            ElectionOutcome::PreferredNotAvailable { preferred: 1 },
            ElectionOutcome::AlreadyPreferred,
            ElectionOutcome::UnknownPartition
        ]
    );
    // Broker 1 is back and caught up: partition 0 returns to it.
    img.apply(&register(1, 555));
    expand(&mut img, 0, vec![2, 3, 1]);
    let before = part(&img, 0);
    let CommandResponse::Elections(out) =
        img.apply(&Command::ElectPreferredLeaders { partitions: all })
    else {
        panic!()
    };
    assert_eq!(out[0], ElectionOutcome::Elected { leader: 1 });
    let p = part(&img, 0);
    assert_eq!((p.leader, p.leader_epoch), (Some(1), before.leader_epoch + 1));
}

#[test]
fn decommission_moves_every_replica_off_and_recommission_cancels() {
    let mut img = image_with_brokers(&[1, 2, 3, 4]);
    create(&mut img, "t", vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 1, 2]]);
    let r = img.apply(&Command::DecommissionBroker { id: 3, throttle_bytes_per_sec: 0 });
    assert_eq!(r, CommandResponse::Moves(3));
    assert!(img.brokers[&3].decommissioning);
    for (i, p) in img.topics["t"].partitions.iter().enumerate() {
        let r = p.reassignment.as_ref().unwrap();
        assert_eq!(r.removing(), vec![3], "partition {i}");
        assert!(!r.target.contains(&3));
        assert_eq!(r.target.len(), 3);
    }
    // Broker 4 held the fewest replicas: it takes them where it can.
    assert_eq!(img.topics["t"].partitions[0].reassignment.as_ref().unwrap().adding(), vec![4]);
    // A decommissioning broker is kept so across a restart, and takes no new replicas.
    img.apply(&register(3, 777));
    assert!(img.brokers[&3].decommissioning);
    create(&mut img, "u", vec![vec![1, 2]]);
    let r = img.apply(&Command::ReassignPartition {
        topic: "u".into(),
        partition: 0,
        target: Some(vec![1, 3]),
        throttle_bytes_per_sec: 0,
    });
    assert!(matches!(r, CommandResponse::Rejected(Rejection::BrokerDecommissioning { broker: 3 })));
    assert_eq!(img.apply(&Command::RecommissionBroker { id: 3 }), CommandResponse::Moves(3));
    assert!(!img.brokers[&3].decommissioning);
    assert!(img.topics["t"].partitions.iter().all(|p| p.reassignment.is_none()));
    let replicas: Vec<Vec<u64>> =
        img.topics["t"].partitions.iter().map(|p| p.replicas.clone()).collect();
    assert_eq!(replicas, vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 1, 2]]);
}

#[test]
fn a_decommission_with_nowhere_to_move_is_refused_whole() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1], vec![1, 2, 3]]);
    let before = img.clone();
    let r = img.apply(&Command::DecommissionBroker { id: 1, throttle_bytes_per_sec: 0 });
    assert!(matches!(
        r,
        CommandResponse::Rejected(Rejection::NoReplacement { broker: 1, partition: 1, .. })
    ));
    assert_eq!(img, before);
    let r = img.apply(&Command::DecommissionBroker { id: 9, throttle_bytes_per_sec: 0 });
    assert!(matches!(r, CommandResponse::Rejected(Rejection::UnknownBroker { id: 9 })));
}

#[test]
fn images_from_before_reassignments_still_decode() {
    let p: PartitionImage = serde_json::from_str(
        r#"{"replicas":[1],"leader":1,"leader_epoch":0,"partition_epoch":0,"isr":[1]}"#,
    )
    .unwrap();
    assert!(p.reassignment.is_none());
}
