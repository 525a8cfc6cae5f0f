//! `txmq dev`: a local 3-node cluster in one command, for trying txmq out.
//!
//! Starts three `txmq serve` child processes of this same binary, waits until they elected a
//! leader, prints how to use the cluster, and stops them on Ctrl-C (or SIGTERM). Each node's
//! exact command line and pid are written next to its log, and `txmq dev restart N` asks the
//! running `txmq dev` to start a node again (so it stays one of its children and stops with it).

mod files;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::client_runtime;
use files::DevFiles;
use supervisor::Supervisor;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the nodes keep their data and logs (and their command lines and pids).
    #[arg(long, default_value = "txmq-data", global = true)]
    pub data_dir: PathBuf,
    /// Node N listens on BASE+10*(N-1) (client), +1 (peer), +2 (metrics).
    #[arg(long, default_value_t = 9870)]
    pub base_port: u16,
    /// Host the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TLS and authentication: makes a local CA, certificates and an administrator `admin`
    /// with a random password in DATA_DIR/certs (kept across runs), and starts the nodes with
    /// client TLS, mutual TLS between peers and `--auth-admin-file`.
    #[arg(long)]
    pub secure: bool,
    #[command(subcommand)]
    pub action: Option<DevAction>,
}

#[derive(Debug, Subcommand)]
pub enum DevAction {
    /// Start a stopped node of the running `txmq dev` again (same command line, same data).
    Restart {
        /// The node's id (1, 2 or 3).
        node: u64,
    },
}

/// One node of the dev cluster.
pub(super) struct DevNode {
    id: u64,
    client: String,
    peer: String,
    metrics: String,
    /// The RocketMQ-protocol address.
    rocketmq: String,
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
                rocketmq: format!("{}:{}", args.host, base + 3),
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
    let result = match args.action {
        Some(DevAction::Restart { node }) => runtime.block_on(restart(&args.data_dir, node)),
        None => runtime.block_on(run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("txmq dev: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: DevArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the txmq binary: {e}"))?;
    let files = DevFiles::claim(&args.data_dir)?;
    let nodes = plan(&args);
    if files.holds_data(&nodes) {
        println!(
            "txmq dev: resuming the cluster whose data is in {} (delete it to start afresh)",
            args.data_dir.display()
        );
    } else {
        println!(
            "txmq dev: starting a new cluster in {}",
            args.data_dir.display()
        );
    }
    let (security, admin) = if args.secure {
        let dir = args.data_dir.join("certs");
        (
            Some(super::certs::create(&dir, &[])?),
            Some(super::certs::dev_admin(&dir)?),
        )
    } else {
        (None, None)
    };
    let mut supervisor = Supervisor::new(exe.clone(), files, nodes, security, admin);
    let result = match supervisor.start_all() {
        Ok(()) => wait_and_print(&exe, &args, &mut supervisor).await,
        Err(e) => Err(e),
    };
    supervisor.stop().await;
    result
}

/// Asks the running `txmq dev` on `data_dir` to start node `node` again, and waits until it did.
async fn restart(data_dir: &std::path::Path, node: u64) -> Result<(), String> {
    if !(1..=3).contains(&node) {
        return Err(format!(
            "there is no node {node}: the dev cluster has nodes 1, 2 and 3"
        ));
    }
    let files = DevFiles::open(data_dir)?;
    files.request_restart(node)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if !files.restart_requested(node) {
            let pid = files.node_pid(node).map_or("?".into(), |p| p.to_string());
            println!(
                "txmq dev: node {node} restarted (pid {pid}); its log: {}",
                files.log_path(node).display()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the running txmq dev did not restart node {node} within 15 s (is the node still running? \
         see {})",
        files.log_path(node).display()
    ))
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
    supervisor: &mut Supervisor,
) -> Result<(), String> {
    let endpoints = supervisor.endpoints();
    let leader = supervisor.wait_for_leader(&endpoints).await?;
    print_banner(exe, args, supervisor, &endpoints, leader);
    supervisor.watch_until_stopped().await
}

fn print_banner(
    exe: &std::path::Path,
    args: &DevArgs,
    supervisor: &Supervisor,
    endpoints: &[String],
    leader: u64,
) {
    let exe = exe.display();
    println!(
        "txmq dev: a 3-node cluster is running (leader: node {leader}); data and logs in {}",
        args.data_dir.display()
    );
    for line in supervisor.node_lines() {
        println!("  {line}");
    }
    println!(
        "  (each node's exact command line: {}/node-N.cmd; its pid: node-N.pid)",
        args.data_dir.display()
    );
    println!("\nIn another terminal:");
    println!("  export TXMQ_ENDPOINTS={}", endpoints.join(","));
    if let Some(certs) = supervisor.certificates() {
        println!("  export TXMQ_TLS_CA={}", certs.ca.display());
    }
    if let Some(password) = supervisor.admin_password() {
        println!("  export TXMQ_USER=admin TXMQ_PASSWORD={password}");
    }
    println!("  {exe} cluster status");
    println!("  {exe} topic create orders --type normal");
    println!("  {exe} send orders --body 'hello' --key order-1");
    println!("  {exe} read orders --output json");
    println!("  kill -9 <a pid above>; {exe} dev restart <its node id>   # try a failover");
    match supervisor.rocketmq_addresses().as_deref() {
        // One address, not `a;b;c`: the clients send a list as one HTTP/2 authority, which the
        // server refuses (docs/rocketmq.md); they learn the other nodes from the routes.
        Some([first, others @ ..]) => println!(
            "\nRocketMQ 5 clients (docs/rocketmq.md): endpoint {first} (one node's address; the \
             others are {}); create topics first (`{exe} topic create orders --type transaction` \
             for transactional producers).",
            others.join(", ")
        ),
        _ => println!(
            "\nThe RocketMQ port is off with --secure (its TLS certificate is not one the RocketMQ \
             clients trust); docs/rocketmq.md shows how to run it with authentication."
        ),
    }
    println!("\nPress Ctrl-C to stop the cluster (data is kept; run `txmq dev` again to resume).");
    if cfg!(debug_assertions) {
        println!(
            "\nNote: this is a debug build, many times slower than txmq is. To measure it, run \
             `cargo run --release -p txmq-broker --bin txmq -- dev` (see the README)."
        );
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
