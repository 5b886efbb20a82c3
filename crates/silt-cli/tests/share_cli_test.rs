//! `silt consume --share-group` (print then ACCEPT, `--reject-if` into the dead-letter topic),
//! `silt share-group list|describe|delete`, `silt bench consume --share-group --members` and
//! `silt rpc call|serve` against an in-process broker (CLI.md's contract).

mod common;

use common::{TestBroker, eventually, interrupt, json, stderr, stdout, wait_exit};

#[test]
fn share_group_consume_reject_describe_bench_and_delete() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "jobs.dlq", "-p", "1"]).status.success());
    let o =
        b.silt(&["topic", "create", "jobs", "-p", "2", "-c", "share.dead.letter.topic=jobs.dlq"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input: String = (0..40).map(|i| format!("job-{i}\n")).collect();
    assert!(b.silt_stdin(&["produce", "jobs"], &input).status.success());

    // Two consumers of one share group split the records; jobs ending in 7 are rejected.
    let args = [
        "consume",
        "jobs",
        "--share-group",
        "w",
        "--from-beginning",
        "--timeout-ms",
        "2500",
        "--reject-if",
        "7$",
    ];
    let (c1, c2) = (b.spawn(&args), b.spawn(&args));
    let (o1, o2) = (c1.wait_with_output().unwrap(), c2.wait_with_output().unwrap());
    assert!(o1.status.success() && o2.status.success(), "{} {}", stderr(&o1), stderr(&o2));
    let mut got: Vec<String> =
        stdout(&o1).lines().chain(stdout(&o2).lines()).map(String::from).collect();
    got.sort();
    let mut want: Vec<String> =
        (0..40).filter(|i| i % 10 != 7).map(|i| format!("job-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "every record printed once across both members, rejected ones not");
    assert!(stderr(&o1).contains("rejected") || stderr(&o2).contains("rejected"));

    let d = json(&b.silt(&["-o", "json", "share-group", "describe", "w"]));
    assert_eq!(d["group"], "w");
    assert_eq!(d["state"], "empty");
    assert_eq!(d["archived"], 4);
    assert_eq!(d["dead_lettered"], 4);
    let done: i64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(done, 40, "{d}");
    let text = stdout(&b.silt(&["share-group", "describe", "w"]));
    assert!(text.contains("START (SPSO)") && text.contains("dead-lettered"), "{text}");
    let list = json(&b.silt(&["-o", "json", "share-group", "list"]));
    assert!(list.as_array().unwrap().iter().any(|g| g["group"] == "w"), "{list}");

    // The dead letters, with where they came from.
    let o = b.silt(&["consume", "jobs.dlq", "--from-beginning", "-e", "-f", "%v %h"]);
    let letters = stdout(&o);
    assert_eq!(letters.lines().count(), 4, "{letters}");
    assert!(letters.contains("silt.dlq.reason=rejected"), "{letters}");
    assert!(letters.contains("silt.dlq.topic=jobs"), "{letters}");

    // A share group with a live member cannot be deleted; an unknown one is an error.
    let o = b.silt(&["share-group", "delete", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(GROUP_ID_NOT_FOUND)"), "{}", stderr(&o));
    assert!(b.silt(&["share-group", "delete", "w"]).status.success());
    // --reject-if needs --share-group; --share-group and --group exclude each other.
    assert_eq!(b.silt(&["consume", "jobs", "--reject-if", "x"]).status.code(), Some(2));
    assert_eq!(
        b.silt(&["consume", "jobs", "--share-group", "a", "--group", "b"]).status.code(),
        Some(2)
    );
    let o = b.silt(&["consume", "jobs", "--share-group", "a", "--reject-if", "("]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let o = b.silt(&[
        "-o",
        "json",
        "bench",
        "consume",
        "--topic",
        "jobs",
        "--records",
        "40",
        "--share-group",
        "bench",
        "--members",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["records"], 40);
    let per_member: Vec<u64> =
        r["per_member"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert_eq!((per_member.len(), per_member.iter().sum::<u64>()), (3, 40), "{r}");
}

/// A child killed when the test ends, also when it fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rpc_call_and_serve() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "upper", "-p", "2"]).status.success());
    let mut server = Reaped(b.spawn(&["rpc", "serve", "upper", "--exec", "tr a-z A-Z"]));
    // The server has joined once a call is answered (the group starts at the topic's end).
    let reply = eventually(30, "a reply", || {
        let o = b.silt(&["rpc", "call", "upper", "hello", "--timeout-ms", "2000"]);
        o.status.success().then(|| stdout(&o))
    });
    assert_eq!(reply.trim(), "HELLO");
    let o =
        b.silt_stdin(&["-o", "json", "rpc", "call", "upper", "--timeout-ms", "5000"], "from stdin");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["reply"], "FROM STDIN");
    interrupt(&server.0);
    assert!(wait_exit(&mut server.0, 20).success());
    // With no server, a call times out: exit 1, REQUEST_TIMED_OUT.
    let o = b.silt(&["rpc", "call", "upper", "anyone?", "--timeout-ms", "500"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(REQUEST_TIMED_OUT)"), "{}", stderr(&o));
}
