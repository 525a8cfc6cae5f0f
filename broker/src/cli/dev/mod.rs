//! `txmq dev`: a local 3-node cluster in one command, for trying txmq out.
//!
//! Starts three `txmq serve` child processes of this same binary, waits until they elected a
//! leader, prints how to use the cluster, and stops them on Ctrl-C (or SIGTERM).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::client_runtime;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the nodes keep their data and logs.
    #[arg(long, default_value = "txmq-data")]
    pub data_dir: PathBuf,
    /// Node N listens on BASE+10*(N-1) (client), +1 (peer), +2 (metrics).
    #[arg(long, default_value_t = 9870)]
    pub base_port: u16,
    /// Host the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
}

struct DevNode {
    id: u64,
    client: String,
    peer: String,
    metrics: String,
}

fn plan(args: &DevArgs) -> Vec<DevNode> {
    (1..=3u16)
        .map(|i| {
            let base = args.base_port + 10 * (i - 1);
            DevNode {
                id: u64::from(i),
                client: format!("{}:{}", args.host, base),
                peer: format!("{}:{}", args.host, base + 1),
                metrics: format!("{}:{}", args.host, base + 2),
            }
        })
        .collect()
}

pub fn dev(args: DevArgs) -> ExitCode {
    let runtime = match client_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("txmq dev: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("txmq dev: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: DevArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the txmq binary: {e}"))?;
    let nodes = plan(&args);
    let initial: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.peer))
        .collect();
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let mut children = Vec::new();
    for n in &nodes {
        let log_path = args.data_dir.join(format!("node-{}.log", n.id));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(&exe)
            .arg("serve")
            .args(["--node-id", &n.id.to_string()])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node-{}", n.id)))
            .args([
                "--client-addr",
                &n.client,
                "--peer-addr",
                &n.peer,
                "--metrics-addr",
                &n.metrics,
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--worker-threads",
                &workers_per_node(nodes.len()).to_string(),
            ])
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start node {}: {e}", n.id))?;
        children.push(child);
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| n.client.clone()).collect();
    let result = wait_and_print(&exe, &args, &nodes, &endpoints, &mut children).await;
    stop(&mut children).await;
    result
}

/// The nodes share this machine's cores: more worker threads than cores in all only add
/// context switches (see `--worker-threads`).
fn workers_per_node(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / nodes.max(1)).max(1)
}

async fn wait_and_print(
    exe: &std::path::Path,
    args: &DevArgs,
    nodes: &[DevNode],
    endpoints: &[String],
    children: &mut [tokio::process::Child],
) -> Result<(), String> {
    let leader = wait_for_leader(args, nodes, endpoints, children).await?;
    print_banner(exe, args, nodes, endpoints, leader);
    watch_until_stopped(nodes, children).await
}

/// Waits (30 s at most) until the cluster has a leader; fails at once if a node exits.
async fn wait_for_leader(
    args: &DevArgs,
    nodes: &[DevNode],
    endpoints: &[String],
    children: &mut [tokio::process::Child],
) -> Result<u64, String> {
    let client = txmq_client::Client::new(endpoints).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (n, child) in nodes.iter().zip(children.iter_mut()) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "node {} exited ({status}); see {}",
                    n.id,
                    args.data_dir.join(format!("node-{}.log", n.id)).display()
                ));
            }
        }
        if let Ok(s) = client.cluster_status().await
            && s.leader_id != 0
        {
            return Ok(s.leader_id);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no leader after 30s; see the logs in {}",
                args.data_dir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_banner(
    exe: &std::path::Path,
    args: &DevArgs,
    nodes: &[DevNode],
    endpoints: &[String],
    leader: u64,
) {
    let exe = exe.display();
    println!(
        "txmq dev: a 3-node cluster is running (leader: node {leader}); data and logs in {}",
        args.data_dir.display()
    );
    for n in nodes {
        println!(
            "  node {}: client {}  peer {}  metrics {}",
            n.id, n.client, n.peer, n.metrics
        );
    }
    println!("\nIn another terminal:");
    println!("  export TXMQ_ENDPOINTS={}", endpoints.join(","));
    println!("  {exe} cluster status");
    println!("  {exe} topic create orders --type normal");
    println!("  {exe} send orders --body 'hello' --key order-1");
    println!("  {exe} read orders --output json");
    println!("\nPress Ctrl-C to stop the cluster (data is kept; run `txmq dev` again to resume).");
    if cfg!(debug_assertions) {
        println!(
            "\nNote: this is a debug build, many times slower than txmq is. To measure it, run \
             `cargo run --release -p txmq-broker --bin txmq -- dev` (see the README)."
        );
    }
}

/// Runs until Ctrl-C; a node that dies (or that you killed to watch a failover) is reported,
/// not fatal, until none is left.
async fn watch_until_stopped(
    nodes: &[DevNode],
    children: &mut [tokio::process::Child],
) -> Result<(), String> {
    let shutdown = super::serve::shutdown_signal();
    tokio::pin!(shutdown);
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for (i, child) in children.iter_mut().enumerate() {
            if !reported[i]
                && let Ok(Some(status)) = child.try_wait()
            {
                reported[i] = true;
                println!(
                    "txmq dev: node {} stopped ({status}); the others keep running",
                    nodes[i].id
                );
            }
        }
        if reported.iter().all(|r| *r) {
            return Err("every node has stopped".into());
        }
    }
}

/// Asks every child to stop (SIGTERM), then kills whatever is left after a grace period.
async fn stop(children: &mut [tokio::process::Child]) {
    for c in children.iter() {
        if let Some(pid) = c.id() {
            // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for c in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_share_the_cores_with_at_least_one_thread_each() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(workers_per_node(1), cores);
        assert!(workers_per_node(3) >= 1 && workers_per_node(3) * 3 <= cores.max(3));
        assert_eq!(workers_per_node(cores * 2), 1);
        assert_eq!(workers_per_node(0), cores);
    }
}
