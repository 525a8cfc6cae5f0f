//! The short chaos run of every CI run: node kills, pauses and partitions (both ways, one way,
//! majority/minority, isolated leader) against a transactional workload, then the full check.
//!
//! The cluster runs as production should: TLS on both ports and authentication on (the
//! workload connects as an administrator); `TXMQ_CHAOS_SECURE=0` runs it in plaintext.
//! `TXMQ_CHAOS_SEED` and `TXMQ_CHAOS_DURATION` (e.g. `90s`) override the defaults; the long
//! run is the `chaos` binary (docs/testing.md).

use std::time::Duration;

use anyhow::{Result, bail};
use txmq_cluster_tests::chaos::{ChaosConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short_run_keeps_every_guarantee() -> Result<()> {
    let seed = match std::env::var("TXMQ_CHAOS_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let duration = match std::env::var("TXMQ_CHAOS_DURATION") {
        Ok(d) => humantime::parse_duration(&d)?,
        Err(_) => Duration::from_secs(45),
    };
    let mut config = ChaosConfig::new(seed, duration);
    config.secure = std::env::var("TXMQ_CHAOS_SECURE").map_or(true, |v| v != "0");
    eprintln!(
        "chaos: seed {seed}, {duration:?} (reproduce: {})",
        config.reproduce_command()
    );
    let report = match run(&config).await {
        Ok(r) => r,
        Err(e) => bail!(
            "chaos run could not complete: {e:#}\nreproduce: {}",
            config.reproduce_command()
        ),
    };
    let path = std::env::temp_dir().join(format!("txmq-chaos-{seed}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("{}\nreport: {}", report.summary(), path.display());
    for fault in &report.faults {
        eprintln!("  fault {fault}");
    }
    if !report.passed() {
        let lines: Vec<String> = report
            .violations
            .iter()
            .map(|v| format!("  {}: {}", v.rule, v.detail))
            .collect();
        bail!(
            "{}\n{}\nreproduce: {}",
            report.summary(),
            lines.join("\n"),
            report.reproduce
        );
    }
    // The run must have exercised something, or it proves nothing.
    if report.faults.is_empty()
        || report.committed == 0
        || report.plain_acknowledged == 0
        || report.deliveries == 0
    {
        bail!(
            "the chaos run did too little to prove anything: {}",
            report.summary()
        );
    }
    Ok(())
}
