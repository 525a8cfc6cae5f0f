//! Write-behind of the state machine to the transaction journal and to sled.
//!
//! Applying an entry changes memory ([`txmq_state::BrokerState`]), appends message bodies to
//! the queue files, and records its row changes here. A checkpoint then, in this order:
//! appends the changed transaction records to the transaction journal
//! ([`crate::files::txn_journal`]), syncs the queue files and the journal, writes the coalesced row
//! changes, the journal's range and the applied log id to sled in one atomic batch, and (only
//! if retention moved a low offset or the journal compacted) flushes sled before deleting the
//! files below it. So whatever sled holds after a crash names only durable messages and
//! journal frames, and never one whose file is gone.
//!
//! Why: a row written per entry cost sled a node copy each. Coalesced, a row changed many times
//! between checkpoints is written once (or not at all); topic and group rows, and transaction
//! records, are not even encoded at apply (the state reports *that* they changed): the checkpoint
//! encodes their state once, under the state's read lock so that it is the state as of the
//! applied log id it records — a consumer group's row, with all its leases, changed by every
//! receive and ack, used to be re-encoded for each of them. Transaction records go to the
//! journal rather than sled: two B-tree updates per transaction (insert when decided, delete
//! when it left the decided window) were a third of a node's CPU under a transactional load.
//!
//! The Raft log is the redo log: entries after the last checkpoint are re-applied from it after
//! a restart, so the log store checkpoints before it purges (see `crate::log::store`).

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;

use txmq_state::codec;
use txmq_state::{BrokerState, Change, Changes, TxnId};

use crate::files::file_system::FileSystem;
use crate::files::queue_files::QueueFiles;
use crate::files::txn_journal::TxnJournal;
use crate::rows::applied_state::AppliedState;
use crate::rows::keys;
use crate::rows::row_store::{RowBatch, RowStore};
use crate::rows::state_rows::{changed_row_key, row_value};

/// How long applied rows may wait in memory before a checkpoint writes them.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// ... or how many distinct rows may wait.
const MAX_PENDING_ROWS: usize = 20_000;

/// Row changes applied since the last checkpoint.
#[derive(Default)]
struct Pending {
    /// Rows that changed: each is written as the state holds it when the checkpoint is taken.
    rows: BTreeSet<Vec<u8>>,
    /// Transactions whose record changed (or left the state): journaled at the checkpoint.
    txns: FxHashSet<TxnId>,
    /// Retention moves: (topic, queue, new low offset).
    trims: Vec<(u64, u32, u64)>,
    /// Deleted topics: (topic id, queue count), whose files go once sled forgot them.
    deleted_topics: Vec<(u64, u32)>,
    applied: Option<AppliedState>,
    since: Option<Instant>,
}

/// The pending rows and the lock that orders checkpoints.
#[derive(Default)]
pub struct Checkpointer {
    pending: Mutex<Pending>,
    /// Held for a whole checkpoint: two checkpoints must reach sled in order.
    writing: Mutex<()>,
    /// A checkpoint runs in the background (at most one is started at a time).
    in_background: AtomicBool,
    /// Why no checkpoint may be written any more (one failed, or the state in memory ran ahead
    /// of the disk): the next apply fails with it (the node stops).
    failed: Mutex<Option<String>>,
}

impl Checkpointer {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one applied entry, applied at `now`: its messages go to the queue files now, its
    /// other changes and `applied` join the pending checkpoint together (a checkpoint never
    /// holds part of an entry). If its messages cannot be written, no checkpoint is written
    /// any more (see [`Self::refuse_from_now`]).
    pub fn record<F: FileSystem>(
        &self,
        queues: &QueueFiles<F>,
        changes: Changes,
        applied: AppliedState,
        now: Instant,
    ) -> io::Result<()> {
        let mut rest = Vec::new();
        for change in changes.into_list() {
            match change {
                Change::Appended {
                    topic,
                    queue,
                    first,
                    messages,
                } => {
                    if let Err(e) = queues.append(topic, queue, first, &messages) {
                        self.refuse_from_now(format!("an applied entry's messages: {e}"));
                        return Err(e);
                    }
                }
                other => rest.push(other),
            }
        }
        let mut p = self.pending();
        p.since.get_or_insert(now);
        for change in rest {
            match change {
                Change::Txn(id) => {
                    p.txns.insert(id);
                }
                Change::TrimmedBelow {
                    topic,
                    queue,
                    below,
                } => p.trims.push((topic, queue, below)),
                Change::TopicDeleted { topic, queues } => p.deleted_topics.push((topic, queues)),
                row => {
                    if let Some(key) = changed_row_key(&row) {
                        p.rows.insert(key);
                    }
                }
            }
        }
        p.applied = Some(applied);
        Ok(())
    }

    /// Whether a checkpoint is due at `now` (by age or size, or a deleted topic whose files
    /// should go now rather than at the next write).
    pub fn due(&self, now: Instant) -> bool {
        let p = self.pending();
        p.rows.len() + p.txns.len() >= MAX_PENDING_ROWS
            || !p.deleted_topics.is_empty()
            || p.since
                .is_some_and(|s| now.saturating_duration_since(s) >= CHECKPOINT_INTERVAL)
    }

