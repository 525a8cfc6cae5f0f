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
    /// A node's data volume fills up (a ballast file takes all but half the reserve).
    DiskFull,
}

const FAULTS: [Fault; 8] = [
    Fault::KillLeader,
    Fault::KillRandom,
    Fault::PauseRandom,
    Fault::PauseLeader,
    Fault::IsolateLeader,
    Fault::MajorityMinority,
    Fault::OneWayCut,
    Fault::DiskFull,
];

/// The file a disk-full fault writes into a node's data dir (on its tmpfs).
const BALLAST: &str = "nemesis-ballast";

/// Fills the volume of `data_dir` to within `leave` bytes of full with a ballast file.
fn fill_disk(data_dir: &std::path::Path, leave: u64) -> Result<u64> {
    use std::io::Write;
    let free = free_bytes(data_dir)?;
    let size = free.saturating_sub(leave);
    let mut file = std::fs::File::create(data_dir.join(BALLAST))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let n = (size - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        written += n as u64;
    }
    Ok(size)
}

fn free_bytes(dir: &std::path::Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

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
    let containers = cluster.is_containers();
    // Containers leave the network as a whole: no one-way cuts there; and their volumes are
    // not the small tmpfs a disk-full fault fills.
    let faults: Vec<Fault> = FAULTS
        .into_iter()
        .filter(|f| !(containers && matches!(f, Fault::OneWayCut)))
        .filter(|f| config.disk_faults && !containers || !matches!(f, Fault::DiskFull))
        .collect();
    while started.elapsed() < config.duration {
        // Calm between faults.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
        let fault = faults[rng.random_range(0..faults.len())];
        let hold = Duration::from_millis(rng.random_range(1_500..4_000));
        let at = started.elapsed().as_secs_f64();
        let what = inject(cluster, fault, hold, &mut rng).await?;
        tracing::info!("nemesis at {at:.1}s: {what}");
        log.push(format!("{at:.1}s {what}"));
    }
    Ok(log)
}

/// Injects one fault, holds it for `hold`, heals it; says what it did.
async fn inject(
    cluster: &mut Cluster,
    fault: Fault,
    hold: Duration,
    rng: &mut StdRng,
) -> Result<String> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let (kill, pause, cut_off) = if cluster.is_containers() {
        ("docker kill", "docker pause", "docker network disconnect")
    } else {
        ("kill -9", "SIGSTOP", "isolate")
    };
    let any = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())];
    Ok(match fault {
        Fault::KillLeader | Fault::KillRandom => {
            let victim = match fault {
                Fault::KillLeader => leader_or_any(cluster, rng).await,
                _ => any(rng),
            };
            cluster.node(victim).kill();
            tokio::time::sleep(hold).await;
            let bin = cluster.bin.clone();
            cluster.node(victim).start(&bin)?;
            format!("{kill} node {victim}, restart after {hold:?}")
        }
        Fault::PauseRandom | Fault::PauseLeader => {
            let victim = match fault {
                Fault::PauseLeader => leader_or_any(cluster, rng).await,
                _ => any(rng),
            };
            cluster.node(victim).pause();
            tokio::time::sleep(hold).await;
            cluster.node(victim).resume();
            format!("{pause} node {victim} for {hold:?}")
        }
        Fault::IsolateLeader => {
            let victim = leader_or_any(cluster, rng).await;
            cluster.isolate(victim);
            tokio::time::sleep(hold).await;
            cluster.heal_links();
            format!("{cut_off} leader {victim} for {hold:?}")
        }
        Fault::MajorityMinority => {
            let minority = any(rng);
            cluster.split(&[minority]);
            tokio::time::sleep(hold).await;
            cluster.heal_links();
            format!("{cut_off} {{{minority}}} from the rest for {hold:?}")
        }
        Fault::DiskFull => fill_disk_for(cluster, any(rng), hold).await?,
        Fault::OneWayCut => {
            let from = any(rng);
            let others: Vec<u64> = ids.iter().copied().filter(|i| *i != from).collect();
            let to = others
                .get(rng.random_range(0..others.len().max(1)))
                .copied()
                .unwrap_or(from);
            cluster.cut(from, to);
            tokio::time::sleep(hold).await;
            cluster.heal_links();
            format!("cut link {from} -> {to} (one way) for {hold:?}")
        }
    })
}

/// Fills `victim`'s data volume to half its default reserve (5 % of the volume) for `hold`.
async fn fill_disk_for(cluster: &mut Cluster, victim: u64, hold: Duration) -> Result<String> {
    let data_dir = cluster.node(victim).data_dir.clone();
    let size = fill_disk(&data_dir, super::DATA_DIR_BYTES / 40)?;
    tokio::time::sleep(hold).await;
    std::fs::remove_file(data_dir.join(BALLAST))?;
    Ok(format!(
        "fill node {victim}'s disk ({} MiB ballast) for {hold:?}",
        size >> 20
    ))
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
