//! The nemesis: a seeded schedule of faults, one at a time, each healed before the next.

use std::time::Duration;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ChaosConfig;
use crate::Cluster;

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillRandom,
    PauseRandom,
    PauseLeader,
    IsolateLeader,
    MajorityMinority,
    OneWayCut,
}

const FAULTS: [Fault; 7] = [
    Fault::KillLeader,
    Fault::KillRandom,
    Fault::PauseRandom,
    Fault::PauseLeader,
    Fault::IsolateLeader,
    Fault::MajorityMinority,
    Fault::OneWayCut,
];

async fn leader_or_any(cluster: &mut Cluster, rng: &mut StdRng) -> u64 {
    match cluster.wait_for_leader(Duration::from_secs(10)).await {
        Ok(l) => l,
        Err(_) => {
            let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
            ids[rng.random_range(0..ids.len())]
        }
    }
}

/// Injects faults until the configured duration is over; returns what it did, with times.
pub async fn run(cluster: &mut Cluster, config: &ChaosConfig) -> Result<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let started = tokio::time::Instant::now();
    let mut log = Vec::new();
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    // Containers leave the network as a whole: no one-way cuts there.
    let containers = cluster.is_containers();
    let faults: Vec<Fault> = FAULTS
        .into_iter()
        .filter(|f| !(containers && matches!(f, Fault::OneWayCut)))
        .collect();
    let (kill, pause, cut_off) = if containers {
        ("docker kill", "docker pause", "docker network disconnect")
    } else {
        ("kill -9", "SIGSTOP", "isolate")
    };
    while started.elapsed() < config.duration {
        // Calm between faults.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
        let fault = faults[rng.random_range(0..faults.len())];
        let hold = Duration::from_millis(rng.random_range(1_500..4_000));
        let at = started.elapsed().as_secs_f64();
        let what = match fault {
            Fault::KillLeader | Fault::KillRandom => {
                let victim = match fault {
                    Fault::KillLeader => leader_or_any(cluster, &mut rng).await,
                    _ => ids[rng.random_range(0..ids.len())],
                };
                cluster.node(victim).kill();
                tokio::time::sleep(hold).await;
                let bin = cluster.bin.clone();
                cluster.node(victim).start(&bin)?;
                format!("{kill} node {victim}, restart after {hold:?}")
            }
            Fault::PauseRandom | Fault::PauseLeader => {
                let victim = match fault {
                    Fault::PauseLeader => leader_or_any(cluster, &mut rng).await,
                    _ => ids[rng.random_range(0..ids.len())],
                };
                cluster.node(victim).pause();
                tokio::time::sleep(hold).await;
                cluster.node(victim).resume();
                format!("{pause} node {victim} for {hold:?}")
            }
            Fault::IsolateLeader => {
                let victim = leader_or_any(cluster, &mut rng).await;
                cluster.isolate(victim);
                tokio::time::sleep(hold).await;
                cluster.heal_links();
                format!("{cut_off} leader {victim} for {hold:?}")
            }
            Fault::MajorityMinority => {
                let minority = ids[rng.random_range(0..ids.len())];
                cluster.split(&[minority]);
                tokio::time::sleep(hold).await;
                cluster.heal_links();
                format!("{cut_off} {{{minority}}} from the rest for {hold:?}")
            }
            Fault::OneWayCut => {
                let from = ids[rng.random_range(0..ids.len())];
                let to = *ids
                    .iter()
                    .filter(|i| **i != from)
                    .nth(rng.random_range(0..ids.len() - 1))
                    .unwrap_or(&from);
                cluster.cut(from, to);
                tokio::time::sleep(hold).await;
                cluster.heal_links();
                format!("cut link {from} -> {to} (one way) for {hold:?}")
            }
        };
        tracing::info!("nemesis at {at:.1}s: {what}");
        log.push(format!("{at:.1}s {what}"));
    }
    Ok(log)
}

/// Heals links, resumes and restarts every node, and waits for a leader.
pub async fn heal_everything(cluster: &mut Cluster) -> Result<()> {
    cluster.heal_links();
    let bin = cluster.bin.clone();
    for node in cluster.nodes.values_mut() {
        node.resume();
        if !node.is_running() {
            node.start(&bin)?;
        }
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    Ok(())
}
