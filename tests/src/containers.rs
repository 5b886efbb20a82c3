//! The compose cluster (`deploy/compose/docker-compose.yml`, image `silt:dev`) as a fault-test
//! target: `docker kill`/`start`, `docker pause`/`unpause`, `docker network disconnect`/`connect`,
//! and selective packet drops with `nsenter -t PID -n iptables`. Every command runs against this
//! project's own containers only; `down -v` removes them and their volumes when dropped.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use silt_client::Client;

/// Brokers of the compose file: (id, service, private address, host port).
pub const BROKERS: [(u64, &str, &str, u16); 3] = [
    (1, "b1", "172.28.0.11", 9300),
    (2, "b2", "172.28.0.12", 9310),
    (3, "b3", "172.28.0.13", 9320),
];

/// A running compose project.
#[derive(Debug)]
pub struct ComposeCluster {
    project: String,
    file: PathBuf,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Whether the Docker engine answers and the image exists (the suite's precondition).
pub fn available(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl ComposeCluster {
    /// `docker-compose up -d` under `project`, then waits for three live brokers.
    pub async fn up(project: &str) -> ComposeCluster {
        let file =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose/docker-compose.yml");
        let c = ComposeCluster { project: project.to_string(), file };
        let _ = c.compose(&["down", "-v", "--remove-orphans"]).output();
        run(&mut c.compose(&["up", "-d"]));
        c.wait_alive(3, Duration::from_secs(90)).await;
        c
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p").arg(&self.project).arg("-f").arg(&self.file).args(args);
        cmd
    }

    /// The container id of broker `id` (empty if it does not exist).
    pub fn container(&self, id: u64) -> String {
        self.compose(&["ps", "-q", BROKERS[(id - 1) as usize].1])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    pub fn network(&self) -> String {
        format!("{}_silt", self.project)
    }

    pub fn bootstrap(&self) -> Vec<String> {
        BROKERS.iter().map(|(_, _, _, port)| format!("127.0.0.1:{port}")).collect()
    }

    pub async fn wait_alive(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let call = async {
                let c = Client::connect(&self.bootstrap()).await.ok()?;
                c.admin().describe_cluster().await.ok()
            };
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(3), call).await
                && v.brokers.iter().filter(|b| b.alive).count() >= n
            {
                return;
            }
            assert!(Instant::now() < deadline, "{n} brokers not alive; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn kill(&self, id: u64) {
        run(Command::new("docker").args(["kill", "-s", "KILL", &self.container(id)]));
    }

    pub fn start(&self, id: u64) {
        run(Command::new("docker").args(["start", &self.container(id)]));
    }

    pub fn pause(&self, id: u64, paused: bool) {
        let verb = if paused { "pause" } else { "unpause" };
        run(Command::new("docker").args([verb, &self.container(id)]));
    }

    /// Disconnects broker `id` from the private network (it loses peers and clients), or
    /// reconnects it with its address.
    pub fn disconnect(&self, id: u64, cut: bool) {
        let c = self.container(id);
        let net = self.network();
        if cut {
            run(Command::new("docker").args(["network", "disconnect", &net, &c]));
        } else {
            let ip = BROKERS[(id - 1) as usize].2;
            run(Command::new("docker").args(["network", "connect", "--ip", ip, &net, &c]));
        }
    }

    /// Drops packets from the other brokers' private addresses inside broker `id`'s network
    /// namespace (INPUT from them and, unless `one_way`, OUTPUT to them); clients on the host
    /// still reach it. `cut = false` flushes the rules.
    pub fn partition_from_peers(&self, id: u64, cut: bool, one_way: bool) {
        let pid = String::from_utf8_lossy(
            &run(Command::new("docker").args([
                "inspect",
                "-f",
                "{{.State.Pid}}",
                &self.container(id),
            ]))
            .stdout,
        )
        .trim()
        .to_string();
        let ipt = |args: &[&str]| {
            run(Command::new("nsenter").args(["-t", &pid, "-n", "iptables"]).args(args));
        };
        if !cut {
            ipt(&["-F"]);
            return;
        }
        for (other, _, ip, _) in BROKERS {
            if other != id {
                ipt(&["-A", "INPUT", "-s", ip, "-j", "DROP"]);
                if !one_way {
                    ipt(&["-A", "OUTPUT", "-d", ip, "-j", "DROP"]);
                }
            }
        }
    }

    /// The last lines of every broker's log.
    pub fn logs(&self) -> String {
        self.compose(&["logs", "--no-color", "--tail", "30"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Log lines showing a panic (C9).
    pub fn panics(&self) -> Vec<String> {
        self.compose(&["logs", "--no-color"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.contains("panicked at"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        for (id, ..) in BROKERS {
            let c = self.container(id);
            if !c.is_empty() {
                let _ = Command::new("docker").args(["unpause", &c]).output();
            }
        }
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]).output();
    }
}
