//! The Raft storage against openraft's conformance suite, and what the suite does not cover:
//! the log, vote and snapshot survive a restart, and a torn log tail is cut.

#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use openraft::storage::{
    RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use silt_raft::typ::{Entry, NodeId, StorageError};
use silt_raft::{Command, LogStore, StateMachineStore};

struct DiskBuilder;

impl StoreBuilder<silt_raft::typ::TypeConfig, LogStore, StateMachineStore, tempfile::TempDir>
    for DiskBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("log")).expect("log store");
        let sm = StateMachineStore::open(&dir.path().join("sm")).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_conformance_suite_passes() -> Result<(), StorageError> {
    Suite::test_all(DiskBuilder)
}

fn entry(term: u64, index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn register(id: NodeId) -> Command {
    Command::RegisterBroker {
        kafka_address: String::new(),
        id,
        address: format!("b{id}"),
        internal_address: String::new(),
        rack: None,
        incarnation: id,
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    log.blocking_append(entries).await.unwrap();
}

#[tokio::test]
async fn log_and_vote_survive_a_restart_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        append(&mut log, (1..=5).map(|i| entry(1, i, register(i))).collect()).await;
        log.save_vote(&openraft::Vote::new(3, 2)).await.unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 5)).await.unwrap();
    }
    // A torn write: half a record at the end.
    let path = dir.path().join("raft-log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 0, 0, 50, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();

    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(openraft::Vote::new(3, 2)));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Appends continue after the cut.
    append(&mut log, vec![entry(2, 5, register(9))]).await;
    drop(log);
    let mut log = LogStore::open(dir.path()).unwrap();
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
    assert_eq!((last.index, last.leader_id.term), (5, 2));
}

#[tokio::test]
async fn purged_entries_stay_purged_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).unwrap();
    append(&mut log, (1..=10).map(|i| entry(1, i, register(i))).collect()).await;
    let upto = LogId::new(CommittedLeaderId::new(1, 1), 6);
    log.purge(upto).await.unwrap();
    drop(log);
    let mut log = LogStore::open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(upto));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(entries.first().map(|e| e.log_id.index), Some(7));
}

#[tokio::test]
async fn the_state_machine_publishes_images_and_restores_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    let mut images = sm.subscribe();
    let create = Command::CreateTopic {
        name: "t".into(),
        assignment: vec![vec![1]],
        configs: BTreeMap::new(),
        uuid: String::new(),
    };
    sm.apply(vec![entry(1, 1, register(1)), entry(1, 2, create)]).await.unwrap();
    assert!(images.has_changed().unwrap());
    assert_eq!(images.borrow_and_update().topics["t"].partitions[0].leader, Some(1));
    let mut builder = sm.get_snapshot_builder().await;
    let snap = builder.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
    drop(sm);
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert!(sm.image().topics.contains_key("t"));
    assert!(sm.get_current_snapshot().await.unwrap().is_some());
}
