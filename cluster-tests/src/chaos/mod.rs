//! The chaos run: a transactional workload with ground truth against a real cluster while a
//! seeded nemesis kills, pauses and partitions nodes; then heal, drain, and check.
//!
//! `run(config)` returns a [`Report`]; the `chaos` binary and the CI test both call it. A run
//! is reproducible in its fault schedule from its seed (process timing still varies).

mod checker;
mod nemesis;
mod workload;

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

pub use checker::Violation;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    pub duration: Duration,
    pub nodes: u64,
    /// Transaction timing given to every node (short, so that the run settles quickly).
    pub first_check_delay: Duration,
    pub check_interval: Duration,
    pub max_checks: u32,
    pub max_lifetime: Duration,
    /// Run against these already running containers instead of starting processes.
    pub docker_plan: Option<crate::docker::DockerPlan>,
    /// Let the nemesis fill a node's disk too (process runs only: each node's data dir is then
    /// a tmpfs of [`DATA_DIR_BYTES`]).
    pub disk_faults: bool,
    /// TLS on every port and authentication on (process runs only): the workload and the
    /// checker connect as the administrator.
    pub secure: bool,
}

impl ChaosConfig {
    pub fn new(seed: u64, duration: Duration) -> Self {
        Self {
            seed,
            duration,
            nodes: 3,
            first_check_delay: Duration::from_millis(1500),
            check_interval: Duration::from_secs(1),
            max_checks: 8,
            max_lifetime: Duration::from_secs(30),
            docker_plan: None,
            disk_faults: false,
            secure: false,
        }
    }

    /// A run against the containers of `plan`, with the transaction timing they were given.
    pub fn for_containers(seed: u64, duration: Duration, plan: crate::docker::DockerPlan) -> Self {
        let t = plan.txn;
        Self {
            seed,
            duration,
            nodes: plan.nodes.len() as u64,
            first_check_delay: Duration::from_millis(t.first_check_delay_ms),
            check_interval: Duration::from_millis(t.check_interval_ms),
            max_checks: t.max_checks,
            max_lifetime: Duration::from_millis(t.max_lifetime_ms),
            docker_plan: Some(plan),
            disk_faults: false,
            secure: false,
        }
    }

    /// The command that reproduces this run.
    pub fn reproduce_command(&self) -> String {
        if self.docker_plan.is_some() {
            return format!(
                "CHAOS_SEED={} CHAOS_DURATION={}s ./scripts/test-chart.sh",
                self.seed,
                self.duration.as_secs()
            );
        }
        format!(
            "cargo build -p txmq-broker --bin txmq && cargo run -p txmq-cluster-tests --bin chaos -- --seed {} --duration {}s --nodes {}{}{}",
            self.seed,
            self.duration.as_secs(),
            self.nodes,
            if self.disk_faults {
                " --disk-faults"
            } else {
                ""
            },
            if self.secure { " --secure" } else { "" }
        )
    }
}

/// The outcome of a run: counts, the faults injected, and every violation found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_s: u64,
    pub faults: Vec<String>,
    pub plain_acknowledged: usize,
    pub plain_send_errors: usize,
    pub transactions_started: usize,
    pub half_send_errors: usize,
    pub committed: usize,
    pub rolled_back: usize,
    pub rolled_back_by_broker: usize,
    pub deliveries: usize,
    pub duplicate_deliveries: usize,
    pub checks_answered: usize,
    pub max_checks_seen_for_one_transaction: u32,
    pub replicas_compared: usize,
    pub violations: Vec<Violation>,
    pub reproduce: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "chaos seed={} {}s: {} faults, {} plain acked, {} txns ({} committed, {} rolled back, {} by the broker), \
             {} deliveries ({} duplicates), {} checks answered (max {} per txn), {} replicas agree: {}",
            self.seed,
            self.duration_s,
            self.faults.len(),
            self.plain_acknowledged,
            self.transactions_started,
            self.committed,
            self.rolled_back,
            self.rolled_back_by_broker,
            self.deliveries,
            self.duplicate_deliveries,
            self.checks_answered,
            self.max_checks_seen_for_one_transaction,
            self.replicas_compared,
            if self.passed() {
                "PASS".to_string()
            } else {
                format!("FAIL ({} violations)", self.violations.len())
            },
        )
    }
}

/// The size of each node's data volume (a tmpfs) in the process-based run.
pub const DATA_DIR_BYTES: u64 = 2 << 30;

/// Runs the whole scenario.
pub async fn run(config: &ChaosConfig) -> Result<Report> {
    let secrets = tempfile::tempdir()?;
    let secured = match config.secure {
        true => Some(crate::secure::secure(secrets.path())?),
        false => None,
    };
    let mut options = crate::ClusterOptions {
        extra_args: vec![
            "--txn-first-check-delay".into(),
            format!("{}ms", config.first_check_delay.as_millis()),
            "--txn-check-interval".into(),
            format!("{}ms", config.check_interval.as_millis()),
            "--txn-max-checks".into(),
            config.max_checks.to_string(),
            "--txn-max-lifetime".into(),
            format!("{}ms", config.max_lifetime.as_millis()),
            "--snapshot-logs".into(),
            "500".into(),
            "--logs-to-keep".into(),
            "100".into(),
            // The disk-full fault fills a volume past any high-water mark; deleting the oldest
            // messages then is by design (tested on its own in faults.rs) and would read as loss
            // here. This run checks that a full disk loses and stalls nothing.
            "--disk-high-water".into(),
            "1.0".into(),
        ],
        proxied_links: true,
        // Small volumes the disk-full fault can fill (RAM-backed: what the run writes).
        tmpfs_data_dirs: if config.disk_faults {
            (1..=config.nodes).map(|id| (id, DATA_DIR_BYTES)).collect()
        } else {
            Default::default()
        },
        ..Default::default()
    };
    if let Some(secured) = secured {
        options.extra_args.extend(secured.serve_flags);
        options.client = secured.admin_client;
    }
    let mut cluster = match &config.docker_plan {
        Some(plan) => crate::Cluster::attach_docker(plan)?,
        None => crate::Cluster::start(config.nodes, options).await?,
    };
    let result = async {
        let workload = workload::Workload::start(&mut cluster, config).await?;
        let faults = nemesis::run(&mut cluster, config).await?;
        nemesis::heal_everything(&mut cluster).await?;
        let truth = workload
            .stop_producers_and_settle(&mut cluster, config)
            .await?;
        let report = checker::check(&mut cluster, config, truth).await?;
        anyhow::Ok((faults, report))
    }
    .await;
    // On failure, the nodes' logs say what happened (the cluster's temp dir goes away).
    let (faults, mut report) =
        result.map_err(|e| e.context(format!("node logs:\n{}", cluster.logs())))?;
    report.faults = faults;
    report.seed = config.seed;
    report.duration_s = config.duration.as_secs();
    report.reproduce = config.reproduce_command();
    Ok(report)
}
