//! The `silt` binary against an in-process broker on port 0: the CLI.md contract (commands,
//! JSON shapes, exit codes, the error line) and end-to-end produce/consume through the client.

mod common;

use std::process::{Command, Output, Stdio};

use common::{TestBroker, json, stderr, stdout};

#[test]
fn topic_commands_follow_the_contract() {
    let b = TestBroker::start();
    let o = b.silt(&["topic", "create", "orders", "-p", "3", "-c", "retention.ms=60000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt(&["topic", "create", "orders"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), "error: topic orders already exists (TOPIC_ALREADY_EXISTS)");
    assert_eq!(b.silt(&["topic", "create", "x", "-c", "novalue"]).status.code(), Some(2));
    assert_eq!(b.silt(&["topic", "frobnicate"]).status.code(), Some(2));
    // Idempotence needs acks=all: refused at configuration time, nothing sent.
    let o = b.silt_stdin(&["produce", "orders", "--acks", "1", "--idempotence", "true"], "x\n");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("idempotence needs acks=all"), "{}", stderr(&o));

    let list = json(&b.silt(&["-o", "json", "topic", "list"]));
    assert_eq!(
        list,
        serde_json::json!([{"name": "orders", "partitions": 3, "replication_factor": 1}])
    );
    let d = json(&b.silt(&["-o", "json", "topic", "describe", "orders"]));
    assert_eq!(d["name"], "orders");
    assert_eq!(d["config"]["retention.ms"], "60000");
    let p0 = &d["partitions"][0];
    for key in [
        "partition",
        "leader",
        "leader_epoch",
        "replicas",
        "isr",
        "log_start_offset",
        "high_watermark",
    ] {
        assert!(!p0[key].is_null(), "describe has {key}");
    }
    assert!(b.silt(&["topic", "alter", "orders", "-c", "retention.ms="]).status.success());
    let d = json(&b.silt(&["-o", "json", "topic", "describe", "orders"]));
    assert_eq!(d["config"]["retention.ms"], "604800000");
    let o = b.silt(&["topic", "describe", "missing"]);
    assert_eq!((o.status.code(), stderr(&o).trim().ends_with("(UNKNOWN_TOPIC)")), (Some(1), true));
    assert!(b.silt(&["topic", "delete", "orders"]).status.success());
    assert_eq!(json(&b.silt(&["-o", "json", "topic", "list"])), serde_json::json!([]));

    let c = json(&b.silt(&["-o", "json", "cluster", "info"]));
    assert_eq!(c["brokers"][0]["address"], b.addr.as_str());
    assert_eq!(c["brokers"][0]["alive"], true);
    assert!(c["controller"].is_u64() && c["raft_term"].is_u64());
}

#[test]
fn produce_and_consume_round_trip_with_keys_formats_and_replay() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "events", "-p", "4"]).status.success());
    let input: String = (0..40).map(|i| format!("user{}|value-{i}\n", i % 5)).collect();
    let o = b.silt_stdin(&["produce", "events", "--key-separator", "|"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("produced 40 records"));

    let o = b.silt(&["consume", "events", "--from-beginning", "-n", "40", "-f", "%p %o %k %v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 40);
    // Keyed partitioning is stable and Kafka-compatible: every key on murmur2's partition.
    for l in &lines {
        let parts: Vec<&str> = l.split(' ').collect();
        let expected = silt_core::partitioner::partition_for_key(parts[2].as_bytes(), 4);
        assert_eq!(parts[0], expected.to_string(), "{l}");
    }
    // Per key, the values come back in the order sent.
    for k in 0..5 {
        let vals: Vec<u32> = lines
            .iter()
            .filter(|l| l.split(' ').nth(2) == Some(&format!("user{k}")))
            .map(|l| l.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        assert!(vals.windows(2).all(|w| w[0] < w[1]), "{vals:?}");
        assert_eq!(vals.len(), 8);
    }
    // Replay one partition from an offset; stop after a quiet timeout.
    let p = lines[0].split(' ').next().unwrap().to_string();
    let o = b.silt(&[
        "consume",
        "events",
        "--partition",
        &p,
        "--offset",
        "1",
        "--timeout-ms",
        "300",
        "-f",
        "%o",
    ]);
    assert!(o.status.success());
    let offsets: Vec<i64> = stdout(&o).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(offsets.first(), Some(&1));
    // From a timestamp in the future: nothing, and a clean exit after the timeout.
    let o =
        b.silt(&["consume", "events", "--from-timestamp", "99999999999999", "--timeout-ms", "300"]);
    assert!(o.status.success());
    assert!(stdout(&o).is_empty());
    // Default start is latest: nothing old is printed.
    let o = b.silt(&["consume", "events", "--timeout-ms", "300"]);
    assert!(stdout(&o).is_empty());
}

#[test]
fn compressed_produce_round_trips_and_bad_levels_are_usage_errors() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "zipped"]).status.success());
    let input: String = (0..30).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let o = b.silt_stdin(&["produce", "zipped", "--compression", codec], &input);
        assert!(o.status.success(), "{codec}: {}", stderr(&o));
    }
    let o = b.silt_stdin(
        &["produce", "zipped", "--compression", "zstd", "--compression-level", "-3"],
        &input,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt(&["consume", "zipped", "--from-beginning", "-n", "150", "-f", "%o %v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 150);
    assert_eq!(lines[31], "31 {\"n\":1}");
    let o = b.silt_stdin(
        &["produce", "zipped", "--compression", "gzip", "--compression-level", "12"],
        "x\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("outside 1-9"), "{}", stderr(&o));
    let o = b.silt(&[
        "-o",
        "json",
        "bench",
        "produce",
        "--topic",
        "zipped",
        "--records",
        "500",
        "--record-size",
        "300",
        "--payload",
        "json",
        "--compression",
        "zstd",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["records"], 500);
}

#[test]
fn groups_consume_commit_describe_reset_and_delete() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "work", "-p", "2"]).status.success());
    let o = b.silt_stdin(&["produce", "work", "--key-separator", ":"], "a:1\nb:2\nc:3\nd:4\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = |o: &Output| -> Vec<String> { stdout(o).lines().map(str::to_string).collect() };
    // Two runs of the same group: the second resumes where the first committed.
    let first = b.silt(&["consume", "work", "--group", "cg", "-n", "3"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = b.silt(&["consume", "work", "--group", "cg", "--timeout-ms", "1500"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let mut all = lines(&first);
    all.extend(lines(&second));
    all.sort();
    assert_eq!(all, ["1", "2", "3", "4"], "every record once across the two runs");
    assert_eq!(lines(&first).len(), 3);

    let d = json(&b.silt(&["-o", "json", "group", "describe", "cg"]));
    assert_eq!((d["group"].as_str(), d["state"].as_str()), (Some("cg"), Some("empty")));
    assert_eq!(d["members"], serde_json::json!([]));
    let offsets = d["offsets"].as_array().unwrap();
    let committed: i64 = offsets.iter().map(|o| o["committed"].as_i64().unwrap()).sum();
    assert_eq!(committed, 4, "{d}");
    for o in offsets {
        assert_eq!(o["lag"], 0, "{d}");
        assert_eq!(o["high_watermark"], o["committed"], "{d}");
        assert_eq!(o["topic"], "work");
    }
    let list = json(&b.silt(&["-o", "json", "group", "list"]));
    assert_eq!(list[0]["group"], "cg", "{list}");
    // Internal topics stay out of the topic list.
    assert_eq!(json(&b.silt(&["-o", "json", "topic", "list"]))[0]["name"], "work");
    assert_eq!(json(&b.silt(&["-o", "json", "topic", "list"])).as_array().unwrap().len(), 1);

    // Reset to the beginning: the group reads everything again.
    assert!(
        b.silt(&["group", "reset-offsets", "cg", "--topic", "work", "--to-earliest"])
            .status
            .success()
    );
    let again = b.silt(&["consume", "work", "--group", "cg", "--timeout-ms", "1500"]);
    assert_eq!(lines(&again).len(), 4, "{}", stderr(&again));
    // Where to is required; errors are one line with the code.
    assert_eq!(b.silt(&["group", "reset-offsets", "cg", "--topic", "work"]).status.code(), Some(2));
    assert!(b.silt(&["group", "delete", "cg"]).status.success());
    let gone = b.silt(&["group", "describe", "cg"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).ends_with("(GROUP_ID_NOT_FOUND)\n"), "{}", stderr(&gone));
    let nope = b.silt(&["consume", "nope", "--group", "cg", "-n", "1"]);
    assert_eq!(nope.status.code(), Some(1));
    assert!(stderr(&nope).ends_with("(UNKNOWN_TOPIC)\n"), "{}", stderr(&nope));
}

#[test]
fn failures_exit_1_with_one_error_line() {
    let b = TestBroker::start();
    let o = b.silt_stdin(&["produce", "nope"], "x\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).lines().any(|l| l.starts_with("error: ") && l.ends_with("(UNKNOWN_TOPIC)")),
        "{}",
        stderr(&o)
    );
    assert!(b.silt(&["topic", "create", "strict", "-c", "min.insync.replicas=2"]).status.success());
    let o = b.silt_stdin(&["produce", "strict", "--acks", "all"], "x\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("(NOT_ENOUGH_REPLICAS)"), "{}", stderr(&o));
    let o = b.silt_stdin(&["produce", "strict", "--acks", "1"], "x\n");
    assert!(o.status.success(), "acks=1 does not need the ISR: {}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["-b", "127.0.0.1:1", "--connect-timeout-ms", "300", "topic", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn bench_reports_the_json_fields_of_the_contract() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "bench", "-p", "2"]).status.success());
    let o = b.silt(&[
        "-o",
        "json",
        "bench",
        "produce",
        "--topic",
        "bench",
        "--records",
        "2000",
        "--record-size",
        "100",
        "--producers",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["records"], 2000);
    assert_eq!(j["bytes"], 200_000);
    for key in ["seconds", "records_per_sec", "mb_per_sec"] {
        assert!(j[key].as_f64().unwrap() > 0.0, "{key}");
    }
    for q in ["p50", "p99", "p999", "max"] {
        assert!(j["latency_ms"][q].as_f64().unwrap() > 0.0, "{q}");
    }
    let o = b.silt(&["-o", "json", "bench", "consume", "--topic", "bench", "--records", "2000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["records"], 2000);
}

#[test]
fn silt_dev_runs_a_local_cluster_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    // A free port for broker 1's gRPC (its health port is the next one).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["dev", "--brokers", "1", "--base-port", &port.to_string(), "--kafka-base-port", "0"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(b) = line.strip_prefix("bootstrap: ") {
                let _ = tx.send(b.to_string());
            }
        }
    });
    let bootstrap =
        rx.recv_timeout(std::time::Duration::from_secs(60)).expect("silt dev prints its bootstrap");
    let info = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["-b", &bootstrap, "-o", "json", "cluster", "info"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["brokers"][0]["alive"], true);
    assert_eq!(v["controller"], 1);
    assert!(
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "silt dev did not stop on Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
}
