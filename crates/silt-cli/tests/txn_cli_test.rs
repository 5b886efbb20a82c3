//! `silt produce --transactional-id`, `silt consume --isolation`, `silt txn list|describe` and
//! `silt bench produce --transactional` against an in-process broker (CLI.md's contract).

mod common;

use common::{TestBroker, json, stderr, stdout};

#[test]
fn transactional_produce_read_committed_consume_and_txn_commands() {
    let b = TestBroker::start();
    assert!(b.silt(&["topic", "create", "ledger", "-p", "2"]).status.success());
    let input: String = (0..25).map(|i| format!("k{}|v{i}\n", i % 4)).collect();
    let o = b.silt_stdin(
        &[
            "produce",
            "ledger",
            "--key-separator",
            "|",
            "--transactional-id",
            "loader",
            "--transaction-records",
            "10",
        ],
        &input,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("produced 25 records"), "{}", stderr(&o));

    // read_committed sees every committed record once; no marker is printed.
    let o = b.silt(&[
        "consume",
        "ledger",
        "--from-beginning",
        "--isolation",
        "read_committed",
        "-e",
        "-f",
        "%v",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut got: Vec<String> = stdout(&o).lines().map(String::from).collect();
    got.sort();
    let mut want: Vec<String> = (0..25).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    let d = json(&b.silt(&["-o", "json", "txn", "describe", "loader"]));
    assert_eq!(d["transactional_id"], "loader");
    assert_eq!(d["state"], "CompleteCommit");
    assert!(d["producer_id"].as_i64().unwrap() >= 0);
    // Three transactions, each ending with an epoch bump.
    assert!(d["producer_epoch"].as_i64().unwrap() >= 3, "{d}");
    assert_eq!(d["timeout_ms"], 60000);
    let list = json(&b.silt(&["-o", "json", "txn", "list"]));
    assert!(list.as_array().unwrap().iter().any(|t| t["transactional_id"] == "loader"), "{list}");
    let o = b.silt(&["txn", "describe", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).trim().ends_with("(TRANSACTIONAL_ID_NOT_FOUND)"), "{}", stderr(&o));
    // Flags that only make sense with a transactional id are usage errors.
    // (Refused while parsing the flags, before stdin is read: no input to write.)
    let o = b.silt(&["produce", "ledger", "--transaction-records", "5"]);
    assert_eq!(o.status.code(), Some(2));

    let o = b.silt(&[
        "-o",
        "json",
        "bench",
        "produce",
        "--topic",
        "ledger",
        "--records",
        "2000",
        "--record-size",
        "100",
        "--transactional",
        "--commit-interval-ms",
        "50",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["records"], 2000);
    assert_eq!(r["failed"], 0);
}
