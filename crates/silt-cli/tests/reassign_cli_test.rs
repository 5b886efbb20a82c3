//! `silt topic alter --partitions`, `silt partition reassign|reassignments`,
//! `silt cluster elect-leaders` and `silt broker decommission|recommission` (issue 21) against
//! three in-process brokers (CLI.md's contract: names, output, exit codes).

mod common;

use common::{eventually, free_ports, json, start_cluster, stderr, stdout};

/// The replica lists of `topic`'s partitions, and which are still moving.
fn replicas(b: &common::TestBroker, topic: &str) -> Vec<(Vec<u64>, bool)> {
    let d = json(&b.silt(&["-o", "json", "topic", "describe", topic]));
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ids = p["replicas"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap());
            let moving = !p["adding_replicas"].as_array().unwrap().is_empty();
            (ids.collect(), moving)
        })
        .collect()
}

#[test]
fn topics_grow_partitions_move_leaders_balance_and_a_broker_is_decommissioned() {
    let ports = free_ports(3);
    let dirs = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let brokers = start_cluster(&ports, dirs);
    let b = &brokers[0];
    eventually(60, "three brokers alive", || {
        let o = b.silt(&["-o", "json", "cluster", "info"]);
        let alive = o.status.success().then(|| json(&o))?["brokers"]
            .as_array()?
            .iter()
            .filter(|x| x["alive"] == true)
            .count();
        (alive == 3).then_some(())
    });

    // Add partitions; fewer is refused.
    assert!(b.silt(&["topic", "create", "t", "-p", "1", "-r", "1"]).status.success());
    let o = b.silt(&["topic", "alter", "t", "--partitions", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "altered topic t: 3 partitions");
    assert_eq!(replicas(b, "t").len(), 3);
    let o = b.silt(&["topic", "alter", "t", "--partitions", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(INVALID_PARTITIONS)"), "{}", stderr(&o));

    // One move, checked first with --dry-run (nothing changes), then made.
    let first = replicas(b, "t")[0].0[0];
    let other = (1..=3).find(|x| *x != first).unwrap();
    let target = format!("{other},{first}");
    let o = b.silt(&["partition", "reassign", "t", "0", "--replicas", &target, "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("t/0: would move to {target}"));
    assert_eq!(replicas(b, "t")[0].0, vec![first]);
    let o = b.silt(&["partition", "reassign", "t", "0", "--replicas", "9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("broker 9 is not registered"), "{}", stdout(&o));
    assert!(stderr(&o).trim().ends_with("(INVALID_REPLICA_ASSIGNMENT)"), "{}", stderr(&o));
    let o = b.silt(&["partition", "reassign", "t", "0", "--replicas", &target]);
    assert!(o.status.success(), "{}", stderr(&o));
    eventually(30, "t/0 moved", || {
        (replicas(b, "t")[0] == (vec![other, first], false)).then_some(())
    });

    // Many moves from a plan file (Kafka's format).
    let plan = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        plan.path(),
        r#"{"version": 1, "partitions": [
             {"topic": "t", "partition": 1, "replicas": [1, 2]},
             {"topic": "t", "partition": 2, "replicas": [2, 1]}]}"#,
    )
    .unwrap();
    let path = plan.path().to_str().unwrap();
    let o = b.silt(&["-o", "json", "partition", "reassign", "--plan", path]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["results"].as_array().unwrap().len(), 2);
    eventually(30, "the plan applied", || {
        let r = replicas(b, "t");
        (r[1] == (vec![1, 2], false) && r[2] == (vec![2, 1], false)).then_some(())
    });
    let o = b.silt(&["partition", "reassign", "--plan", "/nonexistent/plan.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // A throttled move of 3 MB is listed with the bytes its new replica lacks, then cancelled.
    assert!(b.silt(&["topic", "create", "big", "-p", "1", "-r", "1"]).status.success());
    let line = "x".repeat(1000);
    let input: String = (0..3000).map(|_| format!("{line}\n")).collect();
    assert!(b.silt_stdin(&["produce", "big"], &input).status.success());
    let owner = replicas(b, "big")[0].0[0];
    let newcomer = (1..=3).find(|x| *x != owner).unwrap();
    let target = format!("{owner},{newcomer}");
    let o = b.silt(&[
        "partition",
        "reassign",
        "big",
        "0",
        "--replicas",
        &target,
        "--throttle-bytes-per-sec",
        "100000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = json(&b.silt(&["-o", "json", "partition", "reassignments"]));
    let moves = listed["reassignments"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{listed}");
    assert_eq!(moves[0]["topic"], "big");
    assert_eq!(moves[0]["adding"], serde_json::json!([newcomer]));
    assert_eq!(moves[0]["throttle_bytes_per_sec"], 100000);
    let behind = moves[0]["progress"][0]["bytes_behind"].as_u64().unwrap();
    assert!(behind > 1_000_000, "a throttled new replica is far behind: {listed}");
    let text = stdout(&b.silt(&["partition", "reassignments"]));
    assert!(text.contains("big/0:") && text.contains("bytes behind"), "{text}");
    let o = b.silt(&["partition", "reassign", "big", "0", "--cancel"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "big/0: move cancelled");
    assert_eq!(replicas(b, "big")[0], (vec![owner], false));
    let o = b.silt(&["partition", "reassign", "big", "0", "--cancel"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(NO_REASSIGNMENT_IN_PROGRESS)"), "{}", stderr(&o));
    let text = stdout(&b.silt(&["partition", "reassignments"]));
    assert_eq!(text.trim(), "no reassignments in progress");

    // Preferred leader election: the moves kept their leaders where those stayed replicas, so
    // t/0 (now preferring `other`) and t/2 (preferring 2) are handed to their first replica.
    let o = b.silt(&["cluster", "elect-leaders", "--topic", "t"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains(&format!("t/0: leader {other}")), "{text}");
    let d = json(&b.silt(&["-o", "json", "topic", "describe", "t"]));
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["leader"], p["replicas"][0], "{d}");
    }
    let o = b.silt(&["cluster", "elect-leaders", "--topic", "t"]);
    assert!(stdout(&o).contains("elected 0 preferred leaders"), "{}", stdout(&o));
    let o = b.silt(&["cluster", "elect-leaders", "--topic", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(UNKNOWN_TOPIC)"), "{}", stderr(&o));

    // Decommission: refused while a replica has nowhere to go, then done and undone.
    assert!(b.silt(&["topic", "create", "full", "-p", "1", "-r", "3"]).status.success());
    let o = b.silt(&["broker", "decommission", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(INVALID_REPLICA_ASSIGNMENT)"), "{}", stderr(&o));
    assert!(b.silt(&["topic", "delete", "full"]).status.success());
    let o = b.silt(&["broker", "decommission", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).trim().ends_with("broker 3 holds no replicas; it can be stopped"),
        "{}",
        stdout(&o)
    );
    for t in ["t", "big"] {
        assert!(replicas(b, t).iter().all(|(r, _)| !r.contains(&3)), "{t}");
    }
    let info = json(&b.silt(&["-o", "json", "cluster", "info"]));
    let b3 = info["brokers"].as_array().unwrap().iter().find(|x| x["id"] == 3).unwrap().clone();
    assert_eq!(b3["decommissioning"], true, "{info}");
    let o = b.silt(&["partition", "reassign", "t", "0", "--replicas", "3"]);
    assert!(stderr(&o).trim().ends_with("(INVALID_REPLICA_ASSIGNMENT)"), "{}", stderr(&o));
    let o = b.silt(&["broker", "recommission", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "broker 3: recommissioned, 0 replica moves cancelled");
    let o = b.silt(&["broker", "decommission", "7"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown broker 7"), "{}", stderr(&o));
}
