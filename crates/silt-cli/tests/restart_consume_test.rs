//! `silt consume` started while the cluster restarts (issue 13): it waits for brokers that are
//! down or still catching up with the metadata (BROKER_NOT_AVAILABLE) and then reads every
//! record, instead of failing with UNKNOWN_TOPIC or a transport error.

mod common;

use std::io::Read;

use common::{TestBroker, eventually, free_ports, start_cluster, stderr, wait_exit};

#[test]
fn a_consumer_started_during_a_cluster_restart_waits_and_reads_everything() {
    let ports = free_ports(3);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut brokers = start_cluster(&ports, dirs);
    let b1 = brokers[0].addr.clone();
    eventually(60, "the topic created on a formed cluster", || {
        brokers[0]
            .silt(&["topic", "create", "t", "-p", "3", "-r", "3"])
            .status
            .success()
            .then_some(())
    });
    let input: String = (0..300).map(|i| format!("v{i}\n")).collect();
    let o = brokers[0].silt_stdin(&["produce", "t"], &input);
    assert!(o.status.success(), "{}", stderr(&o));

    eprintln!("--- stop every broker; start a consumer against broker 1 while they are down");
    let dirs: Vec<tempfile::TempDir> = brokers.drain(..).map(TestBroker::stop).collect();
    let mut consumer = std::process::Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["-b", &b1, "consume", "t", "--from-beginning", "-n", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    eprintln!("--- restart them: each answers BROKER_NOT_AVAILABLE until caught up");
    let _restarted = start_cluster(&ports, dirs);
    let status = wait_exit(&mut consumer, 90);
    let mut out = String::new();
    consumer.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    consumer.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "consume failed: {err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}
