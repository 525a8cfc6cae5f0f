//! What a node does with a client's request: propose it through Raft (only the leader can)
//! and answer with the committed result; for a receive, with the leased messages read from
//! its own applied state. A follower serves a receive as the real broker does: the lease is
//! proposed through the leader, and the messages are read from the follower's own state once
//! it has applied that entry (followers carry the read load). The planted bugs of the request
//! path live here.

use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{ClientWriteError, RaftError};
use txmq_state::{Command, CommandResult, Decision, DecisionSource, Delivery, Operation};
use txmq_state::{StoredMessage, TxnId, TxnState, receipt};

use crate::bugs::Bug;
use crate::cluster::{Cluster, Running};
use crate::net::Fate;
use crate::types::NodeId;

/// How long a follower waits to apply the entry of a receive it forwarded (as the broker's).
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// A node's answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Committed (on the leader): the result, and for a receive the leased messages.
    Done(CommandResult, Vec<(Delivery, Option<StoredMessage>)>),
    /// Not proposed: this node is not the leader (it may know who is).
    NotLeader(Option<NodeId>),
    /// The outcome is unknown (leadership changed, the node stopped).
    Failed(String),
}

/// Serves one request on node `id`.
pub async fn serve(cluster: &Arc<Cluster>, id: NodeId, op: Operation) -> Reply {
    let Some(running) = cluster.running(id) else {
        return Reply::Failed(format!("node {id} is down"));
    };
    let op = plant_bugs(cluster, &running, op);
    let receive = match &op {
        Operation::Receive { topic, .. } => Some(topic.clone()),
        _ => None,
    };
    let command = Command::new(cluster.node_now_ms(id), op.clone());
    match running.raft.client_write(command).await {
        Ok(resp) => {
            let messages = match (&resp.data, &receive) {
                (CommandResult::Leased(ds), Some(topic)) => {
                    match read_leased(cluster, (id, &running), topic, ds) {
                        Ok(messages) => messages,
                        Err(crashed) => return Reply::Failed(crashed),
                    }
                }
                _ => Vec::new(),
            };
            Reply::Done(resp.data, messages)
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            match (receive, f.leader_id) {
                (Some(topic), Some(leader)) if leader != id => {
                    receive_through(cluster, (id, &running), leader, op, &topic).await
                }
                _ => Reply::NotLeader(f.leader_id),
            }
        }
        Err(e) => Reply::Failed(e.to_string()),
    }
}

/// A receive on a follower (`here`): the lease is proposed on `leader` (across the network,
/// stamped with the leader's clock), then the messages are read locally once the follower has
/// applied the lease's entry — every entry before it, the messages' included.
async fn receive_through(
    cluster: &Arc<Cluster>,
    (id, running): (NodeId, &Running),
    leader: NodeId,
    op: Operation,
    topic: &str,
) -> Reply {
    if cluster.net.carry(id, leader).await == Fate::Lost {
        return Reply::Failed(format!("node {id} could not reach the leader {leader}"));
    }
    let Some(on_leader) = cluster.running(leader) else {
        return Reply::Failed(format!("the leader {leader} is down"));
    };
    let command = Command::new(cluster.node_now_ms(leader), op);
    let written = on_leader.raft.client_write(command).await;
    if cluster.net.carry(leader, id).await == Fate::Lost {
        return Reply::Failed(format!(
            "the leader {leader}'s answer to node {id} was lost"
        ));
    }
    let resp = match written {
        Ok(resp) => resp,
        Err(e) => return Reply::Failed(e.to_string()),
    };
    let CommandResult::Leased(deliveries) = &resp.data else {
        return Reply::Done(resp.data, Vec::new());
    };
    if cluster.bug != Some(Bug::FollowerReadBeforeApply) {
        let applied = running
            .raft
            .wait(Some(APPLY_WAIT))
            .applied_index_at_least(Some(resp.log_id.index), "receive's lease applied")
            .await;
        if let Err(e) = applied {
            return Reply::Failed(format!("node {id} did not apply the lease: {e}"));
        }
    }
    match read_leased(cluster, (id, running), topic, deliveries) {
        Ok(messages) => Reply::Done(resp.data, messages),
        Err(crashed) => Reply::Failed(crashed),
    }
}

/// The leased messages, read from the node's stores — unless the incarnation that applied the
/// lease has crashed meanwhile: a dead process answers nothing (its files are no longer its).
fn read_leased(
    cluster: &Cluster,
    (id, running): (NodeId, &Running),
    topic: &str,
    deliveries: &[Delivery],
) -> Result<Vec<(Delivery, Option<StoredMessage>)>, String> {
    let alive = cluster
        .running(id)
        .is_some_and(|now| now.incarnation == running.incarnation);
    if !alive {
        return Err(format!("node {id} crashed before it answered"));
    }
    let replica = running.replica();
    let topic_id = replica.state().topic(topic).map(|t| t.id);
    let read = deliveries
        .iter()
        .map(|d| {
            let m = topic_id.and_then(|t| replica.message(t, d.queue, d.offset));
            if m.is_none() {
                cluster
                    .event(|| format!("node {id} cannot read {topic} q{} o{}", d.queue, d.offset));
            }
            (d.clone(), m)
        })
        .collect();
    Ok(read)
}

/// The request path's planted bugs (only with `--bug`).
fn plant_bugs(cluster: &Cluster, running: &Running, op: Operation) -> Operation {
    match (cluster.bug, op) {
        (
            Some(Bug::DecisionToWrongTxn),
            Operation::EndTransaction {
                txn_id,
                group,
                decision: Decision::Commit,
                source: DecisionSource::Producer,
            },
        ) => {
            let wrong = previous_pending(running, &txn_id, &group).unwrap_or(txn_id);
            Operation::EndTransaction {
                txn_id: wrong,
                group,
                decision: Decision::Commit,
                source: DecisionSource::Producer,
            }
        }
        (
            Some(Bug::AckPastUnacked),
            Operation::Ack {
                group,
                topic,
                receipts,
            },
        ) => {
            let receipts = with_leases_below(running, &group, &topic, receipts);
            Operation::Ack {
                group,
                topic,
                receipts,
            }
        }
        (_, op) => op,
    }
}

/// The group's pending transaction opened just before `txn_id`.
fn previous_pending(running: &Running, txn_id: &str, group: &str) -> Option<String> {
    let id = TxnId::parse(txn_id)?;
    let replica = running.replica();
    replica
        .state()
        .transactions()
        .pending()
        .filter(|r| r.group == group && r.id < id && r.state == TxnState::Pending)
        .map(|r| r.id)
        .max()
        .map(|r| r.to_string())
}

/// Every current lease of the group below the acknowledged offsets, as receipts.
fn with_leases_below(
    running: &Running,
    group: &str,
    topic: &str,
    mut receipts: Vec<String>,
) -> Vec<String> {
    let replica = running.replica();
    let state = replica.state();
    let Some(g) = state.group(group, topic) else {
        return receipts;
    };
    let acked: Vec<(u32, u64)> = receipts
        .iter()
        .filter_map(|r| txmq_state::parse_receipt(r).map(|(q, o, _)| (q, o)))
        .collect();
    for (queue, offset) in acked {
        if let Some(progress) = g.queues.get(queue as usize) {
            for (o, lease) in progress.leases.range(..offset) {
                receipts.push(receipt(queue, *o, lease.lease_index));
            }
        }
    }
    receipts
}
