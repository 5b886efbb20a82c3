use super::*;

fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
    list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

/// A simulated member: it consumes what it was given and releases what was taken away.
#[derive(Debug, Clone, Default)]
struct Sim {
    id: String,
    epoch: u32,
    owned: BTreeSet<Tp>,
    instance: Option<String>,
}

fn hb(s: &Sim, topic: &str) -> Heartbeat {
    Heartbeat {
        member_id: s.id.clone(),
        member_epoch: s.epoch,
        instance_id: s.instance.clone(),
        client_id: "c".into(),
        topics: [topic.to_string()].into(),
        regex: None,
        assignor: None,
        session_timeout_ms: 10_000,
        owned: s.owned.clone(),
        client_member_id: false,
    }
}

fn beat(g: &mut Group, s: &mut Sim, now: u64, t: &BTreeMap<String, u32>, n: &mut u32) {
    let out = g
        .heartbeat(hb(s, "t"), now, t, || {
            *n += 1;
            format!("m{n}")
        })
        .unwrap();
    s.id = out.member_id;
    s.epoch = out.member_epoch;
    // The client gives up revoked partitions at once and takes new ones.
    s.owned = out.assignment;
    assert_disjoint(g);
}

/// No partition is held (assigned or owned) by two members at once.
fn assert_disjoint(g: &Group) {
    let mut seen = BTreeMap::new();
    for (id, m) in &g.members {
        for tp in m.holding() {
            if let Some(other) = seen.insert(tp.clone(), id.clone()) {
                panic!("{tp:?} held by {other} and {id}");
            }
        }
    }
}

#[test]
fn members_split_partitions_disjointly_and_cover_all() {
    let t = topics(&[("t", 12)]);
    let mut g = Group::default();
    let mut n = 0;
    let mut sims = vec![Sim::default(), Sim::default(), Sim::default()];
    for round in 0..6u64 {
        for s in sims.iter_mut() {
            beat(&mut g, s, round * 100, &t, &mut n);
        }
    }
    let mut all = BTreeSet::new();
    for s in &sims {
        assert_eq!(s.owned.len(), 4, "balanced: {:?}", s.owned);
        for tp in &s.owned {
            assert!(all.insert(tp.clone()));
        }
    }
    assert_eq!(all.len(), 12);
    assert_eq!(state_name(&g), "stable");
}

#[test]
fn a_joining_member_gets_partitions_only_after_the_owner_released_them() {
    let t = topics(&[("t", 4)]);
    let mut g = Group::default();
    let mut n = 0;
    let mut a = Sim::default();
    beat(&mut g, &mut a, 0, &t, &mut n);
    assert_eq!(a.owned.len(), 4);
    // B joins: the target gives it two partitions, but A still owns them.
    let mut b = Sim::default();
    let out = g
        .heartbeat(hb(&b, "t"), 10, &t, || {
            n += 1;
            format!("m{n}")
        })
        .unwrap();
    assert!(out.assignment.is_empty(), "nothing free yet: {:?}", out.assignment);
    assert!(out.pending);
    b.id = out.member_id;
    b.epoch = out.member_epoch;
    assert_eq!(state_name(&g), "reconciling");
    // A learns of the revocation (still reporting all four until it has released them).
    let keep_owned = a.owned.clone();
    let out = g.heartbeat(hb(&a, "t"), 20, &t, || unreachable!()).unwrap();
    assert_eq!(out.assignment.len(), 2);
    a.owned = keep_owned;
    assert_disjoint(&g);
    // B asks again: A has not confirmed, so still nothing.
    let out = g.heartbeat(hb(&b, "t"), 30, &t, || unreachable!()).unwrap();
    assert!(out.assignment.is_empty());
    // A confirms the release; now B gets the two.
    a.owned = g.members[&a.id].rec.assigned.clone();
    beat(&mut g, &mut a, 40, &t, &mut n);
    beat(&mut g, &mut b, 50, &t, &mut n);
    assert_eq!(b.owned.len(), 2);
    assert!(a.owned.is_disjoint(&b.owned));
    beat(&mut g, &mut a, 60, &t, &mut n);
    // Stable once B reports owning what it was given.
    assert_eq!(state_name(&g), "reconciling");
    beat(&mut g, &mut b, 70, &t, &mut n);
    assert_eq!(state_name(&g), "stable");
}

#[test]
fn a_silent_member_is_removed_after_its_session_and_others_take_over() {
    let t = topics(&[("t", 6)]);
    let mut g = Group::default();
    let mut n = 0;
    let (mut a, mut b) = (Sim::default(), Sim::default());
    for now in [0, 10, 20] {
        beat(&mut g, &mut a, now, &t, &mut n);
        beat(&mut g, &mut b, now, &t, &mut n);
    }
    assert_eq!(a.owned.len(), 3);
    assert!(g.expire(5_000, 60_000, &t).is_empty());
    // Only A keeps heartbeating.
    beat(&mut g, &mut a, 9_000, &t, &mut n);
    assert_eq!(g.expire(10_021, 60_000, &t), vec![b.id.clone()]);
    beat(&mut g, &mut a, 10_030, &t, &mut n);
    assert_eq!(a.owned.len(), 6);
    // The removed member's commits and heartbeats are refused.
    assert!(matches!(g.check_commit(&b.id, b.epoch, &b.owned), Err(GroupError::UnknownMember(_))));
    assert!(matches!(
        g.heartbeat(hb(&b, "t"), 10_040, &t, || unreachable!()),
        Err(GroupError::UnknownMember(_))
    ));
}

