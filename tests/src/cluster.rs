//! A cluster of `siltd` child processes on loopback ports, each with its own data directory, and
//! a proxy on every broker-to-broker link. Faults: kill -9, SIGTERM, pause (SIGSTOP/SIGCONT),
//! restart, and cutting links. Every child is killed when the cluster is dropped, also when a
//! test fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use silt_client::Client;
use silt_proto::v1;

use crate::proxy::Proxy;

/// Settings written to every broker's config file.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The broker binary (`env!("CARGO_BIN_EXE_siltd-under-test")` in this package's tests).
    pub binary: PathBuf,
    pub brokers: u64,
    pub heartbeat_ms: u64,
    pub session_timeout_ms: u64,
    pub replica_lag_time_max_ms: u64,
    pub request_timeout_ms: u64,
    /// More `siltd.toml` lines for every broker.
    pub extra: String,
    /// TLS and authentication everywhere: client listeners take certificates from a test CA
    /// and authenticate every request (`auth`), brokers talk to each other over mutual TLS
    /// (`internal_tls_ca`), and the harness's clients present a certificate for `User:harness`,
    /// whose rights are ACLs (every topic, group and the cluster) that `User:admin`, the super
    /// user, grants at start (see [`crate::tls`]).
    pub tls: bool,
    /// A Kafka-protocol listener on every broker ([`ProcessCluster::kafka_bootstrap`]).
    pub kafka: bool,
    /// Brokers 1..=voters vote in the metadata quorum (`peers`); the others join it as
    /// learners. `None`: every broker votes.
    pub voters: Option<u64>,
    /// Brokers configured but not started by [`ProcessCluster::start`] (started later with
    /// [`ProcessCluster::restart`]: a broker joining a running cluster).
    pub held_back: Vec<u64>,
}

impl ClusterSettings {
    /// Three brokers with the default liveness settings and a 4 s replica lag limit.
    pub fn new(binary: impl Into<PathBuf>) -> ClusterSettings {
        ClusterSettings {
            binary: binary.into(),
            brokers: 3,
            heartbeat_ms: 500,
            session_timeout_ms: 3_000,
            replica_lag_time_max_ms: 4_000,
            request_timeout_ms: 5_000,
            extra: String::new(),
            tls: false,
            kafka: false,
            voters: None,
            held_back: Vec::new(),
        }
    }
}

/// One broker process.
#[derive(Debug)]
pub struct BrokerProcess {
    pub id: u64,
    /// The client address (direct, never proxied).
    pub addr: String,
    pub dir: PathBuf,
    config: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    paused: bool,
    log: PathBuf,
}

impl BrokerProcess {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log file opens");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,openraft=warn,h2=warn,tower=warn,hyper=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the broker starts");
        self.child = Some(child);
        self.paused = false;
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }
}

/// The cluster (see the module doc).
#[derive(Debug)]
pub struct ProcessCluster {
    pub brokers: BTreeMap<u64, BrokerProcess>,
    /// `(from, to)` -> the proxy `from` uses to reach `to`.
    links: BTreeMap<(u64, u64), Proxy>,
    pub settings: ClusterSettings,
    /// Each broker's Kafka listener (with `settings.kafka`).
    pub kafka: BTreeMap<u64, String>,
    tmp: tempfile::TempDir,
}

/// A free port, held (bound) until the listener is dropped right before the broker binds it,
/// so the proxies started meanwhile cannot be given the same port.
fn free_port() -> (String, std::net::TcpListener) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    (l.local_addr().expect("bound").to_string(), l)
}

