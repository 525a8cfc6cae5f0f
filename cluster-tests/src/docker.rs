//! The container backend of the harness: a cluster whose nodes are Docker containers started
//! from the Helm chart's rendered StatefulSet (by `helm/tests/test_containers.py`), driven with
//! `docker kill/start`, `docker pause/unpause` and `docker network disconnect/connect`.
//!
//! The plan file says what runs where:
//!
//! ```json
//! {"network": "txmq-ct-1a2b-net",
//!  "nodes": [{"id": 1, "container": "txmq-ct-1a2b-0", "aliases": ["txmq-0.txmq-headless..."],
//!             "client_addr": "127.0.0.1:41001", "metrics_addr": "127.0.0.1:41002"}],
//!  "txn": {"first_check_delay_ms": 1500, "check_interval_ms": 1000, "max_checks": 8,
//!          "max_lifetime_ms": 30000}}
//! ```

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct DockerPlan {
    pub network: String,
    pub nodes: Vec<PlannedContainer>,
    pub txn: TxnTiming,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlannedContainer {
    pub id: u64,
    pub container: String,
    /// The DNS names the container answers to on the network (restored on reconnect).
    pub aliases: Vec<String>,
    /// The client API as published on the host.
    pub client_addr: String,
    pub metrics_addr: String,
}

/// The transaction timing the containers were configured with (the checker's bounds).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TxnTiming {
    pub first_check_delay_ms: u64,
    pub check_interval_ms: u64,
    pub max_checks: u32,
    pub max_lifetime_ms: u64,
}

impl DockerPlan {
    pub fn load(path: &Path) -> Result<DockerPlan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading docker plan {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Runs `docker args...`; its stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One container of the cluster.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub network: String,
    pub aliases: Vec<String>,
}

impl Container {
    pub fn is_running(&self) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.name])
            .is_ok_and(|s| s.trim() == "true")
    }

    /// `docker kill`: SIGKILL, like a node crash.
    pub fn kill(&self) {
        if let Err(e) = docker(&["kill", &self.name]) {
            tracing::debug!("{e}");
        }
    }

    pub fn start(&self) -> Result<()> {
        docker(&["start", &self.name]).map(|_| ())
    }

    /// `docker pause`: the cgroup freezer stops every process of the container.
    pub fn pause(&self) {
        if let Err(e) = docker(&["pause", &self.name]) {
            tracing::debug!("{e}");
        }
    }

    pub fn resume(&self) {
        if docker(&["inspect", "-f", "{{.State.Paused}}", &self.name])
            .is_ok_and(|s| s.trim() == "true")
            && let Err(e) = docker(&["unpause", &self.name])
        {
            tracing::warn!("{e}");
        }
    }

    /// Takes the container off the network: no peer (and no published port) reaches it.
    pub fn disconnect(&self) {
        if let Err(e) = docker(&["network", "disconnect", "-f", &self.network, &self.name]) {
            tracing::warn!("{e}");
        }
    }

    /// Puts it back with its DNS names; a no-op when it is connected.
    pub fn reconnect(&self) {
        let connected = docker(&[
            "inspect",
            "-f",
            &format!(
                "{{{{if index .NetworkSettings.Networks \"{}\"}}}}yes{{{{end}}}}",
                self.network
            ),
            &self.name,
        ])
        .is_ok_and(|s| s.trim() == "yes");
        if connected {
            return;
        }
        let mut args = vec!["network", "connect"];
        for alias in &self.aliases {
            args.extend(["--alias", alias.as_str()]);
        }
        args.extend([self.network.as_str(), self.name.as_str()]);
        if let Err(e) = docker(&args) {
            tracing::warn!("{e}");
        }
    }

    pub fn log(&self) -> String {
        Command::new("docker")
            .args(["logs", "--tail", "200", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }
}