#[test]
fn commits_with_a_stale_epoch_are_fenced() {
    let t = topics(&[("t", 2)]);
    let mut g = Group::default();
    let mut n = 0;
    let mut a = Sim::default();
    beat(&mut g, &mut a, 0, &t, &mut n);
    assert!(g.check_commit(&a.id, a.epoch, &a.owned).is_ok());
    assert!(matches!(
        g.check_commit(&a.id, a.epoch + 7, &a.owned),
        Err(GroupError::FencedEpoch { .. })
    ));
    assert!(matches!(g.check_commit("", 0, &a.owned), Err(GroupError::NotEmpty(1))));
    let mut stale = a.clone();
    stale.epoch += 7;
    assert!(matches!(
        g.heartbeat(hb(&stale, "t"), 10, &t, || unreachable!()),
        Err(GroupError::FencedEpoch { .. })
    ));
}

#[test]
fn a_revoked_member_cannot_commit_the_partition_it_gave_up() {
    let t = topics(&[("t", 2)]);
    let mut g = Group::default();
    let mut n = 0;
    let mut a = Sim::default();
    beat(&mut g, &mut a, 0, &t, &mut n);
    assert_eq!(a.owned.len(), 2);
    let a_epoch = a.epoch;
    // B joins; A learns that one partition goes to B but has not released it yet.
    let mut b = Sim::default();
    beat(&mut g, &mut b, 10, &t, &mut n);
    let out = g.heartbeat(hb(&a, "t"), 20, &t, || unreachable!()).unwrap();
    let moving: Vec<Tp> = a.owned.difference(&out.assignment).cloned().collect();
    assert_eq!(moving.len(), 1);
    let moving = &moving[0];
    // While revoking, A may commit it (the commit on revocation, before confirming).
    assert_eq!(g.check_commit(&a.id, a.epoch, [moving]), Ok(()));
    // A confirms the release; B receives the partition and may commit it.
    a.owned = out.assignment;
    beat(&mut g, &mut a, 30, &t, &mut n);
    assert_eq!(a.epoch, a_epoch, "giving partitions up keeps the member epoch");
    beat(&mut g, &mut b, 40, &t, &mut n);
    assert!(b.owned.contains(moving));
    assert_eq!(g.check_commit(&b.id, b.epoch, [moving]), Ok(()));
    // A's late commit of it is refused, with its current epoch or its previous one, alone or
    // beside a partition it still owns; its own partition it still commits.
    let previous = g.members[&a.id].rec.previous_epoch;
    let kept = a.owned.iter().next().unwrap().clone();
    for epoch in [a.epoch, previous] {
        assert!(matches!(
            g.check_commit(&a.id, epoch, [moving]),
            Err(GroupError::NotOwned { ref partition, .. }) if partition == moving
        ));
        assert!(matches!(
            g.check_commit(&a.id, epoch, [&kept, moving]),
            Err(GroupError::NotOwned { .. })
        ));
        assert_eq!(g.check_commit(&a.id, epoch, [&kept]), Ok(()));
    }
    // Nor may B commit what A kept.
    assert!(matches!(g.check_commit(&b.id, b.epoch, [&kept]), Err(GroupError::NotOwned { .. })));
}

#[test]
fn a_member_that_does_not_release_in_time_is_removed() {
    let t = topics(&[("t", 2)]);
    let mut g = Group::default();
    let mut n = 0;
    let mut a = Sim::default();
    beat(&mut g, &mut a, 0, &t, &mut n);
    let mut b = Sim::default();
    beat(&mut g, &mut b, 10, &t, &mut n);
    // A heartbeats but keeps reporting both partitions.
    let owned = a.owned.clone();
    for now in [20, 1_000, 2_000] {
        g.heartbeat(hb(&a, "t"), now, &t, || unreachable!()).unwrap();
        a.owned = owned.clone();
    }
    assert!(g.expire(2_500, 5_000, &t).is_empty());
    assert_eq!(g.expire(5_021, 5_000, &t), vec![a.id.clone()]);
}

