//! `txmq dev` as the README uses it: it says whether it starts afresh or resumes, writes each
//! node's command line and pid, restarts a killed node on `txmq dev restart N`, and stops every
//! node it started on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use txmq_cluster_tests::{free_port, txmq_binary, wait_for};

/// A running `txmq dev`, its output in a file; on drop it and every node it recorded are
/// killed.
struct Dev {
    child: Child,
    dir: PathBuf,
    out: PathBuf,
}

impl Dev {
    fn start(bin: &Path, dir: &Path, base: u16) -> Result<Dev> {
        Self::start_with(bin, dir, base, &[])
    }

    fn start_with(bin: &Path, dir: &Path, base: u16, flags: &[&str]) -> Result<Dev> {
        let out = dir.with_extension(format!("out-{}", std::process::id()));
        let file = std::fs::File::create(&out)?;
        let child = Command::new(bin)
            .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir)
            .args(flags)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Dev {
            child,
            dir: dir.to_path_buf(),
            out,
        })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    async fn wait_for_output(&self, text: &str) -> Result<()> {
        wait_for(
            &format!("txmq dev to print '{text}'"),
            Duration::from_secs(40),
            || async { self.output().contains(text).then_some(()) },
        )
        .await
        .with_context(|| self.output())
    }

    fn node_pid(&self, node: u64) -> Result<i32> {
        let text = std::fs::read_to_string(self.dir.join(format!("node-{node}.pid")))?;
        Ok(text.trim().parse()?)
    }

    /// Ctrl-C, and the exit within `within`.
    async fn interrupt(&mut self, within: Duration) -> Result<()> {
        signal(self.child.id() as i32, libc::SIGINT);
        let child = &mut self.child;
        wait_for("txmq dev to exit", within, || {
            let exited = child.try_wait().ok().flatten().is_some();
            async move { exited.then_some(()) }
        })
        .await
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        for node in 1..=3 {
            if let Ok(pid) = self.node_pid(node) {
                signal(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: as above; signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// A base port whose nine ports (three nodes × client, peer, metrics) are free.
fn free_base_port() -> Result<u16> {
    for _ in 0..50 {
        let base = free_port()?;
        let all_free = [0u16, 1, 2, 10, 11, 12, 20, 21, 22].iter().all(|o| {
            base.checked_add(*o)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return Ok(base);
        }
    }
    bail!("no free block of ports for txmq dev")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_records_its_nodes_restarts_one_and_stops_them_all() -> Result<()> {
    let bin = txmq_binary()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let base = free_base_port()?;
    let mut dev = Dev::start(&bin, &dir, base)?;

    // Phase 1: a new cluster; each node's command line and pid written down.
    dev.wait_for_output("a 3-node cluster is running").await?;
    ensure!(
        dev.output().contains("starting a new cluster"),
        "{}",
        dev.output()
    );
    let cmd = std::fs::read_to_string(dir.join("node-2.cmd"))?;
    ensure!(
        cmd.contains("serve --node-id 2") && cmd.contains("--client-addr"),
        "{cmd}"
    );
    let log = std::fs::read_to_string(dir.join("node-2.log"))?;
    ensure!(
        log.contains("txmq dev: starting node 2:"),
        "the log names the flags: {log}"
    );
    let first_pid = dev.node_pid(2)?;
    ensure!(alive(first_pid));
    let endpoints = format!(
        "127.0.0.1:{base},127.0.0.1:{},127.0.0.1:{}",
        base + 10,
        base + 20
    );
    let status = |endpoints: &str| -> Result<serde_json::Value> {
        let out = Command::new(&bin)
            .args([
                "cluster",
                "status",
                "--output",
                "json",
                "--endpoints",
                endpoints,
            ])
            .output()?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let nodes = status(&endpoints)?["nodes"].clone();
    let shown = nodes
        .as_array()
        .context("nodes")?
        .iter()
        .find(|n| n["id"] == 2)
        .cloned();
    ensure!(
        shown.is_some_and(|n| n["pid"] == first_pid),
        "cluster status names the pid: {nodes}"
    );

    // Phase 2: kill node 2; `txmq dev restart 2` starts it again, as a child of `txmq dev`.
    signal(first_pid, libc::SIGKILL);
    dev.wait_for_output("node 2 stopped").await?;
    let restart = Command::new(&bin)
        .args(["dev", "restart", "2", "--data-dir"])
        .arg(&dir)
        .output()?;
    let said = String::from_utf8_lossy(&restart.stdout);
    ensure!(
        restart.status.success() && said.contains("restarted"),
        "{said}{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let second_pid = dev.node_pid(2)?;
    ensure!(second_pid != first_pid && alive(second_pid));
    wait_for(
        "node 2 back in the cluster",
        Duration::from_secs(30),
        || async {
            let nodes = status(&endpoints).ok()?["nodes"].clone();
            nodes
                .as_array()?
                .iter()
                .any(|n| n["id"] == 2 && (n["role"] == "follower" || n["role"] == "leader"))
                .then_some(())
        },
    )
    .await?;
    let again = Command::new(&bin)
        .args(["dev", "restart", "2", "--data-dir"])
        .arg(&dir)
        .output()?;
    ensure!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("is running")
    );

    // Phase 3: Ctrl-C stops every node, restarted ones included.
    let pids: Vec<i32> = (1..=3).map(|n| dev.node_pid(n)).collect::<Result<_>>()?;
    dev.interrupt(Duration::from_secs(20)).await?;
    ensure!(
        pids.iter().all(|p| !alive(*p)),
        "nodes outlived txmq dev: {pids:?}"
    );
    ensure!(!dir.join("dev.pid").exists());

    // Phase 4: started again on the same directory, it says it resumes.
    let dev = Dev::start(&bin, &dir, base)?;
    dev.wait_for_output("a 3-node cluster is running").await?;
    ensure!(
        dev.output().contains("resuming the cluster"),
        "{}",
        dev.output()
    );
    Ok(())
}

/// `txmq dev --secure`: every node serves TLS with a local CA and requires a user; the banner
/// names the CA file and the administrator's password; a client trusting the CA with that
/// password works, one without the password is unauthenticated, a plaintext one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_secure_serves_tls_with_a_local_ca() -> Result<()> {
    let bin = txmq_binary()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("txmq-data");
    let base = free_base_port()?;
    let mut dev = Dev::start_with(&bin, &dir, base, &["--secure"])?;
    dev.wait_for_output("Press Ctrl-C").await?;
    let ca = dir.join("certs").join("ca.pem");
    ensure!(
        dev.output()
            .contains(&format!("TXMQ_TLS_CA={}", ca.display())),
        "{}",
        dev.output()
    );
    let output = dev.output();
    let password = output
        .split("TXMQ_PASSWORD=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("the banner prints the administrator's password")?
        .to_string();
    let status = |tls: bool, password: Option<&str>| -> Result<std::process::Output> {
        let mut command = Command::new(&bin);
        command.args([
            "--endpoints",
            &format!("127.0.0.1:{base}"),
            "cluster",
            "status",
        ]);
        if tls {
            command.env("TXMQ_TLS_CA", &ca);
        }
        if let Some(password) = password {
            command
                .env("TXMQ_USER", "admin")
                .env("TXMQ_PASSWORD", password);
        }
        Ok(command.output()?)
    };
    let trusted = status(true, Some(&password))?;
    ensure!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let anonymous = status(true, None)?;
    let said = String::from_utf8_lossy(&anonymous.stderr);
    ensure!(
        !anonymous.status.success() && said.contains("unauthenticated"),
        "{said}"
    );
    let plaintext = status(false, Some(&password))?;
    ensure!(
        !plaintext.status.success(),
        "plaintext reached a --secure node"
    );
    let cmd = std::fs::read_to_string(dir.join("node-1.cmd"))?;
    ensure!(cmd.contains("--peer-tls-ca"), "{cmd}");
    dev.interrupt(Duration::from_secs(20)).await
}
