//! The running `txmq dev`: its three node processes, started, watched, restarted on request
//! and stopped together.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::process::ExitStatus;

use tokio::process::Child;

use super::DevNode;
use super::files::{DevFiles, shell_line};
use crate::cli::certs::CertFiles;

/// A node that fails sooner than this after its start is not restarted by itself: it would
/// fail the same way again (a port in use, a bad flag, damaged storage).
const MIN_RUN_BEFORE_RESTART: Duration = Duration::from_secs(10);

/// Whether a node that exited is restarted without being asked: like a supervisor's
/// "on failure" policy, a node that failed (exit status not 0, e.g. its Raft stopped) after
/// running a while. One killed by a signal (`kill -9`, to watch a failover) or stopped cleanly
/// stays down until `txmq dev restart N`.
fn restarts_by_itself(status: ExitStatus, ran: Duration) -> bool {
    status.code().is_some_and(|code| code != 0) && ran >= MIN_RUN_BEFORE_RESTART
}

pub struct Supervisor {
    exe: PathBuf,
    files: DevFiles,
    nodes: Vec<DevNode>,
    /// `None` once a node's process has exited (until it is restarted).
    children: Vec<Option<Child>>,
    /// When each node's process was last started.
    started: Vec<Instant>,
    /// With `--secure`: the certificates every port uses.
    certificates: Option<CertFiles>,
    /// With `--secure`: the administrator's file and password.
    admin: Option<(PathBuf, String)>,
}

impl Supervisor {
    pub fn new(
        exe: PathBuf,
        files: DevFiles,
        nodes: Vec<DevNode>,
        certificates: Option<CertFiles>,
        admin: Option<(PathBuf, String)>,
    ) -> Self {
        let children = nodes.iter().map(|_| None).collect();
        let started = nodes.iter().map(|_| Instant::now()).collect();
        Supervisor {
            exe,
            files,
            nodes,
            children,
            started,
            certificates,
            admin,
        }
    }

    /// The administrator's password of a `--secure` cluster.
    pub fn admin_password(&self) -> Option<&str> {
        self.admin.as_ref().map(|(_, p)| p.as_str())
    }

    /// The certificates of a `--secure` cluster.
    pub fn certificates(&self) -> Option<&CertFiles> {
        self.certificates.as_ref()
    }

