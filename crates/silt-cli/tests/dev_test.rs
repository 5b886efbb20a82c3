//! `silt dev` with three brokers, as the README's newcomer runs it: replicated topics by
//! default, describe with every partition's offsets whichever broker answers, a data dir of
//! another size refused, and `bench rebalance` with its defaults.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, interrupt, stderr, wait_exit};

/// A base port whose brokers' gRPC and health ports (PORT+10n, PORT+10n+1) are all free now.
fn free_base_port(brokers: u16) -> u16 {
    eventually(10, "free ports", || {
        let base = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        if base > 65_000 {
            return None;
        }
        let held: Vec<_> = (0..brokers)
            .flat_map(|n| [base + 10 * n, base + 10 * n + 1, base + 5 + n])
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect();
        held.iter().all(Result::is_ok).then_some(base)
    })
}

/// Starts `silt <args> --data-dir DIR` and waits (bounded) for the first stdout line that
/// starts with `prefix`; returns the process and the rest of that line.
fn spawn_dev(args: &[&str], dir: &std::path::Path, prefix: &'static str) -> (Child, String) {
    let mut dev = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(line) => (dev, line),
        Err(e) => {
            let _ = dev.kill();
            panic!("silt {args:?} printed no {prefix:?} line: {e}");
        }
    }
}

