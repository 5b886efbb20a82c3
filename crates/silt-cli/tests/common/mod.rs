//! Shared by the CLI test files: an in-process broker on port 0 and ways to run `silt`.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use silt_broker::{Broker, BrokerConfig};

/// A broker on its own runtime thread; stopped on drop.
pub struct TestBroker {
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_test(dir.path());
        TestBroker::start_with(config, dir)
    }

    /// A broker with `config` (its data in `dir`, kept until the broker is dropped).
    pub fn start_with(config: BrokerConfig, dir: tempfile::TempDir) -> TestBroker {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let broker = Broker::bind(config).await.unwrap();
                addr_tx.send(broker.local_addr().to_string()).unwrap();
                broker
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        TestBroker { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    /// Stops the broker (cleanly) and hands back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._dir, dir)
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn silt(&self, args: &[&str]) -> Output {
        self.silt_stdin(args, "")
    }

    pub fn silt_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.silt_env(args, stdin, &[])
    }

    /// `silt` with extra environment variables.
    pub fn silt_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_silt"))
            .envs(env.iter().copied())
            .arg("-b")
            .arg(&self.addr)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The config of broker `id` of a cluster whose brokers listen on `ports` (ids 1..).
pub fn cluster_config(id: u64, ports: &[u16], dir: &std::path::Path) -> BrokerConfig {
    let peers: Vec<String> =
        ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect();
    BrokerConfig {
        node_id: id,
        listen: format!("127.0.0.1:{}", ports[id as usize - 1]),
        peers: Some(peers.join(",")),
        // The default: the client port + 2, so the peers' routes follow from `peers`.
        internal_listen: None,
        ..BrokerConfig::for_test(dir)
    }
}

/// Broker `i + 1` on `ports[i]` with its data in `dirs[i]`, for each.
pub fn start_cluster(ports: &[u16], dirs: Vec<tempfile::TempDir>) -> Vec<TestBroker> {
    dirs.into_iter()
        .enumerate()
        .map(|(i, dir)| {
            let config = cluster_config(i as u64 + 1, ports, dir.path());
            TestBroker::start_with(config, dir)
        })
        .collect()
}

/// `n` ports free right now, each with its port + 2 (the default internal port) free too.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if let Some(internal) = port.checked_add(2)
            && let Ok(i) = std::net::TcpListener::bind(("127.0.0.1", internal))
        {
            held.push((l, i));
        }
    }
    held.iter().map(|(l, _)| l.local_addr().unwrap().port()).collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

impl TestBroker {
    /// `silt -b ADDR ARGS` as a child with piped stdout and stderr (the caller ends it).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_silt"))
            .arg("-b")
            .arg(&self.addr)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits (bounded) for a child to exit; kills it and fails the test past `secs`.
pub fn wait_exit(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("silt did not exit within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Polls `f` every 100 ms until it returns Some, for at most `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Sends SIGINT to a child.
pub fn interrupt(child: &std::process::Child) {
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}
