//! The CLI as a Kafka user meets it in the first hour (issue 12): JSON records both ways, keys
//! and headers from flags, start positions, Ctrl-C and a closed stdout in a group, describe and
//! reset-offsets output, keyless spreading, and refused zero counts.

mod common;

use std::io::{BufRead, BufReader, Read};

use common::{TestBroker, eventually, interrupt, json, stderr, stdout, wait_exit};
use serde_json::Value;

fn json_lines(o: &std::process::Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn explicit_zero_counts_are_refused_and_change_nothing() {
    let b = TestBroker::start();
    let o = b.silt(&["topic", "create", "z", "-p", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(INVALID_PARTITIONS)"), "{}", stderr(&o));
    let o = b.silt(&["topic", "create", "z", "-r", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(INVALID_REPLICATION_FACTOR)"), "{}", stderr(&o));
    assert_eq!(json(&b.silt(&["-o", "json", "topic", "list"])), serde_json::json!([]));
    // A bootstrap address without a port is a usage error that says so.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["-b", "localhost", "topic", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("HOST:PORT"), "{}", stderr(&o));
}

#[test]
fn keyless_records_spread_over_every_partition() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "ev", "-p", "3"]).status.success());
    let input: String = (0..50_000).map(|i| format!("record-{i:06}\n")).collect();
    let o = b.silt_stdin(&["produce", "ev", "--acks", "1"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = json(&b.silt(&["-o", "json", "topic", "describe", "ev"]));
    let hws: Vec<i64> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .collect();
    assert_eq!(hws.iter().sum::<i64>(), 50_000, "{d}");
    assert!(hws.iter().all(|&n| n > 0), "every partition got records: {hws:?}");
}

#[test]
fn json_records_round_trip_with_keys_headers_and_binary_values() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "j", "-p", "1"]).status.success());
    // -k and -H apply to every line; a tab separator is written \t.
    let o = b.silt_stdin(
        &["produce", "j", "-k", "fixed", "-H", "trace=abc", "-H", "src=cli"],
        "v1\nv2\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt_stdin(&["produce", "j", "--key-separator", "\\t"], "tabbed\tv3\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let line = r#"{"key": null, "value": "/wCA", "value_encoding": "base64", "timestamp": 1764547200000, "headers": [{"key": "h", "value": "1"}]}"#;
    let o = b.silt_stdin(&["produce", "j", "--input", "json"], &format!("{line}\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt_stdin(&["produce", "j", "--input", "json"], "{\"value\": 5}\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("INVALID_RECORD"), "{}", stderr(&o));

    let o = b.silt(&["-o", "json", "consume", "j", "--from-beginning", "-n", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = json_lines(&o);
    assert_eq!(recs.len(), 4);
    assert_eq!((recs[0]["key"].as_str(), recs[0]["value"].as_str()), (Some("fixed"), Some("v1")));
    assert_eq!(
        recs[0]["headers"],
        serde_json::json!([{"key": "trace", "value": "abc"}, {"key": "src", "value": "cli"}])
    );
    assert_eq!((recs[2]["key"].as_str(), recs[2]["value"].as_str()), (Some("tabbed"), Some("v3")));
    let bin = &recs[3];
    assert_eq!(
        (bin["value"].as_str(), bin["value_encoding"].as_str()),
        (Some("/wCA"), Some("base64"))
    );
    assert!(bin["key"].is_null());
    assert_eq!(bin["timestamp"], 1_764_547_200_000i64);
    for key in ["topic", "partition", "offset", "timestamp", "key", "value", "headers"] {
        assert!(bin.get(key).is_some(), "{key} in {bin}");
    }
    // What consume printed, produce reads back as the same records.
    let copy: String = recs.iter().map(|r| format!("{r}\n")).collect();
    assert!(b.silt(&["topic", "create", "j2"]).status.success());
    assert!(b.silt_stdin(&["produce", "j2", "--input", "json"], &copy).status.success());
    let again =
        json_lines(&b.silt(&["-o", "json", "consume", "j2", "--from-beginning", "-n", "4"]));
    for (x, y) in recs.iter().zip(&again) {
        for key in ["key", "value", "value_encoding", "headers", "timestamp"] {
            assert_eq!(x.get(key), y.get(key), "{key}");
        }
    }
}

#[test]
fn start_positions_and_exit_at_end() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "pos", "-p", "2"]).status.success());
    let input: String = (0..20).map(|i| format!("{}:{i}\n", i % 2)).collect();
    assert!(b.silt_stdin(&["produce", "pos", "--key-separator", ":"], &input).status.success());
    let count = |args: &[&str]| {
        let mut all = vec!["consume", "pos", "-e", "-f", "%p/%o"];
        all.extend_from_slice(args);
        let o = b.silt(&all);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o).lines().count()
    };
    // -e stops at the ends as of the start: no timeout needed.
    assert_eq!(count(&["--offset", "earliest"]), 20);
    assert_eq!(count(&["--from-beginning"]), 20);
    assert_eq!(count(&["--offset", "latest"]), 0);
    assert_eq!(count(&["--offset", "-3"]), 6, "3 before the end of each partition");
    assert_eq!(count(&["--offset", "-100"]), 20, "not before the log start");
    assert_eq!(count(&["--from-timestamp", "2001-09-09T01:46:40Z"]), 20);
    assert_eq!(count(&["--from-timestamp", "2999-01-01T00:00:00+02:00"]), 0);
    let o = b.silt(&["consume", "pos", "--offset", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    let o = b.silt(&["consume", "pos", "--from-timestamp", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_ends_consume_quietly_also_in_a_group() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "pipe", "-p", "1"]).status.success());
    // More than a pipe buffer holds, so the writer meets the closed pipe.
    let input: String = (0..50_000).map(|i| format!("line-{i}\n")).collect();
    assert!(b.silt_stdin(&["produce", "pipe"], &input).status.success());
    for group in [None, Some("piped")] {
        let mut args = vec!["consume", "pipe", "--from-beginning"];
        if let Some(g) = group {
            args.extend(["--group", g]);
        }
        let mut child = b.spawn(&args);
        // Read one line, then close the pipe, as `| head -1` does.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert_eq!(first, "line-0\n");
        drop(out);
        let status = wait_exit(&mut child, 30);
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "{group:?}: exit {status}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    }
    // The group member left at once: no member is left waiting out its session.
    let d = json(&b.silt(&["-o", "json", "group", "describe", "piped"]));
    assert_eq!(d["members"], serde_json::json!([]), "{d}");
}

#[test]
fn interrupting_a_group_consumer_commits_and_leaves_at_once() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "q", "-p", "3"]).status.success());
    let input: String = (0..30).map(|i| format!("k{i}:{i}\n")).collect();
    assert!(b.silt_stdin(&["produce", "q", "--key-separator", ":"], &input).status.success());
    let mut member = b.spawn(&["consume", "q", "--group", "g1", "-o", "json"]);
    // While it runs, describe shows every subscribed partition with its owner.
    let d = eventually(20, "a stable group with the member owning all 3 partitions", || {
        let o = b.silt(&["-o", "json", "group", "describe", "g1"]);
        if !o.status.success() {
            return None; // the member has not joined yet
        }
        let d = json(&o);
        let offsets = d["offsets"].as_array()?;
        let owned = offsets.iter().filter(|o| o["owner"].is_string()).count();
        (owned == 3 && offsets.iter().all(|o| o["committed"].is_i64())).then_some(d)
    });
    let member_id = d["members"][0]["member_id"].clone();
    for o in d["offsets"].as_array().unwrap() {
        assert_eq!(o["owner"], member_id, "{d}");
        assert_eq!(o["lag"], 0, "everything printed was committed: {d}");
    }
    let text = stdout(&b.silt(&["group", "describe", "g1"]));
    assert!(text.contains("OWNER"), "{text}");
    interrupt(&member);
    let status = wait_exit(&mut member, 10);
    assert!(status.success(), "Ctrl-C exits 0");
    let printed = {
        let mut s = String::new();
        member.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        s.lines().count()
    };
    assert_eq!(printed, 30);
    // Left at once, not after the session timeout.
    let d = json(&b.silt(&["-o", "json", "group", "describe", "g1"]));
    assert_eq!((d["state"].as_str(), d["members"].clone()), (Some("empty"), serde_json::json!([])));
}

