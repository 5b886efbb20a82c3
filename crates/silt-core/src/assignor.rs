//! Server-side consumer-group assignment (ARCHITECTURE §2.5), pure logic: the target assignment
//! of partitions to members by the range, round-robin or sticky assignor, and the cooperative
//! step that moves a group towards its target without any partition ever owned by two members.
//!
//! Members and topics are kept in sorted maps so every coordinator computes the same answer.

use std::collections::{BTreeMap, BTreeSet};

/// One partition of one topic.
pub type TopicPartition = (String, u32);

/// Partitions per member.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// The assignors a group may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions to the members subscribed to it.
    Range,
    /// All subscribed partitions dealt out one by one over the members subscribed to each.
    RoundRobin,
    /// Balanced like round-robin, keeping every partition where it is when balance allows.
    #[default]
    Sticky,
}

impl std::str::FromStr for Assignor {
    type Err = String;
    fn from_str(s: &str) -> Result<Assignor, String> {
        match s {
            "range" => Ok(Assignor::Range),
            "roundrobin" | "round-robin" => Ok(Assignor::RoundRobin),
            "sticky" => Ok(Assignor::Sticky),
            other => Err(format!("unknown assignor {other:?} (range, roundrobin, sticky)")),
        }
    }
}

/// What the assignors see of a group.
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    /// Member id -> subscribed topics.
    pub subscriptions: BTreeMap<String, BTreeSet<String>>,
    /// Topic -> partition count (topics that do not exist are absent).
    pub partitions: BTreeMap<String, u32>,
    /// The current target (the sticky assignor keeps what it can of it).
    pub previous: Assignment,
}

impl GroupSpec {
    fn subscribers(&self, topic: &str) -> Vec<&String> {
        self.subscriptions.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect()
    }

    fn empty_assignment(&self) -> Assignment {
        self.subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect()
    }
}

/// The target assignment: every partition of every subscribed, existing topic to exactly one
/// member subscribed to it; every member present (possibly with nothing).
pub fn assign(assignor: Assignor, spec: &GroupSpec) -> Assignment {
    match assignor {
        Assignor::Range => range(spec),
        Assignor::RoundRobin => round_robin(spec),
        Assignor::Sticky => sticky(spec),
    }
}

fn range(spec: &GroupSpec) -> Assignment {
    let mut out = spec.empty_assignment();
    for (topic, &n) in &spec.partitions {
        let members = spec.subscribers(topic);
        if members.is_empty() {
            continue;
        }
        let per = n as usize / members.len();
        let extra = n as usize % members.len();
        let mut next = 0u32;
        for (i, m) in members.iter().enumerate() {
            let count = per + usize::from(i < extra);
            let set = out.get_mut(*m).expect("invariant: every member has an entry");
            for _ in 0..count {
                set.insert((topic.clone(), next));
                next += 1;
            }
        }
    }
    out
}

/// Every subscribed partition, in (topic, partition) order.
fn all_partitions(spec: &GroupSpec) -> Vec<TopicPartition> {
    spec.partitions
        .iter()
        .filter(|(t, _)| !spec.subscribers(t).is_empty())
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect()
}

fn round_robin(spec: &GroupSpec) -> Assignment {
    let mut out = spec.empty_assignment();
    let members: Vec<&String> = spec.subscriptions.keys().collect();
    let mut cursor = 0usize;
    for tp in all_partitions(spec) {
        // The next member (cyclically) subscribed to this topic.
        for _ in 0..members.len() {
            let m = members[cursor % members.len()];
            cursor += 1;
            if spec.subscriptions[m].contains(&tp.0) {
                out.get_mut(m).expect("invariant: every member has an entry").insert(tp);
                break;
            }
        }
    }
    out
}