    /// The TLS flags of every node of a `--secure` cluster.
    fn tls_args(&self) -> Vec<String> {
        let Some(c) = &self.certificates else {
            return Vec::new();
        };
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            "--tls-cert".into(),
            path(&c.node_cert),
            "--tls-key".into(),
            path(&c.node_key),
            "--peer-tls-cert".into(),
            path(&c.node_cert),
            "--peer-tls-key".into(),
            path(&c.node_key),
            "--peer-tls-ca".into(),
            path(&c.ca),
        ]
        .into_iter()
        .chain(
            self.admin
                .iter()
                .flat_map(|(file, _)| ["--auth-admin-file".into(), path(file)]),
        )
        .collect()
    }

    /// Each node's RocketMQ address, unless the cluster is `--secure` (its certificates come
    /// from a local CA the RocketMQ clients do not trust).
    pub fn rocketmq_addresses(&self) -> Option<Vec<String>> {
        self.admin
            .is_none()
            .then(|| self.nodes.iter().map(|n| n.rocketmq.clone()).collect())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client.clone()).collect()
    }

    /// The `txmq serve` arguments of node `i`.
    fn serve_args(&self, i: usize) -> Vec<String> {
        let n = &self.nodes[i];
        let initial: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect();
        let mut args: Vec<String> = vec!["serve".into(), "--node-id".into(), n.id.to_string()];
        args.push("--data-dir".into());
        args.push(self.files.data_dir(n.id).display().to_string());
        for (flag, value) in [
            ("--client-addr", n.client.clone()),
            ("--peer-addr", n.peer.clone()),
            ("--metrics-addr", n.metrics.clone()),
            ("--initial-cluster", initial.join(",")),
            (
                "--worker-threads",
                super::workers_per_node(self.nodes.len()).to_string(),
            ),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        if self.admin.is_none() {
            args.push("--rocketmq-addr".into());
            args.push(n.rocketmq.clone());
        }
        args.extend(self.tls_args());
        args
    }

    /// Starts node `i`, its output appended to its log (which first gets the command line).
    fn spawn(&mut self, i: usize) -> Result<u32, String> {
        let id = self.nodes[i].id;
        let args = self.serve_args(i);
        let line = shell_line(&self.exe, &args);
        let log_path = self.files.log_path(id);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let _ = writeln!(log, "txmq dev: starting node {id}: {line}");
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(&self.exe)
            .args(&args)
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        let pid = child.id().unwrap_or(0);
        self.files.record_start(id, &line, pid)?;
        self.children[i] = Some(child);
        self.started[i] = Instant::now();
        Ok(pid)
    }

    pub fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.spawn(i)?;
        }
        Ok(())
    }

    /// "node N (pid P): client … peer … metrics …" for each node.
    pub fn node_lines(&self) -> Vec<String> {
        self.nodes
            .iter()
            .zip(&self.children)
            .map(|(n, c)| {
                let pid = c
                    .as_ref()
                    .and_then(Child::id)
                    .map_or("-".into(), |p| p.to_string());
                let rocketmq = if self.admin.is_none() {
                    format!("  rocketmq {}", n.rocketmq)
                } else {
                    String::new()
                };
                format!(
                    "node {} (pid {pid}): client {}  peer {}  metrics {}{rocketmq}",
                    n.id, n.client, n.peer, n.metrics
                )
            })
            .collect()
    }

    /// Waits (30 s at most) until the cluster has a leader; fails at once if a node exits.
    pub async fn wait_for_leader(&mut self, endpoints: &[String]) -> Result<u64, String> {
        let tls = match &self.certificates {
            Some(c) => Some(txmq_client::ClientTls {
                ca_pem: std::fs::read(&c.ca).map_err(|e| format!("{}: {e}", c.ca.display()))?,
                ..Default::default()
            }),
            None => None,
        };
        let options = txmq_client::ClientOptions {
            tls,
            credentials: self
                .admin
                .as_ref()
                .map(|(_, password)| txmq_client::Credentials {
                    user: "admin".into(),
                    password: password.clone(),
                }),
            ..Default::default()
        };
        let client =
            txmq_client::Client::with_options(endpoints, options).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((id, status, _)) = self.exited().into_iter().next() {
                let log = self.files.log_path(id);
                return Err(format!(
                    "node {id} exited ({status}); see {}",
                    log.display()
                ));
            }
            if let Ok(s) = client.cluster_status().await
                && s.leader_id != 0
            {
                return Ok(s.leader_id);
            }
            if Instant::now() > deadline {
                return Err("no leader after 30s; see the node logs".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The nodes whose process exited since the last call, with how and after how long.
    fn exited(&mut self) -> Vec<(u64, ExitStatus, Duration)> {
        let mut out = Vec::new();
        for (i, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push((self.nodes[i].id, status, self.started[i].elapsed()));
                *slot = None;
            }
        }
        out
    }

    /// Runs until Ctrl-C: reports nodes that stop (killed to watch a failover, or crashed) and
    /// restarts those `txmq dev restart N` asks for. Every node stopped and none restarted for
    /// a while is an error.
    pub async fn watch_until_stopped(&mut self) -> Result<(), String> {
        let shutdown = super::super::serve::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            for (id, status, ran) in self.exited() {
                if restarts_by_itself(status, ran) {
                    println!(
                        "txmq dev: node {id} failed ({status}) after {}s; restarting it, as a \
                         supervisor would (why it failed: {})",
                        ran.as_secs(),
                        self.files.log_path(id).display()
                    );
                    self.restart(id);
                } else {
                    println!(
                        "txmq dev: node {id} stopped ({status}); the others keep running. Start \
                         it again with `txmq dev restart {id}`"
                    );
                }
            }
            for id in self.files.take_restart_requests() {
                self.restart(id);
            }
            if self.children.iter().all(Option::is_none) {
                return Err("every node has stopped".into());
            }
        }
    }

    fn restart(&mut self, id: u64) {
        let Some(i) = self.nodes.iter().position(|n| n.id == id) else {
            return;
        };
        if self.children[i].is_some() {
            println!("txmq dev: node {id} is running; not restarted");
            return;
        }
        match self.spawn(i) {
            Ok(pid) => println!("txmq dev: node {id} restarted (pid {pid})"),
            Err(e) => println!("txmq dev: node {id} could not be restarted: {e}"),
        }
    }

    /// Asks every node to stop (SIGTERM), then kills whatever is left after a grace period.
    pub async fn stop(&mut self) {
        for c in self.children.iter().flatten() {
            if let Some(pid) = c.id() {
                // SAFETY: kill(2) with a pid we spawned and a valid signal has no memory effects.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for c in self.children.iter_mut().flatten() {
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn only_a_failure_after_running_a_while_is_restarted_without_asking() {
        let failed = ExitStatus::from_raw(1 << 8);
        let clean = ExitStatus::from_raw(0);
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        let long = Duration::from_secs(60);
        assert!(restarts_by_itself(failed, long));
        assert!(
            !restarts_by_itself(failed, Duration::from_secs(1)),
            "fails at start"
        );
        assert!(!restarts_by_itself(clean, long));
        assert!(
            !restarts_by_itself(killed, long),
            "kill -9 shows a failover"
        );
    }
}
