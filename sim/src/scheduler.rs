//! The leader's transaction scheduler under simulation, as the broker's
//! (`broker/src/scheduler.rs`): read what is due from the applied state, decide each with the
//! same rule (`TxnRecord::due_action`), propose one fenced `TxnTimers` entry, then send the
//! checks the state machine recorded to the group's checkers.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::impls::ProgressResponder;
use openraft::vote::RaftLeaderId;
use txmq_state::{Command, CommandResult, DueAction, Operation};

use crate::checks::CheckRequest;
use crate::cluster::{Cluster, Running};
use crate::net::Fate;
use crate::types::{NodeId, spawn};

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
    running: &Running,
    leader: crate::types::CommittedLeaderId,
) {
    let now = cluster.node_now_ms(id);
    let (checks, expirations) = {
        let replica = running.replica();
        let mut checks = Vec::new();
        let mut expirations = Vec::new();
        for r in replica.state().transactions().due(now, MAX_PER_TICK) {
            // Every producer group has checkers connected to every node in the simulation.
            match r.due_action(now) {
                DueAction::Expire => expirations.push(r.id.to_string()),
                DueAction::Check => checks.push(r.id.to_string()),
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
            send_check(cluster, id, running, &txn, attempt);
        }
    }
}

/// Sends the check the state machine recorded for `txn` to one checker of its group, across
/// the network from node `from`. A lost check is what the next attempt is for.
fn send_check(cluster: &Arc<Cluster>, from: NodeId, running: &Running, txn: &str, attempt: u32) {
    let Some((group, key)) = ({
        let replica = running.replica();
        let state = replica.state();
        state
            .transactions()
            .get_by_name(txn)
            .and_then(|r| r.message.as_ref().map(|m| (r.group.clone(), m.key.clone())))
    }) else {
        return;
    };
    let checkers = cluster.checkers.checkers_of(&group);
    if checkers.is_empty() {
        return;
    }
    let pick = cluster.rng().below(checkers.len() as u64) as usize;
    let (endpoint, tx) = checkers[pick].clone();
    let request = CheckRequest {
        txn_id: txn.to_string(),
        key,
        attempt,
    };
    let cluster = cluster.clone();
    spawn(async move {
        if cluster.net.carry(from, endpoint).await != Fate::Lost {
            let _ = tx.try_send(request);
        }
    });
}
