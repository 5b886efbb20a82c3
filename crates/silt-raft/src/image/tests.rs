//! Tests of the image's commands.

use super::*;

pub(super) fn register(id: u64, incarnation: u64) -> Command {
    Command::RegisterBroker {
        kafka_address: String::new(),
        id,
        address: format!("b{id}:9300"),
        internal_address: String::new(),
        rack: None,
        incarnation,
    }
}

#[test]
fn a_new_incarnation_is_the_old_ones_death() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3], vec![2, 1, 3], vec![1]]);
    let before = img.topics["t"].partitions.clone();
    // Broker 1 restarts within its session: a new process, so a new incarnation.
    img.apply(&register(1, 999));
    let ps = &img.topics["t"].partitions;
    assert_eq!((ps[0].leader, ps[0].leader_epoch), (Some(2), before[0].leader_epoch + 1));
    assert_eq!(ps[0].isr, vec![2, 3], "rejoins only by catching up");
    assert_eq!((ps[1].leader, ps[1].leader_epoch), (Some(2), before[1].leader_epoch));
    assert_eq!(ps[1].isr, vec![2, 3]);
    assert!(ps[1].partition_epoch > before[1].partition_epoch);
    // Its only copy: led again, but at a new leader epoch.
    assert_eq!(ps[2].leader, Some(1));
    assert!(ps[2].leader_epoch > before[2].leader_epoch);
    let b = &img.brokers[&1];
    assert!(!b.fenced);
    assert_eq!(b.incarnation, 999);
}

#[test]
fn re_registering_the_same_incarnation_moves_nothing() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    let before = img.topics["t"].partitions.clone();
    img.apply(&register(1, 100));
    assert_eq!(img.topics["t"].partitions, before);
    assert!(img.brokers[&1].epoch > 3, "a new broker epoch all the same");
}

#[test]
fn entries_without_an_incarnation_still_decode() {
    let c: Command =
        serde_json::from_str(r#"{"RegisterBroker":{"id":1,"address":"a","rack":null}}"#).unwrap();
    assert_eq!(
        c,
        Command::RegisterBroker {
            kafka_address: String::new(),
            id: 1,
            address: "a".into(),
            internal_address: String::new(),
            rack: None,
            incarnation: 0
        }
    );
}

pub(super) fn image_with_brokers(ids: &[u64]) -> ClusterImage {
    let mut img = ClusterImage::default();
    for &id in ids {
        img.apply(&register(id, id * 100));
    }
    img
}

pub(super) fn create(img: &mut ClusterImage, name: &str, assignment: Vec<Vec<u64>>) {
    let r = img.apply(&Command::CreateTopic {
        name: name.into(),
        assignment,
        configs: BTreeMap::new(),
        uuid: String::new(),
    });
    assert!(matches!(r, CommandResponse::TopicId(_)), "{r:?}");
}

fn epoch(img: &ClusterImage, id: u64) -> u64 {
    img.brokers[&id].epoch
}

#[test]
fn fencing_the_leader_elects_the_next_isr_member_with_a_higher_epoch() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
    assert_eq!(img.topics["t"].partitions[0].leader, Some(1));
    let e = epoch(&img, 1);
    assert_eq!(img.apply(&Command::FenceBroker { id: 1, epoch: e }), CommandResponse::Done);
    let p0 = &img.topics["t"].partitions[0];
    assert_eq!((p0.leader, p0.leader_epoch, p0.isr.clone()), (Some(2), 1, vec![2, 3]));
    let p1 = &img.topics["t"].partitions[1];
    assert_eq!(
        (p1.leader, p1.leader_epoch, p1.isr.clone()),
        (Some(2), 0, vec![2, 3]),
        "only the ISR changed"
    );
    assert!(p1.partition_epoch > 0);
}

#[test]
fn the_last_isr_member_stays_and_no_unclean_election_happens_by_default() {
    let mut img = image_with_brokers(&[1, 2]);
    create(&mut img, "t", vec![vec![1, 2]]);
    let isr_only_1 = Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        isr: vec![1],
        member_epochs: Default::default(),
    };
    assert_eq!(img.apply(&isr_only_1), CommandResponse::PartitionEpoch(1));
    let e = epoch(&img, 1);
    img.apply(&Command::FenceBroker { id: 1, epoch: e });
    let p = &img.topics["t"].partitions[0];
    assert_eq!(
        (p.leader, p.isr.clone()),
        (None, vec![1]),
        "waits for broker 1 instead of losing data"
    );
    // Broker 1 comes back: it leads again, with a new epoch.
    img.apply(&register(1, 777));
    let p = &img.topics["t"].partitions[0];
    assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
}

