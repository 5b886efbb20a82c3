use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A member id no test used before.
fn fresh() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("m{}", N.fetch_add(1, Ordering::Relaxed))
}

fn join(member: &str, protocols: &[&str]) -> Join {
    Join {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 5_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

/// A member id through the MEMBER_ID_REQUIRED round trip.
fn first_join(g: &mut ClassicGroup, protocols: &[&str], now: u64) -> String {
    let Err(ClassicError::MemberIdRequired(id)) = g.join(join("", protocols), now, fresh) else {
        panic!("a first join gets a member id back")
    };
    assert_eq!(g.join(join(&id, protocols), now, fresh), Ok(id.clone()));
    id
}

#[test]
fn two_members_join_the_leader_assigns_and_each_gets_its_part() {
    let mut g = ClassicGroup::default();
    let a = first_join(&mut g, &["range", "roundrobin"], 0);
    let b = first_join(&mut g, &["roundrobin"], 10);
    assert!(g.joined(&a).is_none(), "waits for the initial delay");
    g.tick(INITIAL_REBALANCE_DELAY_MS - 1);
    assert_eq!(g.state, State::PreparingRebalance);
    g.tick(INITIAL_REBALANCE_DELAY_MS);
    assert_eq!(g.state, State::CompletingRebalance);
    assert_eq!(g.generation, 1);
    let ja = g.joined(&a).unwrap().unwrap();
    let jb = g.joined(&b).unwrap().unwrap();
    assert_eq!(ja.protocol, "roundrobin", "the only protocol both support");
    assert_eq!(ja.leader, a, "the first member leads");
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert_eq!(ja.members[0].2, Bytes::from("meta-roundrobin"));
    assert!(jb.members.is_empty(), "followers do not");

    g.sync(&b, 1, vec![], 20).unwrap();
    assert!(g.synced(&b, 1).is_none(), "a follower waits for the leader");
    g.sync(&a, 1, vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))], 30).unwrap();
    assert_eq!(g.state, State::Stable);
    assert_eq!(g.synced(&a, 1), Some(Ok(Bytes::from("A"))));
    assert_eq!(g.synced(&b, 1), Some(Ok(Bytes::from("B"))));
    assert_eq!(g.heartbeat(&b, 1, 40), Ok(()));
    assert_eq!(
        g.heartbeat(&b, 0, 40),
        Err(ClassicError::IllegalGeneration { asked: 0, current: 1 })
    );
    assert_eq!(g.check_commit(&a, 1), Ok(()));
    assert_eq!(g.check_commit("", -1), Err(ClassicError::UnknownMember(String::new())));
}

#[test]
fn a_new_member_rebalances_and_a_member_that_does_not_rejoin_is_dropped() {
    let mut g = ClassicGroup::default();
    let a = first_join(&mut g, &["range"], 0);
    g.tick(INITIAL_REBALANCE_DELAY_MS);
    g.sync(&a, 1, vec![(a.clone(), Bytes::from("all"))], 0).unwrap();
    assert_eq!(g.state, State::Stable);

    let b = first_join(&mut g, &["range"], 2_000);
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, 1, 2_100), Err(ClassicError::RebalanceInProgress), "rejoin");
    assert_eq!(g.check_commit(&a, 1), Err(ClassicError::RebalanceInProgress));
    // `a` never rejoins: at the rebalance timeout it is out, and `b` leads alone.
    g.tick(2_000 + 4_999);
    assert_eq!(g.state, State::PreparingRebalance);
    g.tick(2_000 + 5_000);
    assert_eq!(g.state, State::CompletingRebalance);
    assert!(!g.members.contains_key(&a));
    assert_eq!(g.joined(&a), Some(Err(ClassicError::UnknownMember(a.clone()))));
    assert_eq!(g.joined(&b).unwrap().unwrap().leader, b);
}

#[test]
fn an_expired_session_rebalances_and_the_last_leave_empties_the_group() {
    let mut g = ClassicGroup::default();
    let a = first_join(&mut g, &["range"], 0);
    let b = first_join(&mut g, &["range"], 0);
    g.tick(INITIAL_REBALANCE_DELAY_MS);
    g.sync(&a, 1, vec![], 1_000).unwrap();
    g.heartbeat(&a, 1, 10_000).unwrap();
    // `b` last seen at 1000 (the rebalance's end): expired after its 10 s session.
    g.tick(11_001);
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.state, State::PreparingRebalance);
    g.join(join(&a, &["range"]), 11_002, fresh).unwrap();
    g.tick(11_002);
    assert_eq!((g.state, g.generation), (State::CompletingRebalance, 2));
    assert_eq!(g.leave(&a, 11_003), Ok(()));
    assert_eq!(g.state, State::Empty);
    assert_eq!(g.check_commit("", -1), Ok(()), "member-less commits once empty");
}

#[test]
fn a_join_with_another_protocol_or_an_unknown_id_is_refused() {
    let mut g = ClassicGroup::default();
    first_join(&mut g, &["range"], 0);
    assert_eq!(g.join(join("", &["sticky"]), 1, fresh), Err(ClassicError::InconsistentProtocol));
    let mut other = join("", &["range"]);
    other.protocol_type = "connect".into();
    assert_eq!(g.join(other, 1, fresh), Err(ClassicError::InconsistentProtocol));
    assert_eq!(
        g.join(join("made-up", &["range"]), 1, fresh),
        Err(ClassicError::UnknownMember("made-up".into()))
    );
}

#[test]
fn a_restarted_static_member_takes_its_place_without_a_rebalance_and_fences_its_old_id() {
    let mut g = ClassicGroup::default();
    let leader = first_join(&mut g, &["range"], 0);
    let mut stat = join("", &["range"]);
    stat.instance_id = Some("pod-1".into());
    let old =
        g.join(stat.clone(), 0, fresh).expect("no MEMBER_ID_REQUIRED round for static members");
    g.tick(INITIAL_REBALANCE_DELAY_MS);
    let parts = vec![(leader.clone(), Bytes::from("L")), (old.clone(), Bytes::from("S"))];
    g.sync(&leader, 1, parts, 1_000).unwrap();
    assert_eq!(g.state, State::Stable);

    // The static member restarts: a new id, the same assignment, the same generation.
    let new = g.join(stat.clone(), 2_000, fresh).unwrap();
    assert_ne!(new, old);
    assert_eq!(g.state, State::Stable, "no rebalance");
    let joined = g.joined(&new).unwrap().unwrap();
    assert_eq!(joined.generation, 1);
    assert_eq!(g.synced(&new, 1), Some(Ok(Bytes::from("S"))));
    // Its old incarnation is fenced.
    let mut zombie = stat.clone();
    zombie.member_id = old.clone();
    assert_eq!(g.join(zombie, 2_001, fresh), Err(ClassicError::FencedInstance(old.clone())));
    assert_eq!(g.heartbeat(&old, 1, 2_001), Err(ClassicError::UnknownMember(old)));
    // Leaving by instance id.
    assert_eq!(g.leave_instance("pod-1", 2_002), Ok(()));
    assert!(!g.members.contains_key(&new));
    assert_eq!(g.state, State::PreparingRebalance);
}
