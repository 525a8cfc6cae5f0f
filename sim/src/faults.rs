//! The fault schedule (the nemesis): while the chaos phase lasts, at random moments it crashes
//! nodes (power loss or process exit; sometimes a majority at once), isolates a node, cuts one
//! direction of a link, makes the network lossy, slow or duplicating, makes a disk slow or
//! failing — each undone after a random while. Every fault is an event in the trace, so a
//! failing seed prints its schedule.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::disk::DiskFaults;
use crate::net::{CLIENT_BASE, NetFaults};
use crate::node;
use crate::rng::SimRng;
use crate::types::{NodeId, spawn};

/// Runs faults until `until_ms` (simulated time since the start).
pub async fn nemesis(cluster: Arc<Cluster>, mut rng: SimRng, until_ms: u64) {
    while cluster.elapsed_ms() < until_ms {
        let wait = rng.between(200, 1_500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if cluster.elapsed_ms() >= until_ms {
            break;
        }
        let lasts = Duration::from_millis(rng.between(300, 4_000));
        let members = cluster.members();
        let victim = members[rng.below(members.len() as u64) as usize];
        match rng.below(100) {
            0..=29 => crash_for(&cluster, vec![victim], rng.chance(0.7), lasts),
            30..=34 => {
                let majority = majority(&cluster, &mut rng);
                crash_for(&cluster, majority, true, lasts.min(Duration::from_secs(2)));
            }
            35..=49 => isolate(&cluster, victim, lasts),
            50..=59 => {
                let other = members[rng.below(members.len() as u64) as usize];
                block(&cluster, vec![(victim, other)], lasts, "one-way partition");
            }
            60..=69 => lossy(&cluster, &mut rng, lasts),
            70..=74 => {
                let skew = rng.between(100, 3_000) as i64 * if rng.chance(0.5) { 1 } else { -1 };
                skew_clock(&cluster, victim, skew, lasts);
            }
            75..=79 => spawn(crate::membership::replace_a_voter(
                cluster.clone(),
                rng.fork(),
            )),
            80..=87 => disk_fault(
                &cluster,
                victim,
                DiskFaults {
                    error_rate: 0.0,
                    slow: true,
                },
                lasts,
            ),
            _ => disk_fault(
                &cluster,
                victim,
                DiskFaults {
                    error_rate: 0.05,
                    slow: false,
                },
                lasts,
            ),
        }
    }
}

fn majority(cluster: &Cluster, rng: &mut SimRng) -> Vec<NodeId> {
    let mut ids = cluster.voters();
    let keep = ids.len() / 2 + 1;
    while ids.len() > keep {
        let i = rng.below(ids.len() as u64) as usize;
        ids.remove(i);
    }
    ids
}

fn crash_for(cluster: &Arc<Cluster>, ids: Vec<NodeId>, power_loss: bool, down: Duration) {
    let crashed: Vec<NodeId> = ids
        .into_iter()
        .filter(|id| node::crash(cluster, *id, power_loss))
        .collect();
    let cluster = cluster.clone();
    spawn(async move {
        tokio::time::sleep(down).await;
        for id in crashed {
            node::restart(&cluster, id).await;
        }
    });
}

/// Cuts `id` off from everyone, clients included.
fn isolate(cluster: &Arc<Cluster>, id: NodeId, lasts: Duration) {
    let mut links = Vec::new();
    let others = cluster
        .members()
        .into_iter()
        .chain(CLIENT_BASE..CLIENT_BASE + 64);
    for other in others.filter(|o| *o != id) {
        links.push((id, other));
        links.push((other, id));
    }
    block(cluster, links, lasts, "isolated");
}

fn block(cluster: &Arc<Cluster>, links: Vec<(u64, u64)>, lasts: Duration, what: &'static str) {
    let mut faults = cluster.net.faults();
    let added: Vec<(u64, u64)> = links
        .into_iter()
        .filter(|l| l.0 != l.1 && faults.blocked.insert(*l))
        .collect();
    if added.is_empty() {
        return;
    }
    cluster.net.set_faults(faults);
    let first = added[0];
    cluster.event(|| {
        format!(
            "{what}: {} links blocked, first {first:?}, for {lasts:?}",
            added.len()
        )
    });
    let cluster = cluster.clone();
    spawn(async move {
        tokio::time::sleep(lasts).await;
        let mut faults = cluster.net.faults();
        for l in &added {
            faults.blocked.remove(l);
        }
        cluster.net.set_faults(faults);
        cluster.event(|| format!("healed: {what} from {first:?}"));
    });
}

fn lossy(cluster: &Arc<Cluster>, rng: &mut SimRng, lasts: Duration) {
    let mut faults = cluster.net.faults();
    faults.drop_rate = rng.between(2, 30) as f64 / 100.0;
    faults.duplicate_rate = rng.between(0, 5) as f64 / 100.0;
    faults.extra_latency_us = rng.between(0, 20_000);
    let f = faults.clone();
    cluster.event(|| {
        format!(
            "network: drop {} dup {} +{}us for {lasts:?}",
            f.drop_rate, f.duplicate_rate, f.extra_latency_us
        )
    });
    cluster.net.set_faults(faults);
    let cluster = cluster.clone();
    spawn(async move {
        tokio::time::sleep(lasts).await;
        let mut faults = cluster.net.faults();
        faults.drop_rate = 0.0;
        faults.duplicate_rate = 0.0;
        faults.extra_latency_us = 0;
        cluster.net.set_faults(faults);
        cluster.event(|| "network: clean again".to_string());
    });
}

/// Puts node `id`'s clock `skew_ms` off for a while (NTP trouble): as leader it stamps that
/// time into its commands.
fn skew_clock(cluster: &Arc<Cluster>, id: NodeId, skew_ms: i64, lasts: Duration) {
    cluster.event(|| format!("clock of node {id}: {skew_ms:+} ms for {lasts:?}"));
    cluster.set_skew(id, skew_ms);
    let cluster = cluster.clone();
    spawn(async move {
        tokio::time::sleep(lasts).await;
        cluster.set_skew(id, 0);
        cluster.event(|| format!("clock of node {id}: accurate again"));
    });
}

fn disk_fault(cluster: &Arc<Cluster>, id: NodeId, faults: DiskFaults, lasts: Duration) {
    let Some(disk) = cluster.disk(id) else {
        return;
    };
    cluster.event(|| format!("disk of node {id}: {faults:?} for {lasts:?}"));
    disk.set_faults(faults);
    let cluster = cluster.clone();
    spawn(async move {
        tokio::time::sleep(lasts).await;
        disk.set_faults(DiskFaults::default());
        cluster.event(|| format!("disk of node {id}: healthy again"));
    });
}

/// Ends every fault: the network is clean, disks healthy, every node up.
pub async fn heal_all(cluster: &Arc<Cluster>) {
    cluster.net.set_faults(NetFaults::default());
    for id in cluster.members() {
        cluster.set_skew(id, 0);
        if let Some(disk) = cluster.disk(id) {
            disk.set_faults(DiskFaults::default());
        }
        node::restart(cluster, id).await;
    }
    cluster.event(|| "all faults healed".to_string());
}