fn silt(bootstrap: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_silt")).arg("-b").arg(bootstrap).args(args).output().unwrap()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn a_three_broker_dev_cluster_replicates_by_default_and_describes_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(3);
    let kafka_base = (base + 5).to_string();
    let dev_args = ["dev", "--base-port", &base.to_string(), "--kafka-base-port", &kafka_base];
    let (mut dev, kafka) = spawn_dev(&dev_args, dir.path(), "kafka: ");
    // Every broker has a Kafka listener on its own port.
    let kafka: Vec<&str> = kafka.split_whitespace().next().unwrap().split(',').collect();
    assert_eq!(kafka.len(), 3, "{kafka:?}");
    for k in &kafka {
        assert!(std::net::TcpStream::connect(k).is_ok(), "{k} accepts Kafka clients");
    }
    let bootstrap =
        (0..3).map(|n| format!("127.0.0.1:{}", base + 10 * n)).collect::<Vec<_>>().join(",");
    let first = bootstrap.split(',').next().unwrap().to_string();

    tracing_free_phase("--- default topics have 3 replicas and min.insync.replicas 2");
    let o = silt(&bootstrap, &["topic", "create", "dflt", "-p", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = json(&silt(&bootstrap, &["-o", "json", "topic", "describe", "dflt"]));
    assert_eq!(d["replication_factor"], 3, "{d}");
    assert_eq!(d["config"]["min.insync.replicas"], "2", "{d}");

    tracing_free_phase(
        "--- an RF 1 topic: describe from one broker shows every partition's offsets",
    );
    let o = silt(&bootstrap, &["topic", "create", "one", "-p", "3", "-r", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = json(&silt(&bootstrap, &["-o", "json", "topic", "describe", "one"]));
    assert_eq!(d["config"]["min.insync.replicas"], "1", "capped at the replica count: {d}");
    let input: String = (0..3).flat_map(|p| (0..10).map(move |i| format!("{i}-{p}\n"))).collect();
    for p in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_silt"))
            .args(["-b", &bootstrap, "produce", "one", "--partition", &p.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input[..].as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let d = json(&silt(&first, &["-o", "json", "topic", "describe", "one"]));
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["log_start_offset"], 0, "{d}");
        assert_eq!(p["high_watermark"], 30, "{d}");
    }
    let text =
        String::from_utf8_lossy(&silt(&first, &["topic", "describe", "one"]).stdout).into_owned();
    let rows: Vec<&str> = text.lines().skip_while(|l| !l.contains("PARTITION")).skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for row in rows {
        let last_two: Vec<&str> = row.split_whitespace().rev().take(2).collect();
        assert_eq!(last_two, ["30", "0"], "log start 0, high watermark 30: {text}");
    }

    tracing_free_phase("--- bench rebalance sizes its members to the partitions and cleans up");
    let o =
        silt(&bootstrap, &["-o", "json", "bench", "rebalance", "--topic", "dflt", "--rounds", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!((j["members"].as_u64(), j["partitions"].as_u64()), (Some(2), Some(3)), "{j}");
    let groups = json(&silt(&bootstrap, &["-o", "json", "group", "list"]));
    assert_eq!(groups, serde_json::json!([]), "the bench group is deleted");
    let o = silt(&bootstrap, &["bench", "rebalance", "--topic", "dflt", "--members", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("without a partition"), "{}", stderr(&o));

    interrupt(&dev);
    assert!(wait_exit(&mut dev, 60).success());

    tracing_free_phase("--- the same data dir with another broker count is refused at once");
    for n in ["1", "4"] {
        let o = Command::new(env!("CARGO_BIN_EXE_silt"))
            .args(["dev", "--brokers", n, "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "--brokers {n}");
        assert!(stderr(&o).contains("--brokers 3"), "{}", stderr(&o));
    }
    assert!(!dir.path().join("broker-4").exists());
}

fn tracing_free_phase(what: &str) {
    eprintln!("{what}");
}

/// `silt dev --secure` (issue 17): certificates under DIR/tls, mTLS on the client port, and a
/// printed command that works as is; a plaintext client is refused; a restart reuses the
/// certificates, so the same command still works.
#[test]
fn a_secure_dev_cluster_prints_the_flags_that_connect_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(1);
    let kafka_base = (base + 5).to_string();
    let base = base.to_string();
    let dev_args = [
        "dev",
        "--secure",
        "--brokers",
        "1",
        "--base-port",
        &base,
        "--kafka-base-port",
        &kafka_base,
    ];
    let start = || spawn_dev(&dev_args, dir.path(), "try: silt ");
    let (mut dev, printed) = start();
    // "-b HOST:PORT --tls-ca CA --tls-cert CERT --tls-key KEY cluster info    (Ctrl-C ...)"
    let flags: Vec<String> =
        printed.split("    (").next().unwrap().split_whitespace().map(String::from).collect();
    assert!(flags.contains(&"--tls-ca".to_string()), "{printed}");
    assert!(dir.path().join("tls/ca.crt").exists() && dir.path().join("tls/admin.key").exists());
    let run = |extra: &[&str]| {
        let base_flags: Vec<&str> =
            flags.iter().map(String::as_str).take_while(|f| *f != "cluster").collect();
        Command::new(env!("CARGO_BIN_EXE_silt")).args(&base_flags).args(extra).output().unwrap()
    };
    let o = run(&["topic", "create", "secure", "-p", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = silt(&flags[1], &["--connect-timeout-ms", "1000", "topic", "list"]);
    assert_eq!(plain.status.code(), Some(1), "plaintext is refused: {}", stderr(&plain));
    // Authentication is on: TLS without the admin certificate or a password is refused.
    let ca = dir.path().join("tls/ca.crt");
    let anonymous = silt(&flags[1], &["--tls-ca", ca.to_str().unwrap(), "topic", "list"]);
    assert!(stderr(&anonymous).contains("(AUTHENTICATION_FAILED)"), "{}", stderr(&anonymous));
    // The profile it wrote connects as the admin (a super user): it creates a user.
    let profile = dir.path().join("silt.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_silt"))
        .env("SILT_CONFIG", &profile)
        .env("SILT_PASSWORD", "bob-pw")
        .args(["user", "create", "bob"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    interrupt(&dev);
    assert!(wait_exit(&mut dev, 60).success());

    let (mut dev, again) = start();
    assert_eq!(again, printed, "the same certificates after a restart");
    let o = run(&["topic", "list"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("secure"), "{}", stderr(&o));
    interrupt(&dev);
    assert!(wait_exit(&mut dev, 60).success());
}
