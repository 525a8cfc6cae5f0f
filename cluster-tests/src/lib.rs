//! A multi-process test harness: real `txmq serve` processes on loopback ports the OS picks,
//! each in its own temporary data directory. Every process is killed when the [`Cluster`] is
//! dropped, whatever the test did.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use txmq_client::{Client, ClientOptions, ReadRequest};

pub mod chaos;
pub mod docker;
pub mod proxy;
pub mod secure;

pub use proxy::LinkProxy;

/// The `txmq` binary under test: `$TXMQ_BIN`, or `txmq` in the target directory of this test.
pub fn txmq_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TXMQ_BIN") {
        return Ok(PathBuf::from(p));
    }
    // Test executables live in target/<profile>/deps/, binaries in target/<profile>/.
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    let bin = [
        dir.join("txmq"),
        dir.parent().map(|p| p.join("txmq")).unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| dir.join("txmq"));
    if !bin.exists() {
        bail!(
            "{} does not exist: build it first with `cargo build -p txmq-broker --bin txmq` (the test command does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The lowest port of the kernel's ephemeral range (source ports of outgoing connections).
pub fn ephemeral_port_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768)
}

/// A free port for a node to listen on, confirmed free by the OS (we bind it, then release it).
///
/// Why not port 0: ports the OS hands out for port 0 come from the ephemeral range, which is
/// also where the source ports of outgoing connections come from. While a node is down (killed
/// by a test), a peer or proxy dialing its port can be given that very port as its source port:
/// the socket connects to itself and holds the port, and the node can never listen again. So
/// listening ports are taken below the ephemeral range, and never handed out twice in one
/// process (tests run in parallel).
pub fn free_port() -> Result<u16> {
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_low = ephemeral_port_low();
    let (low, high) = (10_000u16, ephemeral_low.max(10_500) - 1);
    let span = u32::from(high - low);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..span {
        let port = low + ((seed.wrapping_add(i)) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port between {low} and {high}")
}

fn ensure_success(status: std::process::ExitStatus, what: &str) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{what} failed ({status})")
    }
}

