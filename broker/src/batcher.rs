//! The leader's write batcher: packs concurrent client operations into one Raft entry, so many
//! sends, half messages, decisions, receives and acks share one append, one fsync per replica
//! and one apply — the per-entry cost dominates, not the per-message cost.
//!
//! Nothing waits on a timer: with no entry in flight an operation is proposed at once (alone
//! under light load). While one entry is in flight, what queues up waits for it and goes out
//! together in the next entry — unless at least [`SECOND_ENTRY_BYTES`] are waiting, then a
//! second entry goes out at once (openraft pipelines the two and groups their fsyncs).
//! [`MAX_IN_FLIGHT`] entries are in flight at most; entries grow up to [`MAX_OPS`] operations or
//! [`MAX_BYTES`].
//!
//! Why the second entry waits for company: an entry costs about the same CPU across the
//! cluster whatever it carries, so proposing a second one for a few operations only turns
//! spare CPU into more, smaller entries. With the second slot always open, the cluster's CPU
//! was nearly flat in the load and a moderate load kept the cores almost as busy as the
//! maximum one — and queueing for a core was what set the tail latency (docs/performance-history.md).
//!
//! A submission is a group of operations (one, or the items of a batched request) that stay
//! together in one entry and get one reply: a batched request of 256 half messages costs one
//! queue slot and one wake-up here, not 256.

use std::future::Future;
use std::time::Instant;

use openraft::errors::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, watch};
use txmq_raft_store::{Raft, TypeConfig};
use txmq_state::{Command, CommandResult, Operation};

use crate::clock::now_ms;
use crate::op_error::OpError;

/// Entries proposed and not yet applied, at most.
pub const MAX_IN_FLIGHT: usize = 2;
/// Operations per entry, at most (a single submission larger than this gets an entry of its
/// own).
pub const MAX_OPS: usize = 512;
/// Approximate payload bytes per entry, at most.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Approximate payload bytes that must be waiting before a second entry goes out while one is
/// in flight (about 32 transactions' half messages and decisions of 256 bytes, or 50 single
/// sends): below that, they wait for the entry in flight and share the next one.
pub const SECOND_ENTRY_BYTES: usize = 16 * 1024;
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
            | Operation::Release { .. }
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

/// Whether the operations gathered so far (`bytes` of them) go out now, with `in_flight`
/// entries proposed and not yet applied.
pub fn may_propose(in_flight: usize, bytes: usize) -> bool {
    in_flight == 0 || (in_flight < MAX_IN_FLIGHT && bytes >= SECOND_ENTRY_BYTES)
}

async fn run(raft: Raft, rx: mpsc::Receiver<Pending>) {
    gather_and_propose(rx, move |items| {
        let raft = raft.clone();
        async move { propose(&raft, items).await }
    })
    .await
}

/// The operations of one entry, gathered from the queue.
struct Gathered {
    items: Vec<Pending>,
    ops: usize,
    bytes: usize,
}

impl Gathered {
    fn new(first: Pending) -> Self {
        Self {
            ops: first.ops.len(),
            bytes: first.size,
            items: vec![first],
        }
    }

    fn full(&self) -> bool {
        self.ops >= MAX_OPS || self.bytes >= MAX_BYTES
    }

    fn push(&mut self, p: Pending) {
        self.ops += p.ops.len();
        self.bytes += p.size;
        self.items.push(p);
    }

    /// Takes in everything already queued, up to an entry's limits.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Pending>) {
        while !self.full() {
            match rx.try_recv() {
                Ok(p) => self.push(p),
                Err(_) => break,
            }
        }
    }
}

/// The batcher's loop: gathers submissions into entries and hands each to `propose` (on a task
/// of its own) when [`may_propose`] says so. Ends when every submitter is gone.
async fn gather_and_propose<F, Fut>(mut rx: mpsc::Receiver<Pending>, propose: F)
where
    F: Fn(Vec<Pending>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // The number of entries in flight; each proposal task lowers it when it ends.
    let (in_flight_tx, mut in_flight) = watch::channel(0usize);
    while let Some(first) = rx.recv().await {
        let mut entry = Gathered::new(first);
        entry.drain(&mut rx);
        loop {
            if may_propose(*in_flight.borrow_and_update(), entry.bytes) {
                break;
            }
            // Wait for an entry to be applied, or for more company (which may be enough for
            // a second entry).
            tokio::select! {
                _ = in_flight.changed() => {}
                more = rx.recv(), if !entry.full() => match more {
                    Some(p) => entry.push(p),
                    None => break,
                },
            }
            entry.drain(&mut rx);
        }
        in_flight_tx.send_modify(|n| *n += 1);
        let slot = InFlight(in_flight_tx.clone());
        let proposal = propose(entry.items);
        tokio::spawn(async move {
            let _slot = slot;
            proposal.await;
        });
    }
}

