//! A simulated node's state-machine stores, made of the real parts: the queue files and the
//! transaction journal (`txmq_raft_store::files`) on the simulated disk's files, the real
//! checkpoint (`Checkpointer`), load and snapshot-restore code, and the rows — which the real
//! node keeps in sled — as records on the simulated disk, where a power loss keeps a prefix of
//! the batches not yet flushed, as sled recovers its own log.

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use txmq_raft_store::files::queue_files::QueueFiles;
use txmq_raft_store::files::txn_journal::{JournalLimits, TxnJournal};
use txmq_raft_store::machine::{CheckpointTargets, Checkpointer, load, stored_offsets};
use txmq_raft_store::rows::applied_state::AppliedState;
use txmq_raft_store::rows::row_store::{RowBatch, RowStore, RowVisitor};
use txmq_state::{BrokerState, codec};

use crate::disk::{DiskWrite, SimDisk};
use crate::sim_fs::SimFs;

const QUEUE_DIR: &str = "/data/queues";
const JOURNAL_DIR: &str = "/data/txn-journal";
/// Small files, so that a run crosses file boundaries and compacts its journal.
const QUEUE_FILE_BYTES: u64 = 16 * 1024;
const JOURNAL_LIMITS: JournalLimits = JournalLimits {
    file_bytes: 16 * 1024,
    compact_frames: 256,
    compact_bytes: 64 * 1024,
};

/// One incarnation's rows on the simulated disk.
pub struct SimRows {
    disk: Arc<SimDisk>,
    epoch: u64,
}

impl RowStore for SimRows {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.disk.read(|image| image.rows.get(key).cloned()))
    }

    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut RowVisitor<'_>) -> io::Result<()> {
        self.disk.read(|image| {
            let rows = image.rows.range(prefix.to_vec()..);
            for (key, value) in rows.take_while(|(key, _)| key.starts_with(prefix)) {
                f(key, value)?;
            }
            Ok(())
        })
    }

    fn apply(&self, batch: RowBatch) -> io::Result<()> {
        self.disk
            .write(self.epoch, DiskWrite::Rows(batch.into_changes()))
    }

    fn clear(&self) -> io::Result<()> {
        self.disk.write(self.epoch, DiskWrite::ClearRows)
    }

    fn flush(&self) -> io::Result<()> {
        self.disk.sync_now(self.epoch)
    }
}

/// The stores under one incarnation's state machine.
pub struct SimStores {
    pub queues: QueueFiles<SimFs>,
    pub journal: TxnJournal<SimFs>,
    pub rows: SimRows,
    pub checkpointer: Checkpointer,
}

impl SimStores {
    /// Opens the stores as the real node does after a restart: the state and applied point
    /// of the last checkpoint the disk kept, the queue files cut back to it.
    pub fn open(disk: Arc<SimDisk>, epoch: u64) -> io::Result<(Self, BrokerState, AppliedState)> {
        let fs = SimFs::new(disk.clone(), epoch);
        let queues = QueueFiles::open_in(fs.clone(), Path::new(QUEUE_DIR), QUEUE_FILE_BYTES)?;
        let journal = TxnJournal::open_in(fs, Path::new(JOURNAL_DIR), JOURNAL_LIMITS)?;
        let rows = SimRows { disk, epoch };
        let (state, applied) = load(&rows, &journal)?;
        queues.reconcile(&stored_offsets(&state))?;
        let stores = SimStores {
            queues,
            journal,
            rows,
            checkpointer: Checkpointer::default(),
        };
        Ok((stores, state, applied))
    }

    pub fn targets(&self) -> CheckpointTargets<'_, SimFs, SimRows> {
        CheckpointTargets {
            queues: &self.queues,
            journal: &self.journal,
            rows: &self.rows,
        }
    }

    /// Writes the checkpoint due (see `txmq_raft_store::machine::checkpoint`).
    pub fn checkpoint(&self, state: &RwLock<BrokerState>) -> io::Result<()> {
        self.checkpointer.checkpoint(self.targets(), state)
    }
}

/// The same value under the other type configuration: the simulator's Raft types differ from
/// the node's only in their runtime, so they encode alike.
pub fn convert<T: Serialize, U: DeserializeOwned>(value: &T) -> io::Result<U> {
    Ok(codec::decode(&codec::encode(value)?)?)
}