#[test]
fn unclean_election_only_when_the_topic_allows_it() {
    let mut img = image_with_brokers(&[1, 2]);
    let configs =
        BTreeMap::from([("unclean.leader.election.enable".to_string(), "true".to_string())]);
    img.apply(&Command::CreateTopic {
        name: "u".into(),
        assignment: vec![vec![1, 2]],
        configs,
        uuid: String::new(),
    });
    img.apply(&Command::AlterPartition {
        topic: "u".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        isr: vec![1],
        member_epochs: Default::default(),
    });
    let e = epoch(&img, 1);
    img.apply(&Command::FenceBroker { id: 1, epoch: e });
    let p = &img.topics["u"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (Some(2), vec![2]));
}

#[test]
fn stale_alter_partition_requests_are_fenced() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    let e = epoch(&img, 1);
    img.apply(&Command::FenceBroker { id: 1, epoch: e });
    // The old leader (zombie) tries to shrink the ISR with its old epochs.
    let zombie = Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        isr: vec![1],
        member_epochs: Default::default(),
    };
    assert!(matches!(
        img.apply(&zombie),
        CommandResponse::Rejected(Rejection::StaleEpochs {
            leader: 1,
            current_leader: Some(2),
            ..
        })
    ));
    let p = img.topics["t"].partitions[0].clone();
    let bad_isr = Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 2,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![3],
        member_epochs: Default::default(),
    };
    assert!(
        matches!(img.apply(&bad_isr), CommandResponse::Rejected(Rejection::InvalidIsr { .. })),
        "the ISR must hold the leader"
    );
    let ok = Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 2,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![2, 3, 1],
        member_epochs: Default::default(),
    };
    assert!(
        matches!(
            img.apply(&ok),
            CommandResponse::Rejected(Rejection::IneligibleReplica { broker: 1 })
        ),
        "a fenced broker does not rejoin (KIP-841)"
    );
    img.apply(&register(1, 100));
    let p = img.topics["t"].partitions[0].clone();
    let ok = Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 2,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![2, 3, 1],
        member_epochs: Default::default(),
    };
    assert_eq!(img.apply(&ok), CommandResponse::PartitionEpoch(p.partition_epoch + 1));
    // A fence with an old broker epoch (the broker re-registered since) is refused.
    assert!(matches!(
        img.apply(&Command::FenceBroker { id: 1, epoch: e }),
        CommandResponse::Rejected(Rejection::StaleBrokerEpoch { id: 1, .. })
    ));
}

#[test]
fn controlled_shutdown_moves_leaderships_to_in_sync_replicas() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3], vec![1, 3, 2], vec![2, 1, 3]]);
    let e = epoch(&img, 1);
    img.apply(&Command::MoveLeadershipAway { id: 1, epoch: e });
    let leaders: Vec<_> = img.topics["t"].partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, [Some(2), Some(3), Some(2)]);
    let p2 = &img.topics["t"].partitions[2];
    assert_eq!(p2.leader_epoch, 0, "partitions led elsewhere keep their leader epoch");
    for p in &img.topics["t"].partitions {
        assert!(!p.isr.contains(&1), "the stopping broker left the ISR: {:?}", p.isr);
    }
    // Still fetching until it exits, it may not rejoin; after registering again it may.
    let p = img.topics["t"].partitions[2].clone();
    let rejoin = Command::AlterPartition {
        topic: "t".into(),
        partition: 2,
        leader: 2,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![2, 3, 1],
        member_epochs: Default::default(),
    };
    assert!(matches!(
        img.apply(&rejoin),
        CommandResponse::Rejected(Rejection::IneligibleReplica { broker: 1 })
    ));
    img.apply(&register(1, 555));
    assert_eq!(img.apply(&rejoin), CommandResponse::PartitionEpoch(p.partition_epoch + 1));
}

#[test]
fn a_member_seen_fetching_under_an_older_registration_cannot_join() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    let old = epoch(&img, 3);
    img.apply(&register(3, 999)); // a new process: out of the ISR, a new broker epoch
    let new = epoch(&img, 3);
    let p = img.topics["t"].partitions[0].clone();
    assert_eq!(p.isr, vec![1, 2]);
    let add3 = |e: u64| Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![1, 2, 3],
        member_epochs: BTreeMap::from([(3, e)]),
    };
    assert!(matches!(img.apply(&add3(old)), CommandResponse::Rejected(_)));
    assert_eq!(img.apply(&add3(new)), CommandResponse::PartitionEpoch(p.partition_epoch + 1));
}

#[test]
fn a_fenced_broker_cannot_join_an_isr() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3]]);
    let e = epoch(&img, 3);
    img.apply(&Command::FenceBroker { id: 3, epoch: e });
    let p = img.topics["t"].partitions[0].clone();
    assert_eq!(p.isr, vec![1, 2]);
    let add3 = Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![1, 2, 3],
        member_epochs: Default::default(),
    };
    assert!(matches!(
        img.apply(&add3),
        CommandResponse::Rejected(Rejection::IneligibleReplica { broker: 3 })
    ));
}

