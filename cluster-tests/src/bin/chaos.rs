//! `chaos`: the long chaos run on demand.
//!
//!     cargo build -p txmq-broker --bin txmq
//!     cargo run -p txmq-cluster-tests --bin chaos -- --duration 10m --seed 42 --report chaos.json
//!
//! Exits non-zero when a guarantee was broken; the report says which, and how to reproduce.

use std::process::ExitCode;

use clap::Parser;
use txmq_cluster_tests::chaos::{ChaosConfig, run};

#[derive(Parser)]
#[command(
    about = "Runs a transactional workload against a real txmq cluster under node kills, pauses and partitions"
)]
struct Args {
    /// How long the nemesis injects faults (then the run heals, drains and checks).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// The seed of the fault schedule and workload (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Run against the containers this plan lists (written by the Helm chart's container test)
    /// instead of starting local processes; the nemesis uses docker kill, pause and network
    /// disconnect.
    #[arg(long)]
    docker_plan: Option<std::path::PathBuf>,
    /// Also fill a node's disk now and then (each node's data dir becomes a 2 GiB tmpfs; needs
    /// root). Not part of the CI run: see docs/testing.md.
    #[arg(long)]
    disk_faults: bool,
    /// TLS on every port and authentication on (the workload connects as an administrator).
    #[arg(long)]
    secure: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "chaos-report.json")]
    report: std::path::PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let config = match &args.docker_plan {
        Some(path) => match txmq_cluster_tests::docker::DockerPlan::load(path) {
            Ok(plan) => ChaosConfig::for_containers(seed, args.duration, plan),
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => {
            let mut config = ChaosConfig::new(seed, args.duration);
            config.nodes = args.nodes;
            config.disk_faults = args.disk_faults;
            config.secure = args.secure;
            config
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&config)) {
        Ok(report) => {
            let json = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Err(e) = std::fs::write(&args.report, &json) {
                eprintln!("cannot write {}: {e}", args.report.display());
            }
            println!("{}", report.summary());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                for v in &report.violations {
                    println!("  {}: {}", v.rule, v.detail);
                }
                println!("reproduce with: {}", report.reproduce);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!(
                "chaos run failed (seed {seed}): {e:#}\nreproduce with: {}",
                config.reproduce_command()
            );
            ExitCode::FAILURE
        }
    }
}