/// One entry in flight: frees its slot when the proposal ends, however it ends.
struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
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
    crate::op_error::write_error(e)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use txmq_state::{Decision, DecisionSource};

    use super::*;

    /// Each proposal's submission sizes and the sender that ends it.
    type Proposed = mpsc::UnboundedReceiver<(Vec<usize>, oneshot::Sender<()>)>;

    /// A submission of `size` approximate bytes (its operation is never applied here).
    fn submission(size: usize) -> (Pending, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let op = Operation::EndTransaction {
            txn_id: "T0".into(),
            group: "g".into(),
            decision: Decision::Commit,
            source: DecisionSource::Producer,
        };
        let pending = Pending {
            ops: vec![op],
            size,
            reply,
            queued: Instant::now(),
        };
        (pending, rx)
    }

    /// A batcher whose proposals are held until the test releases them.
    fn held_batcher() -> (mpsc::Sender<Pending>, Proposed) {
        let (tx, rx) = mpsc::channel(64);
        let (proposed_tx, proposed) = mpsc::unbounded_channel();
        tokio::spawn(gather_and_propose(rx, move |items: Vec<Pending>| {
            let (end_tx, end) = oneshot::channel();
            let sizes = items.iter().map(|p| p.size).collect();
            let _ = proposed_tx.send((sizes, end_tx));
            async move {
                let _ = end.await;
                drop(items);
            }
        }));
        (tx, proposed)
    }

    /// The next proposal, or None if none comes within a (virtual, paused-clock) second.
    async fn next_proposal(proposed: &mut Proposed) -> Option<(Vec<usize>, oneshot::Sender<()>)> {
        tokio::time::timeout(Duration::from_secs(1), proposed.recv())
            .await
            .ok()
            .flatten()
    }

    #[test]
    fn a_second_entry_needs_enough_waiting_and_a_third_never_goes() {
        assert!(may_propose(0, 1));
        assert!(!may_propose(1, SECOND_ENTRY_BYTES - 1));
        assert!(may_propose(1, SECOND_ENTRY_BYTES));
        assert!(!may_propose(MAX_IN_FLIGHT, MAX_BYTES));
    }

    #[tokio::test(start_paused = true)]
    async fn operations_wait_for_the_entry_in_flight_unless_there_are_enough_of_them() {
        let (tx, mut proposed) = held_batcher();
        let mut replies = Vec::new();
        let mut send = async |size: usize| {
            let (p, r) = submission(size);
            replies.push(r);
            tx.send(p).await.expect("the batcher runs");
        };

        // Phase 1: nothing in flight, a lone operation is proposed at once.
        send(100).await;
        let (sizes, end_first) = next_proposal(&mut proposed)
            .await
            .expect("proposed at once");
        assert_eq!(sizes, vec![100]);

        // Phase 2: with one entry in flight, small operations wait for it...
        send(200).await;
        send(300).await;
        assert!(
            next_proposal(&mut proposed).await.is_none(),
            "a small second entry went out"
        );

        // ... until enough of them wait: then they go out together as a second entry.
        send(SECOND_ENTRY_BYTES).await;
        let (sizes, end_second) = next_proposal(&mut proposed).await.expect("second entry");
        assert_eq!(sizes, vec![200, 300, SECOND_ENTRY_BYTES]);

        // Phase 3: with two in flight nothing more goes out, however much waits.
        send(MAX_BYTES).await;
        assert!(
            next_proposal(&mut proposed).await.is_none(),
            "a third entry went out"
        );

        // Phase 4: an entry applied frees a slot, and the waiting operation goes out.
        end_first.send(()).expect("the first proposal waits");
        let (sizes, _end_third) = next_proposal(&mut proposed).await.expect("after the first");
        assert_eq!(sizes, vec![MAX_BYTES]);
        drop(end_second);
    }
}
