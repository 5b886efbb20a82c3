//! Consumer-group load for the chaos tests (RELIABILITY.md C8): members that commit after
//! processing (synchronously or async), killed by aborting their task (no leave), a watcher of the
//! committed offsets (never backwards), and the drain that waits until the group has consumed
//! every acknowledged value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silt_client::{Client, CommitMode, GroupConfig, Seek, TopicPartition};
use tokio::task::JoinHandle;

/// The longest a member or a watcher runs (tests abort them much earlier).
const MEMBER_LIFETIME: Duration = Duration::from_secs(600);

/// What the members consumed, shared by all of them.
pub type Consumed = Arc<Mutex<BTreeSet<String>>>;

/// A member's settings: a 2 s session (kills are noticed quickly), manual commits after each
/// processed poll (at-least-once).
pub fn member_config(group: &str) -> GroupConfig {
    let mut c = GroupConfig::new(group);
    c.session_timeout_ms = 2_000;
    c.commit = CommitMode::Manual;
    c.fetch.max_wait_ms = 200;
    c
}

/// How a member commits after each processed poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// `commit`, awaited before the next poll.
    Sync,
    /// `commit_async`, not awaited: commits overlap polls, revocations and kills.
    Async,
}

/// Starts a member that records every value it consumes into `consumed` and then commits
/// synchronously. Abort the handle to kill it.
pub fn spawn_member(
    client: Client,
    group: &str,
    topic: &str,
    consumed: Consumed,
) -> JoinHandle<()> {
    spawn_member_with(client, group, topic, consumed, Commits::Sync)
}

/// Like [`spawn_member`], committing as `commits` says.
pub fn spawn_member_with(
    client: Client,
    group: &str,
    topic: &str,
    consumed: Consumed,
    commits: Commits,
) -> JoinHandle<()> {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::spawn(async move {
        // Bounded even if nobody aborts the member (a test that failed early).
        let deadline = Instant::now() + MEMBER_LIFETIME;
        let mut c = loop {
            match client.subscribe(member_config(&group), vec![topic.clone()]).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(_) => return,
            }
        };
        while Instant::now() < deadline {
            match c.poll().await {
                Ok(records) => {
                    {
                        let mut set = consumed.lock().unwrap_or_else(|p| p.into_inner());
                        for r in &records {
                            let v = r.value.as_deref().unwrap_or_default();
                            set.insert(String::from_utf8_lossy(v).into_owned());
                        }
                    }
                    match commits {
                        Commits::Sync => {
                            if let Err(e) = c.commit().await {
                                tracing::warn!(error = %e, "commit failed");
                            }
                        }
                        Commits::Async => drop(c.commit_async()),
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

/// Polls a group's committed offsets and records every decrease.
#[derive(Debug)]
pub struct OffsetWatch {
    pub regressions: Arc<Mutex<Vec<(TopicPartition, i64, i64)>>>,
    task: JoinHandle<()>,
}

impl OffsetWatch {
    pub fn start(client: Client, group: &str) -> OffsetWatch {
        let regressions = Arc::new(Mutex::new(Vec::new()));
        let (found, group) = (regressions.clone(), group.to_string());
        let task = tokio::spawn(async move {
            let admin = client.admin();
            let mut last: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            let deadline = Instant::now() + MEMBER_LIFETIME;
            while Instant::now() < deadline {
                if let Ok(now) =
                    tokio::time::timeout(Duration::from_secs(10), admin.group_offsets(&group)).await
                    && let Ok(now) = now
                {
                    for (tp, o) in now {
                        if let Some(prev) = last.get(&tp)
                            && o < *prev
                        {
                            found.lock().unwrap_or_else(|p| p.into_inner()).push((
                                tp.clone(),
                                *prev,
                                o,
                            ));
                        }
                        last.insert(tp, o);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        OffsetWatch { regressions, task }
    }

    /// Stops watching; returns the decreases seen.
    pub fn stop(self) -> Vec<(TopicPartition, i64, i64)> {
        self.task.abort();
        self.regressions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Waits until `consumed` holds every value of `acked`; Err with the number missing.
pub async fn drain(
    consumed: &Consumed,
    acked: &BTreeSet<String>,
    within: Duration,
) -> Result<(), usize> {
    let deadline = Instant::now() + within;
    loop {
        let missing = acked.difference(&consumed.lock().unwrap_or_else(|p| p.into_inner())).count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(missing);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the group's committed offset of every partition of `topic` equals its high
/// watermark, checking none is above it. Err with what was committed last.
pub async fn committed_to_end(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: u32,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let committed = client.admin().group_offsets(group).await.unwrap_or_default();
        let mut at_end = committed.len() == partitions as usize;
        for (tp, o) in &committed {
            let mut c = client.consumer(silt_client::ConsumerConfig::default());
            let hw = match c.assign(vec![tp.clone()], Seek::Latest).await {
                Ok(()) => c.position(tp).unwrap_or(-1),
                Err(_) => -1,
            };
            if *o > hw && hw >= 0 {
                return Err(format!("{tp:?} committed {o} beyond the high watermark {hw}"));
            }
            at_end &= *o == hw;
        }
        if at_end && committed.keys().all(|tp| tp.topic == topic) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("committed offsets did not reach the end: {committed:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