#[test]
fn describe_shows_uncommitted_partitions_and_commits_past_a_recreated_topic() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "re", "-p", "2"]).status.success());
    let input: String = (0..40).map(|i| format!("{i}\n")).collect();
    assert!(b.silt_stdin(&["produce", "re", "--partition", "0"], &input).status.success());
    let o = b.silt(&["consume", "re", "--group", "old", "-e"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Recreated with fewer records: the commit (40) is past the new end (5).
    assert!(b.silt(&["topic", "delete", "re"]).status.success());
    assert!(b.silt(&["topic", "create", "re", "-p", "2"]).status.success());
    let five: String = (0..5).map(|i| format!("{i}\n")).collect();
    assert!(b.silt_stdin(&["produce", "re", "--partition", "0"], &five).status.success());
    let d = json(&b.silt(&["-o", "json", "group", "describe", "old"]));
    let p0 = d["offsets"].as_array().unwrap().iter().find(|o| o["partition"] == 0).unwrap().clone();
    assert_eq!((p0["committed"].as_i64(), p0["high_watermark"].as_i64()), (Some(40), Some(5)));
    assert_eq!(p0["lag"], -35, "a commit past the end is not shown as lag 0: {d}");
    let text = stdout(&b.silt(&["group", "describe", "old"]));
    assert!(text.contains("past the end"), "{text}");
}

#[test]
fn reset_offsets_dry_run_shift_by_and_datetime() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "r", "-p", "1"]).status.success());
    let input: String = (0..10).map(|i| format!("{i}\n")).collect();
    assert!(b.silt_stdin(&["produce", "r"], &input).status.success());
    assert!(b.silt(&["consume", "r", "--group", "rg", "-e"]).status.success());
    let committed = |b: &TestBroker| {
        json(&b.silt(&["-o", "json", "group", "describe", "rg"]))["offsets"][0]["committed"]
            .as_i64()
    };
    assert_eq!(committed(&b), Some(10));
    let o =
        b.silt(&["group", "reset-offsets", "rg", "--topic", "r", "--shift-by", "-4", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("CURRENT") && text.contains("NEW") && text.contains("dry run"), "{text}");
    assert!(
        text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["r", "0", "10", "6"]),
        "{text}"
    );
    assert_eq!(committed(&b), Some(10), "a dry run changes nothing");
    let o =
        b.silt(&["-o", "json", "group", "reset-offsets", "rg", "--topic", "r", "--shift-by", "-4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&o)["offsets"][0],
        serde_json::json!({"partition": 0, "previous": 10, "offset": 6})
    );
    assert_eq!(committed(&b), Some(6));
    let o = b.silt(&["group", "reset-offsets", "rg", "--topic", "r", "--shift-by", "-100"]);
    assert!(o.status.success());
    assert_eq!(committed(&b), Some(0), "kept within the log");
    let o = b.silt(&[
        "group",
        "reset-offsets",
        "rg",
        "--topic",
        "r",
        "--to-datetime",
        "2999-01-01T00:00:00Z",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(committed(&b), Some(10), "a time after every record: the end");
    let o =
        b.silt(&["group", "reset-offsets", "rg", "--topic", "r", "--to-datetime", "not-a-date"]);
    assert_eq!(o.status.code(), Some(2));
}