impl ProcessCluster {
    /// Starts every broker and waits until all are registered and alive.
    pub async fn start(settings: ClusterSettings) -> ProcessCluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ids: Vec<u64> = (1..=settings.brokers).collect();
        let mut held = BTreeMap::new();
        let (mut addrs, mut internal) = (BTreeMap::new(), BTreeMap::new());
        for id in &ids {
            let ((client, c), (inner, i)) = (free_port(), free_port());
            addrs.insert(*id, client);
            // Broker-to-broker traffic goes to the internal listeners, through one proxy per
            // link.
            internal.insert(*id, inner);
            held.insert(*id, (c, i));
        }
        let mut kafka = BTreeMap::new();
        let mut kafka_held = BTreeMap::new();
        if settings.kafka {
            for id in &ids {
                let (addr, l) = free_port();
                kafka.insert(*id, addr);
                kafka_held.insert(*id, l);
            }
        }
        let mut links = BTreeMap::new();
        for from in &ids {
            for to in &ids {
                if from != to {
                    let p = Proxy::start(internal[to].clone()).await.expect("proxy starts");
                    links.insert((*from, *to), p);
                }
            }
        }
        let pki = settings.tls.then(|| crate::tls::TestPki::new(tmp.path()));
        crate::tls::set_client_tls(pki.as_ref().map(|p| p.client("harness")));
        let mut brokers = BTreeMap::new();
        for id in &ids {
            let tls = match &pki {
                Some(pki) => {
                    let (cert, key) = pki.broker(*id);
                    let ca = pki.ca_file.display();
                    format!(
                        "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{ca}\"\n\
                         internal_tls_ca = \"{ca}\"\nauth = true\n\
                         super_users = [\"User:admin\"]\n",
                        cert.display(),
                        key.display()
                    )
                }
                None => String::new(),
            };
            let tls = match kafka.get(id) {
                Some(k) => format!("{tls}kafka_listen = \"{k}\"\n"),
                None => tls,
            };
            let voters = settings.voters.unwrap_or(settings.brokers);
            let peers: Vec<String> =
                ids.iter().filter(|p| **p <= voters).map(|p| format!("{p}@{}", addrs[p])).collect();
            let routes: Vec<String> = ids
                .iter()
                .map(|p| {
                    let a = if p == id { &internal[id] } else { &links[&(*id, *p)].addr };
                    format!("{p}@{a}")
                })
                .collect();
            let dir = tmp.path().join(format!("b{id}"));
            let config = tmp.path().join(format!("b{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "node_id = {id}\nlisten = \"{addr}\"\nhttp = \"\"\ndata_dir = \"{dir}\"\n\
                     internal_listen = \"{internal}\"\ninternal_peers = \"{routes}\"\n\
                     peers = \"{peers}\"\nbroker_heartbeat_interval_ms = {hb}\n\
                     broker_session_timeout_ms = {st}\nreplica_lag_time_max_ms = {lag}\n\
                     request_timeout_ms = {rt}\n{tls}{extra}\n",
                    addr = addrs[id],
                    internal = internal[id],
                    routes = routes.join(","),
                    dir = dir.display(),
                    peers = peers.join(","),
                    hb = settings.heartbeat_ms,
                    st = settings.session_timeout_ms,
                    lag = settings.replica_lag_time_max_ms,
                    rt = settings.request_timeout_ms,
                    extra = settings.extra,
                ),
            )
            .expect("config written");
            let log = tmp.path().join(format!("b{id}.log"));
            let mut b = BrokerProcess {
                id: *id,
                addr: addrs[id].clone(),
                dir,
                config,
                binary: settings.binary.clone(),
                child: None,
                paused: false,
                log,
            };
            drop(held.remove(id));
            drop(kafka_held.remove(id));
            if !settings.held_back.contains(id) {
                b.spawn();
            }
            brokers.insert(*id, b);
        }
        let started = ids.len() - settings.held_back.len();
        let cluster = ProcessCluster { brokers, links, settings, kafka, tmp };
        cluster.wait_alive(started, Duration::from_secs(60)).await;
        if let Some(pki) = &pki {
            crate::tls::grant_harness(&cluster.bootstrap(), pki).await;
        }
        cluster
    }

    /// Every broker's Kafka listener address (empty without `settings.kafka`).
    pub fn kafka_bootstrap(&self) -> String {
        self.kafka.values().cloned().collect::<Vec<_>>().join(",")
    }

    /// Every broker's client address.
    pub fn bootstrap(&self) -> Vec<String> {
        self.brokers.values().map(|b| b.addr.clone()).collect()
    }

    /// A client bootstrapped with every broker.
    pub async fn client(&self) -> Client {
        crate::tls::connect(&self.bootstrap()).await.expect("a client connects")
    }

    /// Waits until `n` brokers are registered and unfenced.
    pub async fn wait_alive(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            for b in self.brokers.values().filter(|b| b.is_running() && !b.paused) {
                if let Some(v) = describe_cluster(&b.addr).await
                    && v.brokers.iter().filter(|x| x.alive).count() >= n
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{n} brokers did not come up; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn kill9(&mut self, id: u64) {
        let b = self.brokers.get_mut(&id).expect("known broker");
        if let Some(mut c) = b.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        b.paused = false;
    }

    /// Waits up to `within` for broker `id` to exit on its own; true if it did (it is then
    /// stopped, ready for [`ProcessCluster::restart`]).
    pub fn wait_exited(&mut self, id: u64, within: Duration) -> bool {
        let b = self.brokers.get_mut(&id).expect("known broker");
        let deadline = Instant::now() + within;
        while let Some(c) = b.child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                b.child = None;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// SIGTERM and wait for the exit; returns the exit code.
    pub fn sigterm(&mut self, id: u64) -> Option<i32> {
        let b = self.brokers.get_mut(&id).expect("known broker");
        b.signal("-TERM");
        let mut c = b.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, id: u64) {
        let b = self.brokers.get_mut(&id).expect("known broker");
        assert!(b.child.is_none(), "broker {id} is still running");
        b.spawn();
    }

    pub fn pause(&mut self, id: u64) {
        let b = self.brokers.get_mut(&id).expect("known broker");
        b.signal("-STOP");
        b.paused = true;
    }

    /// SIGHUP: the broker reads its TLS files again.
    pub fn hangup(&self, id: u64) {
        self.brokers[&id].signal("-HUP");
    }

    pub fn resume(&mut self, id: u64) {
        let b = self.brokers.get_mut(&id).expect("known broker");
        b.signal("-CONT");
        b.paused = false;
    }

    /// Cuts (or heals) every link between `id` and the other brokers, both ways.
    pub fn isolate(&self, id: u64, cut: bool) {
        for ((from, to), p) in &self.links {
            if *from == id || *to == id {
                p.set_cut(cut);
            }
        }
    }

    /// Cuts (or heals) what the other brokers send to `id` (Raft appends and votes, fetches
    /// from it), while `id`'s own calls out (forwarded proposals, heartbeats, its fetches) pass.
    pub fn cut_inbound(&self, id: u64, cut: bool) {
        for ((_, to), p) in &self.links {
            if *to == id {
                p.set_cut(cut);
            }
        }
    }

    /// Cuts (or heals) the one link `from` uses to reach `to` (its calls to `to`: fetches,
    /// votes, forwarded proposals), leaving every other link as it is.
    pub fn cut_link(&self, from: u64, to: u64, cut: bool) {
        self.links[&(from, to)].set_cut(cut);
    }

    /// The controller (metadata quorum leader) as a running broker reports it.
    pub async fn controller(&self) -> Option<u64> {
        for b in self.brokers.values().filter(|b| b.is_running()) {
            if let Some(c) = describe_cluster(&b.addr).await.and_then(|c| c.controller_id) {
                return Some(c);
            }
        }
        None
    }

    /// Waits until some running broker's view of the partition `(leader, epoch, isr)` satisfies
    /// `cond` with a running leader (an isolated broker's stale view may differ: any will do).
    pub async fn wait_partition(
        &self,
        topic: &str,
        partition: u32,
        within: Duration,
        what: &str,
        cond: impl Fn(u64, u32, &[u64]) -> bool,
    ) -> (u64, u32, Vec<u64>) {
        let deadline = Instant::now() + within;
        loop {
            for b in self.brokers.values().filter(|b| b.is_running() && !b.paused) {
                let Some(t) = describe_on(&b.addr, topic).await else { continue };
                let Some(p) = t.partitions.get(partition as usize) else { continue };
                if let Some(l) = p.leader
                    && self.brokers.get(&l).is_some_and(|b| b.is_running())
                    && cond(l, p.leader_epoch, &p.isr)
                {
                    return (l, p.leader_epoch, p.isr.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} on {topic}/{partition}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every broker's log (stderr), for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for b in self.brokers.values() {
            let text = std::fs::read_to_string(&b.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- broker {} (last 40 lines)\n", b.id));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// One broker's whole log (stderr).
    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(&self.brokers[&id].log).unwrap_or_default()
    }

    /// Lines of every broker's log that show a panic (checker C9).
    pub fn panics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in self.brokers.values() {
            let text = std::fs::read_to_string(&b.log).unwrap_or_default();
            out.extend(
                text.lines()
                    .filter(|l| l.contains("panicked at"))
                    .map(|l| format!("broker {}: {l}", b.id)),
            );
        }
        out
    }

    /// The temp directory holding data dirs, configs and logs.
    pub fn root(&self) -> &std::path::Path {
        self.tmp.path()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if self.settings.tls {
            crate::tls::set_client_tls(None);
        }
        for b in self.brokers.values_mut() {
            if b.paused {
                b.signal("-CONT");
            }
            if let Some(mut c) = b.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn describe_cluster(addr: &str) -> Option<v1::DescribeClusterResponse> {
    let call = async {
        let c = crate::tls::connect(&[addr.to_string()]).await.ok()?;
        c.admin().describe_cluster().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(2), call).await.ok().flatten()
}

/// The topic as the broker at `addr` describes it (its own replica's log start and HW).
pub async fn describe_on(addr: &str, topic: &str) -> Option<v1::TopicDescription> {
    let call = async {
        let channel = crate::tls::endpoint(addr).connect().await.ok()?;
        let mut c = v1::admin_client::AdminClient::new(channel);
        let req = v1::DescribeTopicsRequest { topics: vec![topic.to_string()] };
        let mut t = c.describe_topics(req).await.ok()?.into_inner().topics;
        if t.is_empty() || t[0].error_code != v1::ErrorCode::None as i32 {
            None
        } else {
            Some(t.remove(0))
        }
    };
    tokio::time::timeout(Duration::from_secs(2), call).await.ok().flatten()
}
