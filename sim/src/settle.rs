//! After the faults: the cluster must make progress, decide every transaction, let consumers
//! drain, and bring every replica to the same point — each within a bound of simulated time.
//! A bound missed is a liveness failure.

use std::sync::Arc;
use std::time::Duration;

use txmq_state::Operation;

use crate::client::Client;
use crate::cluster::Cluster;
use crate::history::SendFate;
use crate::net::CLIENT_BASE;
use crate::replica::{Replica, ReplicaView};
use crate::workload::{GROUPS, Workload};

/// Waits until `done` holds, checking every 100 ms, for at most `bound`.
async fn within(bound: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + bound;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "liveness: {what} within {bound:?} after the faults stopped"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn acked_sends(w: &Workload) -> usize {
    w.history()
        .sends
        .values()
        .filter(|f| matches!(f, SendFate::Acked { .. }))
        .count()
}

/// Runs the settling phase; returns every running replica, in node order, once they agree on
/// what they applied.
pub async fn settle(w: &Arc<Workload>) -> Result<Vec<(u64, ReplicaView)>, String> {
    let cluster = &w.cluster;
    let before = acked_sends(w);
    within(Duration::from_secs(15), "a send is acknowledged", || {
        acked_sends(w) > before
    })
    .await?;
    w.stop_producing();
    within(Duration::from_secs(10), "producers finish", || {
        w.producers_done()
    })
    .await?;
    within(
        Duration::from_secs(15),
        "every transaction is decided",
        || {
            cluster
                .leader_state(|r| r.state().transactions().pending_count() == 0)
                .unwrap_or(false)
        },
    )
    .await?;
    within(
        Duration::from_secs(30),
        "consumer groups drain their topics",
        || cluster.leader_state(drained).unwrap_or(false),
    )
    .await?;
    converge(cluster).await
}

/// Every group has acknowledged every message of its topic and holds no lease.
fn drained(r: &Replica) -> bool {
    let state = r.state();
    GROUPS.iter().all(|(group, topic)| {
        let Some(t) = state.topic(topic) else {
            return false;
        };
        match state.group(group, topic) {
            Some(g) => g
                .queues
                .iter()
                .zip(&t.next_offsets)
                .all(|(q, next)| q.ack_offset == *next && q.leases.is_empty()),
            None => t.next_offsets.iter().all(|n| *n == 0),
        }
    })
}

async fn converge(cluster: &Arc<Cluster>) -> Result<Vec<(u64, ReplicaView)>, String> {
    // A blank write makes every replica's commit index move past the last entry.
    let mut client = Client::new(CLIENT_BASE, cluster.clone(), cluster.rng().fork());
    let _ = client.call(Operation::Batch(Vec::new())).await;
    within(
        Duration::from_secs(10),
        "every voter applies the same log",
        || {
            let voters = cluster.voters();
            let applied: Vec<_> = voters
                .iter()
                .filter_map(|id| cluster.running(*id).map(|r| r.replica().last_applied))
                .collect();
            let target = cluster.leader_state(|r| r.last_applied).flatten();
            applied.len() == voters.len()
                && target.is_some()
                && applied.iter().all(|a| *a == target)
        },
    )
    .await?;
    let mut replicas = Vec::new();
    for id in cluster.voters() {
        let Some(running) = cluster.running(id) else {
            return Err(format!("node {id} stopped after the voters agreed"));
        };
        let view = running.replica().view();
        replicas.push((id, view.map_err(|e| format!("node {id}'s stores: {e}"))?));
    }
    Ok(replicas)
}