#[test]
fn a_static_member_restarting_keeps_its_partitions() {
    let t = topics(&[("t", 4)]);
    let mut g = Group::default();
    let mut n = 0;
    let mut a = Sim { instance: Some("a".into()), ..Sim::default() };
    let mut b = Sim { instance: Some("b".into()), ..Sim::default() };
    for now in [0, 10, 20] {
        beat(&mut g, &mut a, now, &t, &mut n);
        beat(&mut g, &mut b, now, &t, &mut n);
    }
    let before = a.owned.clone();
    assert_eq!(before.len(), 2);
    g.leave(&a.id, Some("a"), &t).unwrap();
    // B keeps heartbeating; A's partitions are not handed to it while A is away.
    beat(&mut g, &mut b, 500, &t, &mut n);
    assert_eq!(b.owned.len(), 2);
    // A comes back as a new process (no member id) within its session.
    let old_id = a.id.clone();
    let mut a2 = Sim { instance: Some("a".into()), ..Sim::default() };
    beat(&mut g, &mut a2, 1_000, &t, &mut n);
    assert_eq!(a2.owned, before);
    assert_ne!(a2.id, old_id);
    assert!(matches!(
        g.check_commit(&old_id, a.epoch, &a.owned),
        Err(GroupError::UnknownMember(_))
    ));
}

#[test]
fn regex_subscriptions_follow_new_topics() {
    let mut g = Group::default();
    let t1 = topics(&[("orders-eu", 2), ("other", 3)]);
    let mut s = Heartbeat {
        client_id: "c".into(),
        regex: Some("orders-.*".into()),
        session_timeout_ms: 10_000,
        ..Heartbeat::default()
    };
    let out = g.heartbeat(s.clone(), 0, &t1, || "m".into()).unwrap();
    assert_eq!(out.assignment.len(), 2);
    assert!(out.assignment.iter().all(|(t, _)| t == "orders-eu"));
    s.member_id = out.member_id;
    s.member_epoch = out.member_epoch;
    s.owned = out.assignment;
    let t2 = topics(&[("orders-eu", 2), ("orders-us", 1), ("other", 3)]);
    assert!(g.topics_changed(&t2));
    let out = g.heartbeat(s.clone(), 10, &t2, || unreachable!()).unwrap();
    assert_eq!(out.assignment.len(), 3);
    assert!(matches!(compile_regex("("), Err(GroupError::Invalid(_))));
}

#[test]
fn a_restored_group_keeps_who_holds_what() {
    let t = topics(&[("t", 4)]);
    let mut g = Group::default();
    let mut n = 0;
    let (mut a, mut b) = (Sim::default(), Sim::default());
    for now in [0, 10, 20] {
        beat(&mut g, &mut a, now, &t, &mut n);
        beat(&mut g, &mut b, now, &t, &mut n);
    }
    let rec = g.record();
    let json = serde_json::to_vec(&rec).unwrap();
    let mut g2 = Group::default();
    g2.restore(serde_json::from_slice(&json).unwrap(), 1_000);
    // The members continue with their ids and epochs; nothing moves.
    beat(&mut g2, &mut a, 1_010, &t, &mut n);
    beat(&mut g2, &mut b, 1_020, &t, &mut n);
    assert_eq!(a.owned.len() + b.owned.len(), 4);
    assert!(a.owned.is_disjoint(&b.owned));
    assert_eq!(g2.members.len(), 2);
}

#[test]
fn later_commit_records_win_regardless_of_apply_order() {
    let mut g = Group::default();
    let tp = ("t".to_string(), 0);
    let c = |offset, record_offset| Committed {
        offset,
        metadata: String::new(),
        timestamp_ms: 0,
        record_offset,
    };
    g.apply_offset(tp.clone(), Some(c(20, 5)), 5);
    g.apply_offset(tp.clone(), Some(c(10, 4)), 4);
    assert_eq!(g.offsets[&tp].offset, 20);
    g.apply_offset(tp.clone(), None, 6);
    assert!(!g.offsets.contains_key(&tp));
}

#[test]
fn a_join_under_a_client_chosen_id_keeps_it_and_a_rejoin_replaces_that_member() {
    let mut g = Group::default();
    let t = topics(&[("orders", 2)]);
    let join = Heartbeat { member_id: "chosen".into(), client_member_id: true, ..join_template() };
    let out = g.heartbeat(join.clone(), 0, &t, || "made".into()).unwrap();
    assert_eq!(out.member_id, "chosen");
    assert_eq!(out.assignment.len(), 2);
    // Rejoining (epoch 0) under the same id: still one member, named as chosen, afresh.
    let again = g.heartbeat(join, 10, &t, || "made".into()).unwrap();
    assert_eq!(again.member_id, "chosen");
    assert_eq!(g.members.len(), 1);
    // Without the flag, the broker names the member.
    let other = Heartbeat { member_id: "x".into(), client_member_id: false, ..join_template() };
    assert_eq!(g.heartbeat(other, 20, &t, || "made".into()).unwrap().member_id, "made");
}

fn join_template() -> Heartbeat {
    Heartbeat {
        client_id: "c".into(),
        topics: ["orders".to_string()].into(),
        session_timeout_ms: 10_000,
        ..Heartbeat::default()
    }
}
