//! The leader's transaction scheduler under simulation: the same rule as the broker's
//! (`broker/src/scheduler.rs`): read what is due from the applied state, propose one fenced
//! `TxnTimers` entry, then send the checks the state machine recorded to the group's checkers.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::impls::ProgressResponder;
use openraft::vote::RaftLeaderId;
use txmq_state::{Command, CommandResult, Operation};

use crate::cluster::Cluster;
use crate::types::NodeId;

const TICK: Duration = Duration::from_millis(200);
const MAX_PER_TICK: usize = 512;

/// Runs while incarnation `incarnation` of node `id` lives; acts only while it leads.
pub async fn run(cluster: Arc<Cluster>, id: NodeId, incarnation: u64) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(running) = cluster.running(id) else {
            return;
        };
        if running.incarnation != incarnation {
            return;
        }
        let (leading, leader) = {
            let m = running.raft.metrics().borrow_watched().clone();
            (
                m.current_leader == Some(id),
                m.vote.leader_id().to_committed(),
            )
        };
        if leading {
            tick(&cluster, id, &running, leader).await;
        }
    }
}

async fn tick(
    cluster: &Arc<Cluster>,
    id: NodeId,
    running: &crate::cluster::Running,
    leader: crate::types::CommittedLeaderId,
) {
    let now = cluster.now_ms();
    let (checks, expirations) = {
        let replica = running.replica();
        let mut checks = Vec::new();
        let mut expirations = Vec::new();
        for r in replica.state.transactions().due(now, MAX_PER_TICK) {
            if now >= r.deadline_ms || r.check_count >= r.timing.max_checks {
                expirations.push(r.id.to_string());
            } else {
                checks.push(r.id.to_string());
            }
        }
        (checks, expirations)
    };
    if checks.is_empty() && expirations.is_empty() {
        return;
    }
    let op = Operation::TxnTimers {
        checks,
        expirations,
    };
    let (responder, rx) = ProgressResponder::complete_only();
    let command = Command::new(now, op);
    if running
        .raft
        .write(command)
        .with_leader(leader)
        .responder(responder)
        .await
        .is_err()
    {
        return;
    }
    let Ok(Ok(resp)) = rx.await else {
        return;
    };
    if let CommandResult::TimersApplied { checks, .. } = resp.data {
        for (txn, attempt) in checks {
            crate::checks::send(cluster, id, running, &txn, attempt);
        }
    }
}