    /// Claims the right to run a background checkpoint: false while one is still running.
    pub fn start_background(&self) -> bool {
        !self.in_background.swap(true, Ordering::AcqRel)
    }

    /// Ends a background checkpoint (a failure is kept by [`Self::checkpoint`] itself).
    pub fn finish_background(&self, result: io::Result<()>) {
        if let Err(e) = result {
            tracing::error!("state checkpoint failed: {e}");
        }
        self.in_background.store(false, Ordering::Release);
    }

    /// The failure of an earlier checkpoint, if any. Once one failed, its taken rows are lost
    /// to sled: every later checkpoint refuses (a later applied id without those rows would
    /// be a wrong state), the log is no longer purged, and applies fail, so the node stops and
    /// restarts from its last good checkpoint and the log.
    pub fn earlier_failure(&self) -> io::Result<()> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(io::Error::other(format!(
                "the state can no longer be checkpointed: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// Writes no checkpoint from now on: an entry was applied in memory but what it changed
    /// could not all be written (a failed append, a failed apply), so the state in memory is
    /// ahead of the disk. A checkpoint encodes rows from that state — a topic's row would name
    /// offsets whose messages were never written, and the node could not start again. The
    /// node stops (the apply fails) and restarts from its last good checkpoint and the log.
    pub fn refuse_from_now(&self, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.get_or_insert(why);
    }

    /// Holds off checkpoints while the caller replaces the stored state.
    pub fn exclusive(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets pending changes (a snapshot replaces the whole state).
    pub fn discard(&self) {
        *self.pending() = Pending::default();
    }

    /// Writes a checkpoint (see the module comment). Blocking: call it off the async workers.
    /// Concurrent calls run one after the other.
    pub fn checkpoint<F: FileSystem, R: RowStore>(
        &self,
        stores: CheckpointTargets<'_, F, R>,
        state: &RwLock<BrokerState>,
    ) -> io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.earlier_failure()?;
        let result = self.write_checkpoint(stores, state);
        if let Err(e) = &result {
            self.refuse_from_now(e.to_string());
        }
        result
    }

    fn write_checkpoint<F: FileSystem, R: RowStore>(
        &self,
        stores: CheckpointTargets<'_, F, R>,
        state: &RwLock<BrokerState>,
    ) -> io::Result<()> {
        let CheckpointTargets {
            queues,
            journal,
            rows,
        } = stores;
        let started = Instant::now();
        let (pending, mut batch, journal_plan) = {
            // Under the state's read lock no entry is half applied (apply holds the write lock
            // while it records), so the refreshed rows and the journaled records are taken as
            // of `applied` exactly. The records are shared, not copied, and encoded after the
            // lock is released: the apply waits for this block.
            let state = state.read().unwrap_or_else(|p| p.into_inner());
            let pending = std::mem::take(&mut *self.pending());
            let batch = row_batch(&pending, &state)?;
            let journal_plan = journal.prepare(&pending.txns, state.transactions());
            (pending, batch, journal_plan)
        };
        let journal_write = journal_plan.encode()?;
        let Some(applied) = pending.applied else {
            return Ok(());
        };
        let range = journal.append(&journal_write)?;
        queues.sync()?;
        journal.sync()?;
        batch.insert(keys::JOURNAL_KEY, codec::encode(&range)?);
        batch.insert(keys::APPLIED_KEY, codec::encode(&applied)?);
        rows.apply(batch)?;
        let compacted = journal_write.compacts();
        if !pending.trims.is_empty() || !pending.deleted_topics.is_empty() || compacted {
            // Files go only once sled durably names the offsets that replace them.
            rows.flush()?;
            for (topic, queue, below) in pending.trims {
                queues.trim_below(topic, queue, below)?;
            }
            for (topic, count) in pending.deleted_topics {
                for queue in 0..count {
                    queues.remove_queue(topic, queue)?;
                }
            }
            if compacted {
                journal.trim()?;
            }
        }
        metrics::histogram!("txmq_state_checkpoint_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("txmq_state_checkpoint_rows").record(pending.rows.len() as f64);
        Ok(())
    }
}

/// Where a checkpoint writes: message bodies, transaction records, rows.
pub struct CheckpointTargets<'a, F: FileSystem, R: RowStore> {
    pub queues: &'a QueueFiles<F>,
    pub journal: &'a TxnJournal<F>,
    pub rows: &'a R,
}

impl<F: FileSystem, R: RowStore> Clone for CheckpointTargets<'_, F, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: FileSystem, R: RowStore> Copy for CheckpointTargets<'_, F, R> {}

/// The row batch of a checkpoint's changed rows, encoded from `state`.
fn row_batch(pending: &Pending, state: &BrokerState) -> io::Result<RowBatch> {
    let mut batch = RowBatch::default();
    for key in &pending.rows {
        match row_value(state, key)? {
            Some(v) => batch.insert(key.as_slice(), v),
            None => batch.remove(key.as_slice()),
        }
    }
    Ok(batch)
}
