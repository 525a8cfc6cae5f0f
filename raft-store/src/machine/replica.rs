//! This node's replica of the state: the state in memory and the stores under it, shared by
//! the state-machine task (the only writer) and the services (readers, through
//! [`crate::StateReader`]).

use std::io;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use txmq_state::BrokerState;

use super::checkpoint::{CheckpointTargets, Checkpointer};
use crate::files::file_system::OsFs;
use crate::files::queue_files::QueueFiles;
use crate::files::txn_journal::TxnJournal;
use crate::rows::applied_state::AppliedState;

/// State shared between the state-machine task (writer) and the services (readers).
pub(crate) struct Replica {
    pub(crate) tree: sled::Tree,
    pub(crate) queues: Arc<QueueFiles>,
    pub(crate) journal: TxnJournal,
    pub(crate) checkpointer: Checkpointer,
    pub(crate) state: RwLock<BrokerState>,
    pub(crate) applied: RwLock<AppliedState>,
    pub(crate) applied_index: watch::Sender<u64>,
}

impl Replica {
    pub(crate) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, BrokerState> {
        // A poisoned lock means an apply panicked (a bug); the data it guards is still the last
        // consistent value because writes happen after the sled batch succeeded.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, BrokerState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn read_applied(&self) -> AppliedState {
        self.applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Writes a checkpoint now (blocking).
    pub(crate) fn checkpoint(&self) -> io::Result<()> {
        self.checkpointer.checkpoint(self.stores(), &self.state)
    }

    pub(crate) fn stores(&self) -> CheckpointTargets<'_, OsFs, sled::Tree> {
        CheckpointTargets {
            queues: &self.queues,
            journal: &self.journal,
            rows: &self.tree,
        }
    }

    /// [`Self::checkpoint`] on a blocking thread.
    pub(crate) async fn checkpoint_async(self: &Arc<Self>) -> io::Result<()> {
        let replica = self.clone();
        tokio::task::spawn_blocking(move || replica.checkpoint())
            .await
            .map_err(io::Error::other)?
    }

    /// Starts a checkpoint on a blocking thread without waiting for it (applies go on; the
    /// checkpoint takes the pending rows first, so it writes a consistent prefix). Skipped while
    /// one is still running.
    pub(crate) fn checkpoint_in_background(self: &Arc<Self>) {
        if !self.checkpointer.start_background() {
            return;
        }
        let replica = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = replica.checkpoint();
            replica.checkpointer.finish_background(result);
        });
    }

    pub(crate) fn set_applied(&self, applied: AppliedState) {
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        *self.applied.write().unwrap_or_else(|p| p.into_inner()) = applied;
        self.applied_index.send_replace(index);
    }
}
