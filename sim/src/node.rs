//! A simulated node's life: start an incarnation over its disk, crash it (power loss or
//! process exit), and restart it when its Raft stops by itself (a storage error), as the
//! real node exits for its supervisor to restart it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::async_runtime::WatchReceiver;

use crate::cluster::Raft;
use crate::cluster::{Cluster, Running};
use crate::log_store::SimLogStore;
use crate::raft_net::SimNetworkFactory;
use crate::state_machine::SimStateMachine;
use crate::types::{NodeId, spawn};

/// The Raft settings of a simulated node: the real node's safety settings and shape
/// (heartbeats, randomized elections, snapshots and purges), at the simulation's scale.
pub fn raft_config() -> Arc<openraft::Config> {
    let config = txmq_raft_store::with_safety_settings(openraft::Config {
        cluster_name: "txmq-sim".into(),
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        // Snapshots every 100 entries, 20 kept after one: a node down for a few seconds
        // catches up from a snapshot.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(100),
        max_in_snapshot_log_to_keep: 20,
        max_payload_entries: 64,
        ..Default::default()
    });
    Arc::new(
        config
            .validate()
            .expect("the simulator's Raft settings are valid"),
    )
}

/// Starts a new incarnation of `id` from what its disk holds. (Boxed: starting spawns the
/// watcher that may start the node again, a cycle the compiler cannot see through.)
pub fn start(cluster: &Arc<Cluster>, id: NodeId) -> BoxFuture<'static, Result<(), String>> {
    Box::pin(start_incarnation(cluster.clone(), id))
}

async fn start_incarnation(cluster: Arc<Cluster>, id: NodeId) -> Result<(), String> {
    let cluster = &cluster;
    let disk = cluster.disk(id).ok_or_else(|| format!("no node {id}"))?;
    let store = SimLogStore::open(disk.clone(), cluster.bug)
        .map_err(|e| format!("node {id} could not open its raft log: {e}"))?;
    if let Some((segment, at)) = store.torn_tail_cut() {
        cluster.event(|| {
            format!("node {id} cut a torn log tail: segment {segment} now ends at byte {at}")
        });
    }
    let machine = SimStateMachine::open(disk.clone())
        .map_err(|e| format!("node {id} could not open its state machine's stores: {e}"))?;
    let replica = machine.replica();
    let loaded = replica.lock().map(|r| r.last_applied).unwrap_or_default();
    cluster.event(|| format!("node {id} loaded its stores: applied up to {loaded:?}"));
    let network = SimNetworkFactory {
        cluster: cluster.clone(),
        from: id,
    };
    let raft = Raft::new(id, raft_config(), network, store, machine)
        .await
        .map_err(|e| format!("node {id} did not start: {e}"))?;
    let incarnation = {
        let mut nodes = cluster.nodes();
        let slot = nodes.get_mut(&id).ok_or_else(|| format!("no node {id}"))?;
        slot.incarnations += 1;
        slot.running = Some(Running {
            raft: raft.clone(),
            replica,
            incarnation: slot.incarnations,
        });
        slot.incarnations
    };
    cluster.event(|| format!("node {id} started (incarnation {incarnation})"));
    spawn(crate::scheduler::run(cluster.clone(), id, incarnation));
    spawn(watch_for_stop(cluster.clone(), id, incarnation));
    Ok(())
}

/// Founds the cluster: the first voter initializes the membership of all voters.
pub async fn initialize(cluster: &Arc<Cluster>) -> Result<(), String> {
    let first = cluster.initial_voters[0];
    let running = cluster
        .running(first)
        .ok_or("the first voter is not running")?;
    let members: BTreeMap<NodeId, crate::types::NodeInfo> = cluster
        .initial_voters
        .iter()
        .map(|id| (*id, crate::types::node_info(*id)))
        .collect();
    running
        .raft
        .initialize(members)
        .await
        .map_err(|e| format!("initialize: {e}"))
}

/// Crashes `id`: a power loss loses what it had not synced; a process exit keeps it.
pub fn crash(cluster: &Arc<Cluster>, id: NodeId, power_loss: bool) -> bool {
    let (running, disk) = {
        let mut nodes = cluster.nodes();
        let Some(slot) = nodes.get_mut(&id) else {
            return false;
        };
        (slot.running.take(), slot.disk.clone())
    };
    let Some(running) = running else {
        return false;
    };
    let lost = if power_loss {
        disk.power_loss()
    } else {
        disk.process_exit();
        0
    };
    let kind = if power_loss {
        "power loss"
    } else {
        "process exit"
    };
    cluster.event(|| format!("node {id} crashed ({kind}, {lost} unsynced writes lost)"));
    spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), running.raft.shutdown()).await;
    });
    true
}

/// Restarts `id` if it is down.
pub async fn restart(cluster: &Arc<Cluster>, id: NodeId) {
    if cluster.running(id).is_some() || cluster.is_retired(id) {
        return;
    }
    if let Err(e) = start(cluster, id).await {
        cluster.event(|| format!("node {id} failed to restart: {e}"));
    }
}

/// The supervisor: an incarnation whose Raft stopped by itself (a write failed) exits and is
/// restarted half a second later, keeping what it wrote.
async fn watch_for_stop(cluster: Arc<Cluster>, id: NodeId, incarnation: u64) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(running) = cluster.running(id) else {
            return;
        };
        if running.incarnation != incarnation {
            return;
        }
        let stopped = running
            .raft
            .metrics()
            .borrow_watched()
            .running_state
            .clone();
        if let Err(fatal) = stopped {
            cluster.event(|| format!("node {id} stopped by itself: {fatal}"));
            crash(&cluster, id, false);
            tokio::time::sleep(Duration::from_millis(500)).await;
            restart(&cluster, id).await;
            return;
        }
    }
}
