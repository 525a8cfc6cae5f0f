//! `txmq-sim`: run seeds of the deterministic simulation, replay one, list the planted bugs.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use txmq_sim::bugs::Bug;
use txmq_sim::run::{RunConfig, SeedResult, run_seed};

#[derive(Parser)]
#[command(
    name = "txmq-sim",
    about = "Deterministic simulation of txmq clusters under seeded faults"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` for people, `json` for one JSON document.
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run seeds: `--seeds N [--start-seed S]`, or replay one with `--seed S [--trace]`.
    Run(RunArgs),
    /// List the planted bugs (`run --bug NAME` runs with one).
    Bugs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100, conflicts_with = "seed")]
    seeds: u64,
    /// The first seed of `--seeds`.
    #[arg(long, default_value_t = 0)]
    start_seed: u64,
    /// Run this one seed (its summary includes the trace hash).
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = cluster_size)]
    nodes: usize,
    /// Plant a bug (see `txmq-sim bugs`).
    #[arg(long)]
    bug: Option<Bug>,
    /// How long faults go on in each seed, in simulated seconds.
    #[arg(long, default_value_t = 15)]
    chaos_seconds: u64,
    /// Print the whole trace of `--seed`.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Stop at the first failing seed (how `--bug` runs are meant to be used).
    #[arg(long)]
    stop_at_failure: bool,
}

fn cluster_size(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("clusters of 3 or 5 nodes are simulated, not {s}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bugs => {
            let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            match cli.output {
                Output::Json => println!("{}", json!({ "bugs": names })),
                Output::Text => names.iter().for_each(|n| println!("{n}")),
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => run(&args, cli.output),
    }
}

fn replay_command(args: &RunArgs, seed: u64) -> String {
    let mut cmd = format!("txmq-sim run --seed {seed} --nodes {}", args.nodes);
    if args.chaos_seconds != 15 {
        cmd.push_str(&format!(" --chaos-seconds {}", args.chaos_seconds));
    }
    if let Some(bug) = args.bug {
        cmd.push_str(&format!(" --bug {bug}"));
    }
    cmd + " --trace"
}

fn run(args: &RunArgs, output: Output) -> ExitCode {
    let config = RunConfig {
        nodes: args.nodes,
        bug: args.bug,
        chaos_ms: args.chaos_seconds * 1000,
        keep_trace: args.trace,
    };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.start_seed..args.start_seed.saturating_add(args.seeds)).collect(),
    };
    let started = Instant::now();
    let mut results = Vec::new();
    for seed in seeds {
        let result = run_seed(&config, seed);
        let failed = result.violation.is_some();
        if failed && output == Output::Text {
            report_failure(args, &config, &result);
        }
        results.push(result);
        if failed && args.stop_at_failure {
            break;
        }
    }
    summarize(args, output, &results, started.elapsed().as_secs_f64())
}

/// Prints a failing seed: its first broken rule, its fault schedule, and how to replay it.
fn report_failure(args: &RunArgs, config: &RunConfig, result: &SeedResult) {
    let violation = result.violation.as_deref().unwrap_or_default();
    eprintln!("seed {} FAILED: {violation}", result.seed);
    let traced = run_seed(
        &RunConfig {
            keep_trace: true,
            ..config.clone()
        },
        result.seed,
    );
    if traced.trace_hash != result.trace_hash {
        eprintln!("  (the replay took another path: the simulation is not deterministic here)");
    }
    eprintln!("  fault schedule:");
    for line in traced.trace.iter().filter(|l| is_fault(l)) {
        eprintln!("    {line}");
    }
    eprintln!("  replay: {}", replay_command(args, result.seed));
}

/// A trace line that belongs to the fault schedule (not to the workload).
fn is_fault(line: &str) -> bool {
    let node_event = line.contains(" node ")
        && ["crashed", "started", "stopped by itself"]
            .iter()
            .any(|w| line.contains(w));
    node_event
        || [
            "isolated", "one-way", "network:", "disk of", "clock of", "healed",
        ]
        .iter()
        .any(|w| line.contains(w))
}

fn summarize(args: &RunArgs, output: Output, results: &[SeedResult], wall: f64) -> ExitCode {
    let failed: Vec<u64> = results
        .iter()
        .filter(|r| r.violation.is_some())
        .map(|r| r.seed)
        .collect();
    let sim_seconds: f64 = results.iter().map(|r| r.sim_ms as f64 / 1000.0).sum();
    let mut summary = json!({
        "seeds": results.len(),
        "passed": results.len() - failed.len(),
        "failed": failed,
        "sim_seconds": (sim_seconds * 10.0).round() / 10.0,
        "wall_seconds": (wall * 100.0).round() / 100.0,
        "nodes": args.nodes,
    });
    if let Some(bug) = args.bug {
        summary["bug"] = json!(bug.name());
    }
    if !failed.is_empty() {
        let replay: Vec<String> = failed.iter().map(|s| replay_command(args, *s)).collect();
        summary["replay"] = json!(replay);
        let violations: Vec<serde_json::Value> = results
            .iter()
            .filter_map(|r| {
                r.violation
                    .as_ref()
                    .map(|v| json!({"seed": r.seed, "violation": v}))
            })
            .collect();
        summary["violations"] = json!(violations);
    }
    if let [one] = results {
        summary["trace_hash"] = json!(format!("{:016x}", one.trace_hash));
        summary["events"] = json!(one.events);
        if let Some(v) = &one.violation {
            summary["violation"] = json!(v);
        }
    }
    match output {
        Output::Json => println!("{summary}"),
        Output::Text => print_text(results, &summary, wall, sim_seconds),
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_text(results: &[SeedResult], summary: &serde_json::Value, wall: f64, sim: f64) {
    if let [one] = results {
        for line in &one.trace {
            println!("{line}");
        }
    }
    println!(
        "{} seeds, {} passed, failed: {}; {:.0} simulated s in {:.1} wall s ({:.0}x, {:.0} seeds/min)",
        results.len(),
        summary["passed"],
        summary["failed"],
        sim,
        wall,
        sim / wall.max(1e-9),
        results.len() as f64 * 60.0 / wall.max(1e-9)
    );
    if let Some(h) = summary.get("trace_hash") {
        println!("trace hash {}", h.as_str().unwrap_or_default());
    }
}
