//! How a node gives up or avoids leadership (stopping, or its disk is full), and runs the
//! transaction scheduler exactly while it leads.

use std::sync::Arc;
use std::time::Duration;

use txmq_raft_store::Raft;

use crate::checkers::CheckerRegistry;
use crate::scheduler::Scheduler;

/// How long a stopping leader waits for another voter to take over.
const HANDOVER: Duration = Duration::from_secs(3);

/// The first steps of a shutdown: this node starts no election from now on (a stopping node
/// that campaigns only pushes the term up), and a leader hands leadership to the most caught-up
/// voter, so the cluster does not wait an election timeout for a new one.
pub(super) async fn step_back(raft: &Raft) {
    raft.runtime_config().elect(false);
    hand_over_leadership(raft).await;
}

/// If this node leads, hands leadership to the most caught-up other voter and waits (a while)
/// for it to take over.
async fn hand_over_leadership(raft: &Raft) {
    use openraft::async_runtime::WatchReceiver;
    let metrics = raft.metrics().borrow_watched().clone();
    if metrics.current_leader != Some(metrics.id) {
        return;
    }
    let successor = metrics.replication.as_ref().and_then(|progress| {
        progress
            .iter()
            .filter(|(id, _)| **id != metrics.id)
            .filter(|(id, _)| metrics.membership_config.voter_ids().any(|v| v == **id))
            .max_by_key(|(_, matched)| matched.map(|m| m.index))
            .map(|(id, _)| *id)
    });
    let Some(successor) = successor else {
        return;
    };
    tracing::info!(successor, "handing leadership over");
    if let Err(e) = raft.trigger().transfer_leader(successor).await {
        tracing::warn!("leadership handover to {successor} failed: {e}");
        return;
    }
    let handed_over = raft
        .wait(Some(HANDOVER))
        .metrics(|m| m.current_leader != Some(m.id), "another leader")
        .await;
    if handed_over.is_err() {
        tracing::warn!("no other leader within {HANDOVER:?}; stopping anyway");
    }
}

/// While the data volume is nearly full this node takes no new log entries, so it must not
/// lead: it stands for no election, and a leader stops heartbeating and hands leadership over.
/// (Its own appends wait at the space gate, which may hold up openraft's core and with it the
/// handover; without heartbeats the followers elect a new leader after their timeout anyway.)
/// Once space is back it heartbeats and may stand again (unless a repair still keeps it out).
pub(super) async fn stand_aside_while_disk_full(
    raft: Raft,
    mut full: tokio::sync::watch::Receiver<bool>,
    vote_gate: Arc<crate::repair::VoteGate>,
) {
    loop {
        let is_full = *full.borrow_and_update();
        if is_full {
            raft.runtime_config().elect(false);
            raft.runtime_config().heartbeat(false);
            hand_over_leadership(&raft).await;
        } else {
            raft.runtime_config().heartbeat(true);
            if !vote_gate.refusing() {
                raft.runtime_config().elect(true);
            }
        }
        if full.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the transaction scheduler exactly while this node is the leader: started by openraft's
/// leader-change hook with the leadership to fence its proposals to, aborted when it ends (and
/// the checker registrations, which only the leader holds, are dropped so clients reconnect).
pub(super) fn start_scheduler_on_leadership(
    raft: &Raft,
    scheduler: impl Fn() -> Scheduler + Send + Sync + 'static,
    checkers: &Arc<CheckerRegistry>,
) -> openraft::WatchChangeHandle<txmq_raft_store::TypeConfig> {
    use openraft::vote::RaftLeaderId;
    let task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let (start_task, stop_task) = (task.clone(), task);
    let stop_checkers = checkers.clone();
    raft.on_leader_change(
        move |leader_id| {
            let handle = tokio::spawn(scheduler().run(leader_id.to_committed()));
            let previous = start_task
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(handle);
            if let Some(previous) = previous {
                previous.abort();
            }
            async {}
        },
        move |leader_id| {
            if let Some(handle) = stop_task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                handle.abort();
            }
            stop_checkers.clear();
            tracing::info!(?leader_id, "leadership lost: transaction scheduler stopped");
            async {}
        },
    )
}