/// Waits until `check` returns `Some`, polling every 100 ms, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that something does *not* happen: `holds` must stay true (polled every 100 ms) for
/// the whole `period`; fails at the first poll where it is false. The absence of an event has
/// no condition to wait for, so this watches it throughout instead of sleeping and looking once.
pub async fn holds_for<F, Fut>(what: &str, period: Duration, mut holds: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let started = Instant::now();
    loop {
        let elapsed = started.elapsed();
        if !holds().await? {
            bail!("{what} stopped holding after {elapsed:?} (it must hold for {period:?})");
        }
        if elapsed >= period {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that an operation fails with gRPC code `code` (snake_case, as `ClientError` has it)
/// and a message mentioning each of `mentions`.
pub fn expect_failure<T: std::fmt::Debug>(
    result: std::result::Result<T, txmq_client::ClientError>,
    code: &str,
    mentions: &[&str],
) -> Result<txmq_client::ClientError> {
    let e = match result {
        Ok(v) => bail!("expected a {code} failure, got success: {v:?}"),
        Err(e) => e,
    };
    anyhow::ensure!(
        e.code == code,
        "expected {code}, got {}: {}",
        e.code,
        e.message
    );
    for m in mentions {
        anyhow::ensure!(
            e.message.contains(m),
            "the {code} message does not mention '{m}': {}",
            e.message
        );
    }
    Ok(e)
}

/// All message ids a node serves for `topic` (every queue, from offset 0); `None` if any read
/// failed.
pub async fn ids_served_by(client: &Client, topic: &str) -> Option<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let topic_info = client.describe_topic(topic).await.ok()?;
    for q in 0..topic_info.queues {
        let mut from = 0;
        loop {
            let req = ReadRequest {
                topic: topic.into(),
                queue: Some(q),
                from_offset: from,
                max: 1000,
            };
            let batch = client.read(req).await.ok()?;
            if batch.is_empty() {
                break;
            }
            for m in &batch {
                ids.insert(m.message_id.clone());
                from = m.offset + 1;
            }
        }
    }
    Some(ids)
}

/// Waits until a transaction reaches `state` (as seen through `client`) and returns it.
pub async fn wait_for_transaction(
    client: &Client,
    id: &str,
    state: &str,
    timeout: Duration,
) -> Result<txmq_client::TransactionInfo> {
    wait_for(&format!("transaction {id} to be {state}"), timeout, || {
        let client = client.clone();
        async move {
            client
                .get_transaction(id)
                .await
                .ok()
                .filter(|t| t.state == state)
        }
    })
    .await
}

/// One node process.
pub struct Node {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub metrics_addr: String,
    /// The RocketMQ-protocol address, with [`ClusterOptions::rocketmq`].
    pub rocketmq_addr: Option<String>,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    /// The open-file limit the process starts with (`None`: inherited).
    open_files: Option<u64>,
    child: Option<Child>,
    /// Set when this node is a Docker container rather than a child process.
    container: Option<docker::Container>,
}

impl Node {
    pub fn is_running(&mut self) -> bool {
        if let Some(c) = &self.container {
            return c.is_running();
        }
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(c) = &self.container {
            return c.kill();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (or restarts) the process with the same arguments and data dir.
    pub fn start(&mut self, bin: &Path) -> Result<()> {
        if let Some(c) = &self.container {
            return c.start();
        }
        // A restarted node's old port can be taken for a moment as the source port of some
        // outgoing connection (ports the OS picks come from the ephemeral range); retry while
        // the node fails to bind, up to a deadline.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.spawn(bin)?;
            let settle = Instant::now() + Duration::from_millis(400);
            while Instant::now() < settle && self.is_running() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let bind_failed = !self.is_running()
                && self
                    .log()
                    .lines()
                    .last()
                    .is_some_and(|l| l.contains("cannot listen"));
            if !bind_failed || Instant::now() >= deadline {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn spawn(&mut self, bin: &Path) -> Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(bin);
        command
            .args(&self.args)
            .env("TXMQ_LOG_LEVEL", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(limit) = self.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting node {}", self.id))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while running as a child process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Adds `txmq serve` flags for this node's next starts.
    pub fn add_args(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|a| a.to_string()));
    }

    /// Waits (up to `timeout`) for the process to exit by itself, and gives its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .context("node is not a running process")?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("node {} still running after {timeout:?}", self.id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM: asks the process to stop (what Kubernetes and systemd send first).
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGSTOP: the process freezes (a long GC pause, a stalled VM).
    pub fn pause(&self) {
        if let Some(c) = &self.container {
            return c.pause();
        }
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        if let Some(c) = &self.container {
            return c.resume();
        }
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid with a valid signal has no memory effects.
            unsafe {
                libc::kill(c.id() as i32, signal);
            }
        }
    }

    /// Deletes the node's data directory (the process must be stopped).
    pub fn wipe(&mut self) -> Result<()> {
        if self.container.is_some() {
            bail!("wiping a container's volume is not supported by the harness");
        }
        self.kill();
        if self.data_dir.exists() {
            std::fs::remove_dir_all(&self.data_dir)?;
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        if let Some(c) = &self.container {
            return c.log();
        }
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.resume();
        if self.container.is_some() {
            // The containers belong to whoever started them (the chart test removes them).
            return;
        }
        self.kill();
    }
}

/// Extra `txmq serve` flags for every node.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub extra_args: Vec<String>,
    /// Route every peer link (each direction separately) through a [`LinkProxy`], so tests can
    /// partition the cluster.
    pub proxied_links: bool,
    /// Nodes whose data dir is a tmpfs of this many bytes (a small, real disk that fills up;
    /// needs root). Unmounted when the cluster is dropped.
    pub tmpfs_data_dirs: BTreeMap<u64, u64>,
    /// Every node's open-file limit (soft and hard), e.g. a small 1024.
    pub open_files: Option<u64>,
    /// How the harness's own clients connect (TLS, credentials); timeouts are its own.
    pub client: ClientOptions,
    /// Every node also serves the RocketMQ protocol (`--rocketmq-addr` on a free port).
    pub rocketmq: bool,
}

/// A cluster of real processes.
pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    /// (from, to) → the proxy node `from` dials to reach `to` (only with `proxied_links`).
    pub links: BTreeMap<(u64, u64), LinkProxy>,
    pub bin: PathBuf,
    /// tmpfs mounts made for [`ClusterOptions::tmpfs_data_dirs`].
    mounts: Vec<PathBuf>,
    dir: tempfile::TempDir,
    options: ClusterOptions,
}

impl Drop for Cluster {
    /// Detaches the tmpfs mounts (lazily: the node processes, killed when the nodes drop right
    /// after this, may still hold files there).
    fn drop(&mut self) {
        for mount in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
    }
}

impl Cluster {
    /// Starts `n` bootstrap voters with ids 1..=n.
    pub async fn start(n: u64, options: ClusterOptions) -> Result<Cluster> {
        let bin = txmq_binary()?;
        let dir = tempfile::Builder::new().prefix("txmq-cluster-").tempdir()?;
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            bin,
            mounts: Vec::new(),
            dir,
            options,
        };
        cluster.mount_tmpfs_data_dirs()?;
        let mut planned = Vec::new();
        for id in 1..=n {
            planned.push((id, free_port()?, free_port()?));
        }
        let initial: Vec<String> = planned
            .iter()
            .map(|(id, _, p)| format!("{id}=127.0.0.1:{p}"))
            .collect();
        if cluster.options.proxied_links {
            for (from, _, _) in &planned {
                for (to, _, peer) in &planned {
                    if from != to {
                        let proxy = LinkProxy::start(format!("127.0.0.1:{peer}")).await?;
                        cluster.links.insert((*from, *to), proxy);
                    }
                }
            }
        }
        for (id, client, peer) in planned {
            let mut node = cluster.make_node(id, client, peer, Some(initial.join(",")))?;
            let overrides: Vec<String> = cluster
                .links
                .iter()
                .filter(|((f, _), _)| *f == id)
                .map(|((_, t), p)| format!("{t}={}", p.addr))
                .collect();
            if !overrides.is_empty() {
                node.args.push("--peer-override".into());
                node.args.push(overrides.join(","));
            }
            cluster.nodes.insert(id, node);
        }
        for node in cluster.nodes.values_mut() {
            node.start(&cluster.bin)?;
        }
        cluster.wait_for_leader(Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    fn mount_tmpfs_data_dirs(&mut self) -> Result<()> {
        for (id, bytes) in self.options.tmpfs_data_dirs.clone() {
            let dir = self.dir.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&dir)?;
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(&dir)
                .status()
                .context("running mount (a tmpfs data dir needs root)")?;
            if !status.success() {
                bail!(
                    "mounting a {bytes}-byte tmpfs on {} failed ({status}); these tests need root",
                    dir.display()
                );
            }
            self.mounts.push(dir);
        }
        Ok(())
    }

    /// Gives node `id`'s tmpfs data dir a new size (freeing space without touching its files).
    pub fn resize_tmpfs(&self, id: u64, bytes: u64) -> Result<()> {
        let dir = self.dir.path().join(format!("node-{id}"));
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&dir)
            .status()?;
        ensure_success(status, "remounting a tmpfs data dir")
    }

    fn make_node(&self, id: u64, client: u16, peer: u16, initial: Option<String>) -> Result<Node> {
        let data_dir = self.dir.path().join(format!("node-{id}"));
        let client_addr = format!("127.0.0.1:{client}");
        let peer_addr = format!("127.0.0.1:{peer}");
        let metrics_addr = format!("127.0.0.1:{}", free_port()?);
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            id.to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--client-addr".into(),
            client_addr.clone(),
            "--peer-addr".into(),
            peer_addr.clone(),
            "--metrics-addr".into(),
            metrics_addr.clone(),
        ];
        if let Some(initial) = initial {
            args.push("--initial-cluster".into());
            args.push(initial);
        }
        args.extend(self.options.extra_args.iter().cloned());
        let rocketmq_addr = if self.options.rocketmq {
            Some(format!("127.0.0.1:{}", free_port()?))
        } else {
            None
        };
        if let Some(addr) = &rocketmq_addr {
            args.push("--rocketmq-addr".into());
            args.push(addr.clone());
        }
        Ok(Node {
            id,
            client_addr,
            peer_addr,
            metrics_addr,
            rocketmq_addr,
            log_path: self.dir.path().join(format!("node-{id}.log")),
            data_dir,
            args,
            open_files: self.options.open_files,
            child: None,
            container: None,
        })
    }

    /// The cluster of containers a [`docker::DockerPlan`] describes (already running).
    pub fn attach_docker(plan: &docker::DockerPlan) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("txmq-containers-")
            .tempdir()?;
        let mut nodes = BTreeMap::new();
        for n in &plan.nodes {
            let node = Node {
                id: n.id,
                client_addr: n.client_addr.clone(),
                peer_addr: String::new(),
                metrics_addr: n.metrics_addr.clone(),
                rocketmq_addr: None,
                data_dir: dir.path().join(format!("node-{}", n.id)),
                log_path: dir.path().join(format!("node-{}.log", n.id)),
                args: Vec::new(),
                open_files: None,
                child: None,
                container: Some(docker::Container {
                    name: n.container.clone(),
                    network: plan.network.clone(),
                    aliases: n.aliases.clone(),
                }),
            };
            nodes.insert(n.id, node);
        }
        if nodes.is_empty() {
            bail!("the docker plan lists no node");
        }
        Ok(Cluster {
            nodes,
            links: BTreeMap::new(),
            bin: txmq_binary()?,
            mounts: Vec::new(),
            dir,
            options: ClusterOptions::default(),
        })
    }

    /// Containers can be cut off the network only as a whole (no one-way link cuts).
    pub fn is_containers(&self) -> bool {
        self.nodes.values().any(|n| n.container.is_some())
    }

    /// Starts a fresh node that is not (yet) a member; join it with `add_node`.
    pub fn spawn_joiner(&mut self, id: u64) -> Result<&mut Node> {
        let mut node = self.make_node(id, free_port()?, free_port()?, None)?;
        node.start(&self.bin)?;
        self.nodes.insert(id, node);
        self.nodes.get_mut(&id).context("just inserted")
    }

    /// Starts a fresh node whose `--initial-cluster` lists every node of this cluster and
    /// itself, as a StatefulSet scale-up renders it: it must find the running cluster and join
    /// it on its own (learner, catch up, voter).
    pub fn spawn_listed_joiner(&mut self, id: u64) -> Result<&mut Node> {
        let peer = free_port()?;
        let mut initial: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.id != id)
            .map(|n| format!("{}={}", n.id, n.peer_addr))
            .collect();
        initial.push(format!("{id}=127.0.0.1:{peer}"));
        let mut node = self.make_node(id, free_port()?, peer, Some(initial.join(",")))?;
        node.start(&self.bin)?;
        self.nodes.insert(id, node);
        self.nodes.get_mut(&id).context("just inserted")
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// How the harness's clients connect (TLS, credentials).
    pub fn client_options(&self) -> &ClientOptions {
        &self.options.client
    }

    /// A client of every running node, with failover.
    pub fn client(&mut self) -> Result<Client> {
        let endpoints: Vec<String> = self
            .nodes
            .values_mut()
            .filter_map(|n| n.is_running().then(|| n.client_addr.clone()))
            .collect();
        Ok(Client::with_options(
            endpoints,
            self.options.client.clone(),
        )?)
    }

    /// A client of exactly one node, without failover (for per-node reads and status).
    pub fn client_of(&self, id: u64) -> Result<Client> {
        let node = self.nodes.get(&id).context("unknown node")?;
        let options = ClientOptions {
            retry_deadline: Duration::from_secs(0),
            ..self.options.client.clone()
        };
        Ok(Client::with_options([node.client_addr.as_str()], options)?)
    }

    /// Waits until some running node reports a leader that is itself running, and returns it.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> Result<u64> {
        let running: Vec<u64> = self
            .nodes
            .iter_mut()
            .filter_map(|(id, n)| n.is_running().then_some(*id))
            .collect();
        let clients: Vec<Client> = running
            .iter()
            .filter_map(|id| self.client_of(*id).ok())
            .collect();
        wait_for("a leader", timeout, || {
            let clients = clients.clone();
            let running = running.clone();
            async move {
                for c in &clients {
                    if let Ok(s) = c.cluster_status().await
                        && running.contains(&s.leader_id)
                        && s.nodes
                            .iter()
                            .any(|n| n.id == s.leader_id && n.role == "leader")
                    {
                        return Some(s.leader_id);
                    }
                }
                None
            }
        })
        .await
    }

    /// Cuts the link `from` → `to` (one way).
    pub fn cut(&self, from: u64, to: u64) {
        if let Some(p) = self.links.get(&(from, to)) {
            p.cut();
        }
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&self, node: u64) {
        if let Some(c) = self.nodes.get(&node).and_then(|n| n.container.as_ref()) {
            return c.disconnect();
        }
        for ((f, t), p) in &self.links {
            if *f == node || *t == node {
                p.cut();
            }
        }
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn split(&self, side: &[u64]) {
        if self.is_containers() {
            // Off the network, the side's containers reach nobody: a minority partition.
            for id in side {
                self.isolate(*id);
            }
            return;
        }
        for ((f, t), p) in &self.links {
            if side.contains(f) != side.contains(t) {
                p.cut();
            }
        }
    }

    pub fn heal_links(&self) {
        for c in self.nodes.values().filter_map(|n| n.container.as_ref()) {
            c.reconnect();
        }
        for p in self.links.values() {
            p.heal();
        }
    }

    /// Runs the `txmq` binary with `args` and returns (exit success, stdout).
    pub fn cli(&self, args: &[&str]) -> Result<(bool, String)> {
        let out = Command::new(&self.bin).args(args).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// Every node's client address, comma separated (for `--endpoints`).
    pub fn endpoints_csv(&self) -> String {
        self.nodes
            .values()
            .map(|n| n.client_addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .values()
            .map(|n| format!("===== node {} =====\n{}", n.id, tail(&n.log(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plain HTTP GET on loopback (tests only): returns (status code, body).
pub async fn http_get(addr: &str, path_and_query: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await??;
    let request =
        format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    Ok((status, body.to_string()))
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Finds a tool on PATH, failing loudly (never skipping) when it is missing.
pub fn required_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{name}` is not installed: run ./scripts/test.sh, which installs Debian's `prometheus` package (it provides prometheus and promtool)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the chaos run): node ports must never come from the ephemeral range
    /// (a dead node's port could be taken by a self-connected socket) nor repeat in a process.
    #[test]
    fn free_ports_are_unique_and_below_the_ephemeral_range() {
        let low = ephemeral_port_low();
        let ports: Vec<u16> = (0..200)
            .map(|_| free_port().expect("a free port"))
            .collect();
        let unique: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        assert!(
            ports.iter().all(|p| *p < low),
            "a port came from the ephemeral range"
        );
    }
}