#[test]
fn topics_and_producer_ids() {
    let mut img = image_with_brokers(&[1]);
    create(&mut img, "a", vec![vec![1]]);
    assert!(matches!(
        img.apply(&Command::CreateTopic {
            name: "a".into(),
            assignment: vec![vec![1]],
            configs: BTreeMap::new(),
            uuid: String::new(),
        }),
        CommandResponse::Rejected(Rejection::TopicExists { .. })
    ));
    assert!(matches!(
        img.apply(&Command::CreateTopic {
            name: "b".into(),
            assignment: vec![vec![1, 1]],
            configs: BTreeMap::new(),
            uuid: String::new(),
        }),
        CommandResponse::Rejected(Rejection::InvalidAssignment { .. })
    ));
    assert_eq!(
        img.apply(&Command::AllocateProducerIds { broker: 1, count: 100 }),
        CommandResponse::ProducerIds { start: 0, count: 100 }
    );
    assert_eq!(
        img.apply(&Command::AllocateProducerIds { broker: 1, count: 10 }),
        CommandResponse::ProducerIds { start: 100, count: 10 }
    );
    assert_eq!(img.apply(&Command::DeleteTopic { name: "a".into() }), CommandResponse::Done);
    assert!(img.topics.is_empty());
}

#[test]
fn a_damaged_replica_leaves_the_isr_and_leadership_unless_it_is_the_last_copy() {
    let mut img = image_with_brokers(&[1, 2, 3]);
    create(&mut img, "t", vec![vec![1, 2, 3], vec![1]]);
    let epoch = img.brokers[&1].epoch;
    let report =
        |p| Command::ReportDamagedReplica { broker: 1, epoch, topic: "t".into(), partition: p };
    assert_eq!(img.apply(&report(0)), CommandResponse::PartitionEpoch(1));
    let p = &img.topics["t"].partitions[0];
    assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(2), 1, vec![2, 3]));
    // The only copy stays (there is nothing better to elect).
    assert_eq!(img.apply(&report(1)), CommandResponse::Done);
    assert_eq!(img.topics["t"].partitions[1].isr, vec![1]);
    // A stale broker epoch changes nothing.
    let stale =
        Command::ReportDamagedReplica { broker: 2, epoch: 999, topic: "t".into(), partition: 0 };
    assert!(matches!(
        img.apply(&stale),
        CommandResponse::Rejected(Rejection::StaleBrokerEpoch { id: 2, epoch: 999, .. })
    ));
}

#[test]
fn rejections_are_typed_by_cause() {
    let mut img = image_with_brokers(&[1]);
    let unknown =
        |topic: &str| CommandResponse::Rejected(Rejection::UnknownTopic { topic: topic.into() });
    assert_eq!(img.apply(&Command::DeleteTopic { name: "x".into() }), unknown("x"));
    assert_eq!(
        img.apply(&Command::AlterTopicConfig { name: "y".into(), configs: BTreeMap::new() }),
        unknown("y")
    );
    assert_eq!(
        img.apply(&Command::FenceBroker { id: 9, epoch: 1 }),
        CommandResponse::Rejected(Rejection::UnknownBroker { id: 9 })
    );
    let e = epoch(&img, 1);
    assert_eq!(
        img.apply(&Command::MoveLeadershipAway { id: 1, epoch: e + 5 }),
        CommandResponse::Rejected(Rejection::StaleBrokerEpoch { id: 1, epoch: e + 5, current: e })
    );
    assert_eq!(
        img.apply(&Command::AllocateProducerIds { broker: 1, count: 0 }),
        CommandResponse::Rejected(Rejection::EmptyProducerIdBlock { broker: 1 })
    );
    assert_eq!(
        img.apply(&Command::AllocateProducerIds { broker: 7, count: 10 }),
        CommandResponse::Rejected(Rejection::UnknownBroker { id: 7 })
    );
    create(&mut img, "t", vec![vec![1]]);
    let beyond =
        Command::ReportDamagedReplica { broker: 1, epoch: e, topic: "t".into(), partition: 3 };
    assert_eq!(
        img.apply(&beyond),
        CommandResponse::Rejected(Rejection::UnknownPartition { topic: "t".into(), partition: 3 })
    );
}

#[test]
fn rejection_messages_keep_their_wording_and_survive_a_forward() {
    let r = Rejection::TopicExists { topic: "a".into() };
    assert_eq!(r.to_string(), "topic a already exists");
    assert_eq!(Rejection::UnknownTopic { topic: "b".into() }.to_string(), "unknown topic b");
    // Forwarded proposals answer with the response's JSON.
    let resp = CommandResponse::Rejected(r);
    let json = serde_json::to_string(&resp).unwrap();
    assert_eq!(json, r#"{"Rejected":{"TopicExists":{"topic":"a"}}}"#);
    assert_eq!(serde_json::from_str::<CommandResponse>(&json).unwrap(), resp);
}
