//! The leader's write batcher: packs concurrent client operations into one Raft entry, so many
//! sends, half messages, decisions, receives and acks share one append, one fsync per replica
//! and one apply — the per-entry cost dominates, not the per-message cost.
//!
//! Up to [`MAX_IN_FLIGHT`] entries are in flight at once (openraft pipelines them and groups
//! their fsyncs); while they are, new operations queue up and go out together in the next
//! entry. Nothing waits on a timer: under light load every operation gets its own entry at
//! once, under heavy load entries grow up to [`MAX_OPS`] operations or [`MAX_BYTES`].
//!
//! A submission is a group of operations (one, or the items of a batched request) that stay
//! together in one entry and get one reply: a batched request of 256 half messages costs one
//! queue slot and one wake-up here, not 256.

use std::sync::Arc;
use std::time::Instant;

use openraft::errors::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};
use txmq_raft_store::{Command, CommandResult, Operation, Raft, TypeConfig};

use crate::forward::OpError;
use crate::proposer::now_ms;

/// Entries proposed and not yet applied, at most.
pub const MAX_IN_FLIGHT: usize = 2;
/// Operations per entry, at most (a single submission larger than this gets an entry of its
/// own).
pub const MAX_OPS: usize = 512;
/// Approximate payload bytes per entry, at most.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Submissions waiting for an entry, at most (then submitters wait: back-pressure).
pub const QUEUE: usize = 8192;

/// The committed results of a submission, in order, and the index of the entry holding them.
type Reply = Result<(Vec<CommandResult>, u64), OpError>;

struct Pending {
    ops: Vec<Operation>,
    size: usize,
    reply: oneshot::Sender<Reply>,
    queued: Instant,
}

/// Whether an operation may share an entry with others (its ids derive from the entry's index
/// and its position, see `BrokerState::apply_batch`).
pub fn batchable(op: &Operation) -> bool {
    matches!(
        op,
        Operation::Publish { .. }
            | Operation::HalfMessage { .. }
            | Operation::EndTransaction { .. }
            | Operation::Receive { .. }
            | Operation::Ack { .. }
            | Operation::ChangeInvisible { .. }
    )
}

fn approximate_size(op: &Operation) -> usize {
    match op {
        Operation::Publish { messages, .. } => messages.iter().map(|m| m.body.len() + 64).sum(),
        Operation::HalfMessage { message, .. } => message.body.len() + 128,
        Operation::Ack { receipts, .. } => receipts.len() * 32,
        _ => 128,
    }
}

#[derive(Clone)]
pub struct WriteBatcher {
    tx: mpsc::Sender<Pending>,
}

impl WriteBatcher {
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `ops` (each [`batchable`]) together in the next entry; returns their committed
    /// results, in order, and the entry's index.
    pub async fn submit(&self, ops: Vec<Operation>) -> Reply {
        if ops.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let (reply, rx) = oneshot::channel();
        let size = ops.iter().map(approximate_size).sum();
        self.tx
            .send(Pending {
                ops,
                size,
                reply,
                queued: Instant::now(),
            })
            .await
            .map_err(|_| OpError::Unavailable("this node is shutting down".into()))?;
        rx.await.map_err(|_| {
            OpError::Unavailable("the proposal was dropped (node shutting down?)".into())
        })?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while we waited for a free slot goes into this entry.
        let mut ops = first.ops.len();
        let mut bytes = first.size;
        let mut items = vec![first];
        while ops < MAX_OPS && bytes < MAX_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    ops += p.ops.len();
                    bytes += p.size;
                    items.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            propose(&raft, items).await;
        });
    }
}

async fn propose(raft: &Raft, mut items: Vec<Pending>) {
    let proposed = Instant::now();
    for p in &items {
        metrics::histogram!("txmq_write_queue_seconds")
            .record(proposed.duration_since(p.queued).as_secs_f64());
    }
    let counts: Vec<usize> = items.iter().map(|p| p.ops.len()).collect();
    let total: usize = counts.iter().sum();
    let mut ops: Vec<Operation> = items
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.ops))
        .collect();
    let single = total == 1;
    let op = match ops.pop() {
        Some(op) if single => op,
        Some(last) => {
            ops.push(last);
            Operation::Batch(ops)
        }
        None => return,
    };
    let result = raft.client_write(Command::new(now_ms(), op)).await;
    metrics::counter!("txmq_raft_proposals_total", "outcome" => if result.is_ok() { "committed" } else { "failed" })
        .increment(1);
    metrics::histogram!("txmq_batch_operations").record(total as f64);
    metrics::histogram!("txmq_write_commit_seconds").record(proposed.elapsed().as_secs_f64());
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => return fail_all(items, to_op_error(e)),
    };
    let index = resp.log_id.index;
    let results = match (single, resp.data) {
        (true, r) => vec![r],
        (false, CommandResult::Batch(rs)) if rs.len() == total => rs,
        (false, other) => {
            let e = OpError::Internal(format!(
                "a batch applied to an unexpected result: {other:?}"
            ));
            return fail_all(items, e);
        }
    };
    let mut results = results.into_iter();
    for (p, n) in items.into_iter().zip(counts) {
        let mine: Vec<CommandResult> = results.by_ref().take(n).collect();
        let _ = p.reply.send(Ok((mine, index)));
    }
}

fn fail_all(items: Vec<Pending>, e: OpError) {
    for p in items {
        let _ = p.reply.send(Err(e.clone()));
    }
}

fn to_op_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> OpError {
    crate::proposer::write_error(e)
}