fn sticky(spec: &GroupSpec) -> Assignment {
    let mut out = spec.empty_assignment();
    let partitions = all_partitions(spec);
    let wanted: BTreeSet<&TopicPartition> = partitions.iter().collect();
    // Keep what each member had, if it still may have it.
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    for (m, had) in &spec.previous {
        let Some(subs) = spec.subscriptions.get(m) else { continue };
        for tp in had {
            if wanted.contains(tp) && subs.contains(&tp.0) && taken.insert(tp.clone()) {
                out.get_mut(m).expect("invariant: member present").insert(tp.clone());
            }
        }
    }
    // Hand out the rest, each to the least-loaded member subscribed to its topic.
    for tp in &partitions {
        if taken.contains(tp) {
            continue;
        }
        if let Some(m) = least_loaded(&out, spec, &tp.0) {
            out.get_mut(&m).expect("invariant: member present").insert(tp.clone());
            taken.insert(tp.clone());
        }
    }
    // Rebalance: move partitions from the most to the least loaded member while that narrows the
    // gap by more than one (bounded: each move lowers the sum of squares of the loads).
    for _ in 0..partitions.len() * partitions.len().max(1) {
        let mut moved = false;
        let by_load: Vec<String> = {
            let mut v: Vec<(&String, usize)> = out.iter().map(|(m, s)| (m, s.len())).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            v.into_iter().map(|(m, _)| m.clone()).collect()
        };
        'outer: for from in &by_load {
            for to in by_load.iter().rev() {
                if out[from].len() <= out[to].len() + 1 {
                    continue;
                }
                let candidate = out[from]
                    .iter()
                    .rev()
                    .find(|tp| spec.subscriptions[to].contains(&tp.0))
                    .cloned();
                if let Some(tp) = candidate {
                    out.get_mut(from).expect("present").remove(&tp);
                    out.get_mut(to).expect("present").insert(tp);
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

fn least_loaded(out: &Assignment, spec: &GroupSpec, topic: &str) -> Option<String> {
    spec.subscribers(topic).into_iter().min_by_key(|m| (out[*m].len(), (*m).clone())).cloned()
}

/// The cooperative step: what each member may own now, given what members report owning and the
/// target. A member keeps what it owns that the target still gives it (revocations: the rest),
/// and receives a target partition only once no other member reports owning it. Applying the
/// step until members report their step as owned reaches the target, and no partition is ever
/// in two members' steps.
pub fn cooperative_step(owned: &Assignment, target: &Assignment) -> Assignment {
    let mut out: Assignment = target.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (m, want) in target {
        for tp in want {
            let held_elsewhere = owned.iter().any(|(o, set)| o != m && set.contains(tp));
            if !held_elsewhere {
                out.get_mut(m).expect("invariant: member present").insert(tp.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(members: &[(&str, &[&str])], topics: &[(&str, u32)]) -> GroupSpec {
        GroupSpec {
            subscriptions: members
                .iter()
                .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
                .collect(),
            partitions: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            previous: Assignment::new(),
        }
    }

    fn counts(a: &Assignment) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    /// Every subscribed partition exactly once, each to a member subscribed to its topic.
    fn check_complete(a: &Assignment, s: &GroupSpec) {
        let mut seen = BTreeSet::new();
        for (m, set) in a {
            for tp in set {
                assert!(s.subscriptions[m].contains(&tp.0), "{m} got {tp:?} unsubscribed");
                assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
            }
        }
        assert_eq!(seen.len(), all_partitions(s).len());
    }

    #[test]
    fn every_assignor_covers_each_partition_once() {
        let s =
            spec(&[("a", &["x", "y"]), ("b", &["x"]), ("c", &["x", "y"])], &[("x", 7), ("y", 4)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            check_complete(&assign(assignor, &s), &s);
        }
    }

    #[test]
    fn range_gives_consecutive_partitions_per_topic() {
        let s = spec(&[("a", &["x"]), ("b", &["x"]), ("c", &["x"])], &[("x", 12)]);
        let a = assign(Assignor::Range, &s);
        assert_eq!(counts(&a), [4, 4, 4]);
        assert!(a["a"].contains(&("x".into(), 0)) && a["a"].contains(&("x".into(), 3)));
        let s = spec(&[("a", &["x"]), ("b", &["x"])], &[("x", 5)]);
        assert_eq!(counts(&assign(Assignor::Range, &s)), [3, 2]);
    }

    #[test]
    fn round_robin_and_sticky_balance_within_one() {
        let s = spec(
            &[("a", &["x", "y"]), ("b", &["x", "y"]), ("c", &["x", "y"])],
            &[("x", 5), ("y", 5)],
        );
        for assignor in [Assignor::RoundRobin, Assignor::Sticky] {
            let c = counts(&assign(assignor, &s));
            assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "{assignor:?}: {c:?}");
        }
    }

    #[test]
    fn sticky_moves_only_what_balance_needs_when_a_member_joins() {
        let mut s = spec(&[("a", &["x"]), ("b", &["x"])], &[("x", 12)]);
        let before = assign(Assignor::Sticky, &s);
        s.previous = before.clone();
        s.subscriptions.insert("c".into(), ["x".to_string()].into());
        let after = assign(Assignor::Sticky, &s);
        check_complete(&after, &s);
        assert_eq!(counts(&after), [4, 4, 4]);
        let kept: usize =
            ["a", "b"].iter().map(|m| after[*m].intersection(&before[*m]).count()).sum();
        assert_eq!(kept, 8, "only the 4 partitions c needs moved");
        // A member leaving: its partitions spread, nobody else loses any.
        s.previous = after.clone();
        s.subscriptions.remove("a");
        let later = assign(Assignor::Sticky, &s);
        check_complete(&later, &s);
        assert!(after["b"].is_subset(&later["b"]) && after["c"].is_subset(&later["c"]));
    }

    #[test]
    fn cooperative_steps_never_give_a_partition_to_two_members() {
        let mut s = spec(&[("a", &["x"]), ("b", &["x"])], &[("x", 12)]);
        let mut owned = assign(Assignor::Sticky, &s);
        s.previous = owned.clone();
        s.subscriptions.insert("c".into(), ["x".to_string()].into());
        owned.insert("c".into(), BTreeSet::new());
        let target = assign(Assignor::Sticky, &s);
        // Members confirm each step (revoking first) until the target is reached.
        for round in 0..5 {
            let step = cooperative_step(&owned, &target);
            let mut seen = BTreeSet::new();
            for set in step.values() {
                for tp in set {
                    assert!(seen.insert(tp.clone()), "round {round}: {tp:?} in two members' steps");
                }
            }
            // No step hands out a partition another member still owns.
            for (m, set) in &step {
                for tp in set {
                    assert!(owned.iter().all(|(o, s)| o == m || !s.contains(tp)));
                }
            }
            owned = step;
            if owned == target {
                assert!(round >= 1, "moving partitions takes a revoke round first");
                return;
            }
        }
        panic!("the target was not reached");
    }

    #[test]
    fn assignor_names_parse() {
        assert_eq!("sticky".parse::<Assignor>(), Ok(Assignor::Sticky));
        assert_eq!("roundrobin".parse::<Assignor>(), Ok(Assignor::RoundRobin));
        assert!("fair".parse::<Assignor>().is_err());
    }
}
