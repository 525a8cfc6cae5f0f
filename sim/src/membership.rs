//! Membership changes under faults, as an operator makes them: a new node joins as a learner,
//! is promoted to voter once caught up, then another voter is removed, retired (its id never
//! used again) and stopped for good. Each step goes to whichever node leads at the time; a step
//! that fails (the leader crashed, the network dropped it) ends the change where it stands.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ChangeMembers;
use txmq_state::{Command, Operation};

use crate::cluster::Cluster;
use crate::node;
use crate::rng::SimRng;
use crate::types::NodeId;

/// How long one step may take before the change is given up.
const STEP: Duration = Duration::from_secs(5);

/// Adds a node, then removes another voter (keeping the cluster's size).
pub async fn replace_a_voter(cluster: Arc<Cluster>, mut rng: SimRng) {
    // One membership change at a time, as the real node enforces.
    if cluster.changing_membership.swap(true, Ordering::SeqCst) {
        return;
    }
    let outcome = replace(&cluster, &mut rng).await;
    cluster.event(|| format!("membership change: {outcome}"));
    cluster.changing_membership.store(false, Ordering::SeqCst);
}

async fn replace(cluster: &Arc<Cluster>, rng: &mut SimRng) -> String {
    let new = cluster.add_node();
    if let Err(e) = node::start(cluster, new).await {
        return e;
    }
    cluster.event(|| format!("membership change: adding node {new}"));
    let node = crate::types::node_info(new);
    let added = step(cluster, |raft| {
        let node = node.clone();
        async move { raft.add_learner(new, node, true).await.map(|_| ()) }
    })
    .await;
    if let Err(e) = added {
        return format!("node {new} not added as learner: {e}");
    }
    let promote: BTreeSet<NodeId> = [new].into();
    let promoted = step(cluster, |raft| {
        let ids = promote.clone();
        async move {
            raft.change_membership(ChangeMembers::AddVoterIds(ids), true)
                .await
                .map(|_| ())
        }
    })
    .await;
    if let Err(e) = promoted {
        return format!("node {new} not promoted: {e}");
    }
    let voters: Vec<NodeId> = cluster.voters().into_iter().filter(|v| *v != new).collect();
    let victim = voters[rng.below(voters.len() as u64) as usize];
    match remove(cluster, victim).await {
        Ok(()) => format!("node {new} joined, node {victim} removed and retired"),
        Err(e) => format!("node {new} joined; removing node {victim} failed: {e}"),
    }
}

async fn remove(cluster: &Arc<Cluster>, victim: NodeId) -> Result<(), String> {
    let ids: BTreeSet<NodeId> = [victim].into();
    step(cluster, |raft| {
        let ids = ids.clone();
        async move {
            raft.change_membership(ChangeMembers::RemoveVoters(ids), true)
                .await
                .map(|_| ())
        }
    })
    .await?;
    step(cluster, |raft| {
        let ids = ids.clone();
        async move {
            raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
                .await
                .map(|_| ())
        }
    })
    .await?;
    cluster.retire(victim);
    node::crash(cluster, victim, false);
    let retire = Command::new(cluster.now_ms(), Operation::RetireNode { id: victim });
    step(cluster, |raft| {
        let c = retire.clone();
        async move { raft.client_write(c).await.map(|_| ()) }
    })
    .await
}

/// Runs one step on the current leader, retrying while there is none, for at most [`STEP`].
async fn step<F, Fut, E>(cluster: &Arc<Cluster>, f: F) -> Result<(), String>
where
    F: Fn(crate::cluster::Raft) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + STEP;
    let mut last = String::from("no leader");
    while tokio::time::Instant::now() < deadline {
        if let Some(leader) = cluster.leader() {
            match tokio::time::timeout_at(deadline, f(leader.raft.clone())).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}
