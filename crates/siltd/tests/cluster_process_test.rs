//! A three-broker cluster of `siltd` processes (cluster mode via `--peers`, loopback ports):
//! kill -9 the leader of a partition and a new leader with a higher epoch takes over within the
//! session timeout plus election time (measured and printed; a generous bound catches hangs),
//! the killed broker rejoins after a restart, and SIGTERM moves leaderships away before exiting
//! with no failed produce on the moved partition.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use silt_client::{Acks, Client, ProducerConfig, ProducerRecord};

struct Node {
    id: u64,
    addr: String,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self, peers: &str) {
        let child = Command::new(env!("CARGO_BIN_EXE_siltd"))
            .args([
                "--node-id",
                &self.id.to_string(),
                "--listen",
                &self.addr,
                "--http",
                "",
                "--peers",
                peers,
                "--data-dir",
            ])
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("siltd starts");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn sigterm_and_wait(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A free loopback port whose port + 2 (the default internal port) is free too (bound, read,
/// released; the broker binds them right after).
fn free_addr() -> String {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port
            .checked_add(2)
            .is_some_and(|i| std::net::TcpListener::bind(("127.0.0.1", i)).is_ok())
        {
            return l.local_addr().unwrap().to_string();
        }
    }
}

async fn leader_of(addr: &str, topic: &str, partition: usize) -> Option<(u64, u32)> {
    let c = tokio::time::timeout(Duration::from_secs(3), Client::connect(&[addr.to_string()]))
        .await
        .ok()?
        .ok()?;
    let t = tokio::time::timeout(
        Duration::from_secs(3),
        c.admin().describe_topics(&[topic.to_string()]),
    )
    .await
    .ok()?
    .ok()?;
    let p = t.first()?.partitions.get(partition)?;
    Some((p.leader?, p.leader_epoch))
}

async fn wait_for<T>(secs: u64, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_leaders_fail_over_after_kill_9_and_move_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes: BTreeMap<u64, Node> = (1..=3)
        .map(|id| {
            (
                id,
                Node { id, addr: free_addr(), dir: tmp.path().join(format!("b{id}")), child: None },
            )
        })
        .collect();
    let peers =
        nodes.values().map(|n| format!("{}@{}", n.id, n.addr)).collect::<Vec<_>>().join(",");
    for n in nodes.values_mut() {
        n.spawn(&peers);
    }
    let any = nodes[&1].addr.clone();
    wait_for(30, "the cluster to serve", async || {
        let c = Client::connect(std::slice::from_ref(&any)).await.ok()?;
        let v = c.admin().describe_cluster().await.ok()?;
        (v.brokers.iter().filter(|b| b.alive).count() == 3).then_some(())
    })
    .await;

    let mut failovers = Vec::new();
    for round in 0..5 {
        // A fresh topic each round: a fenced broker leaves every ISR, and followers do not copy
        // yet (next milestone) so nothing rejoins an ISR; a new topic starts with a full ISR.
        let topic = format!("orders{round}");
        let probe_addr = nodes[&1].addr.clone();
        wait_for(20, "the round's topic created", async || {
            let c = Client::connect(std::slice::from_ref(&probe_addr)).await.ok()?;
            c.admin().create_topic(&topic, 3, 3, small_segments()).await.ok()
        })
        .await;
        let (leader, epoch) =
            wait_for(20, "a leader of p0", async || leader_of(&probe_addr, &topic, 0).await).await;
        let survivor = nodes.values().find(|n| n.id != leader).unwrap().addr.clone();
        let killed = Instant::now();
        nodes.get_mut(&leader).unwrap().kill9();
        let (new_leader, new_epoch) = wait_for(30, "a new leader after kill -9", async || {
            leader_of(&survivor, &topic, 0).await.filter(|(l, _)| *l != leader)
        })
        .await;
        let took = killed.elapsed();
        failovers.push(took);
        eprintln!(
            "round {round}: kill -9 of broker {leader} -> broker {new_leader} leads p0 (epoch {epoch} -> {new_epoch}) after {took:?}"
        );
        assert!(new_epoch > epoch);
        assert!(took < Duration::from_secs(20), "failover took {took:?}");
        // Restart the killed broker: it registers again and is alive.
        nodes.get_mut(&leader).unwrap().spawn(&peers);
        wait_for(30, "the restarted broker alive", async || {
            let c = Client::connect(std::slice::from_ref(&survivor)).await.ok()?;
            let v = c.admin().describe_cluster().await.ok()?;
            (v.brokers.iter().filter(|b| b.alive).count() == 3).then_some(())
        })
        .await;
    }
    failovers.sort();
    eprintln!("kill -9 failover times: {failovers:?}; median {:?}", failovers[failovers.len() / 2]);

    // Controlled shutdown: SIGTERM the leader of p1; leadership moves before it exits.
    let probe_addr = nodes[&1].addr.clone();
    // Broker 1 may have just restarted: its view catches up within moments.
    wait_for(20, "topic orders created", async || {
        let c = Client::connect(std::slice::from_ref(&probe_addr)).await.ok()?;
        c.admin().create_topic("orders", 3, 3, small_segments()).await.ok()
    })
    .await;
    let (leader, epoch) =
        wait_for(20, "a leader of p1", async || leader_of(&probe_addr, "orders", 1).await).await;
    let survivor = nodes.values().find(|n| n.id != leader).unwrap().addr.clone();
    // A producer keeps writing to p1 across the shutdown: no send may fail.
    let client = Client::connect(std::slice::from_ref(&survivor)).await.unwrap();
    let producer =
        client.producer(ProducerConfig { acks: Acks::Leader, linger_ms: 0, ..Default::default() });
    let sender = tokio::spawn(async move {
        let mut results = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        let mut i = 0u64;
        while Instant::now() < until {
            let f = producer
                .send(ProducerRecord::new("orders", format!("m{i}")).with_partition(1))
                .await;
            results.push(match f {
                Ok(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            });
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        results
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let code = nodes.get_mut(&leader).unwrap().sigterm_and_wait();
    assert_eq!(code, Some(0), "clean exit");
    let results = sender.await.unwrap();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "controlled shutdown under load: {} sends, {} failed {failed:?}",
        results.len(),
        failed.len()
    );
    assert!(results.len() > 50);
    assert!(failed.is_empty(), "sends failed across a controlled shutdown: {failed:?}");
    let (moved_to, moved_epoch) = leader_of(&survivor, "orders", 1).await.expect("p1 described");
    eprintln!(
        "SIGTERM of broker {leader}: p1 led by {moved_to} (epoch {epoch} -> {moved_epoch}), exit after {:?}",
        asked.elapsed()
    );
    assert_ne!(moved_to, leader, "leadership moved before the broker exited");
    assert!(moved_epoch > epoch);
}

/// 16 MiB segments: active segments are preallocated, and 1 GiB ones (the default) for every
/// replica of every topic here would take tens of GiB of disk.
fn small_segments() -> BTreeMap<String, String> {
    BTreeMap::from([("segment.bytes".to_string(), (16 * 1024 * 1024).to_string())])
}
