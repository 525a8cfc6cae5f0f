//! The Raft log store of a simulated node: the real log (`txmq_raft_store::log::log_core`,
//! with its segment files) on the node's [`SimDisk`], wrapped for openraft the way the real
//! `LogStore` wraps it, with the simulation scheduling the I/O: an append is reported flushed
//! only after the fsync of the file that holds it (a task after a simulated fsync delay, where
//! the node has a thread), the vote and the purge point are synced before `save_vote` and
//! `purge` return.
//!
//! What differs from the real `LogStore`: the records live on the [`SimDisk`] (the node's are
//! in sled); the state machine's checkpoint before a purge is the snapshot the simulated state
//! machine already synced; purged files are deleted at once (the node deletes them later, on
//! an idle thread); there is no disk-space gate.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use txmq_raft_store::files::file_system::StoredFile;
use txmq_raft_store::log::log_core::{LogCore, LogMeta, read_purged};
use txmq_raft_store::log::store::index_range;

use crate::bugs::Bug;
use crate::disk::{DiskWrite, SimDisk};
use crate::sim_fs::SimFs;
use crate::types::{Entry, LogId, SimConfig, Vote, spawn};

/// Where the log's files are on the simulated disk.
const LOG_DIR: &str = "/data/raft-log";
/// Small segments, so runs start, seal and purge many of them (the real size is 32 MiB).
const SEGMENT_BYTES: u64 = 16 * 1024;

/// The log's records on the simulated disk, written by one incarnation.
pub struct SimLogRecords {
    disk: Arc<SimDisk>,
    epoch: u64,
}

impl SimLogRecords {
    /// The records as the running incarnation of `disk` writes them.
    fn of(disk: &Arc<SimDisk>) -> Self {
        SimLogRecords {
            disk: disk.clone(),
            epoch: disk.epoch(),
        }
    }
}

impl LogMeta for SimLogRecords {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.disk.read(|image| image.log_records.get(key).cloned()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> io::Result<()> {
        self.disk
            .write(self.epoch, DiskWrite::LogRecord(key.to_vec(), value))
    }
}

type Core = LogCore<SimFs, SimLogRecords>;

/// One incarnation's log.
#[derive(Clone)]
pub struct SimLogStore {
    disk: Arc<SimDisk>,
    epoch: u64,
    core: Arc<Core>,
    bug: Option<Bug>,
}

impl SimLogStore {
    /// Opens the log the disk holds, as a restarted node does (a torn tail is cut off; damage
    /// anywhere else fails the start).
    pub fn open(disk: Arc<SimDisk>, bug: Option<Bug>) -> io::Result<Self> {
        let epoch = disk.epoch();
        Ok(SimLogStore {
            core: open_core(&disk)?,
            disk,
            epoch,
            bug,
        })
    }

    /// Where opening the log cut off a torn tail (segment, byte), if it did.
    pub fn torn_tail_cut(&self) -> Option<(u64, u64)> {
        self.core.files().torn_tail_cut()
    }
}

fn open_core(disk: &Arc<SimDisk>) -> io::Result<Arc<Core>> {
    let fs = SimFs::new(disk.clone(), disk.epoch());
    LogCore::open(
        fs,
        SimLogRecords::of(disk),
        Path::new(LOG_DIR),
        SEGMENT_BYTES,
    )
}

/// Every entry the log on `disk` holds (for the report of a failed seed).
pub fn read_all(disk: &Arc<SimDisk>) -> io::Result<Vec<Entry>> {
    open_core(disk)?.entries(0, u64::MAX)
}

/// The log's purge point on `disk`.
pub fn purged(disk: &Arc<SimDisk>) -> Option<LogId> {
    read_purged(&SimLogRecords::of(disk)).ok().flatten()
}

impl RaftLogReader<SimConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_range(&range);
        self.core.entries(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.core.vote()
    }
}

impl RaftLogStorage<SimConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<SimConfig>, io::Error> {
        let (last_purged_log_id, last_log_id) = self.core.log_state()?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.core.write_vote(vote)?;
        self.disk.sync(self.epoch).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // The simulation's clock (Tokio's, paused), never the wall clock.
        let now = tokio::time::Instant::now().into_std();
        self.core.save_committed(committed, now)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.core.read_committed()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<SimConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let Some((file, _)) = self.core.append(entries.into_iter().collect())? else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        if self.bug == Some(Bug::FlushBeforeFsync) {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        // Reported flushed by the fsync, off openraft's core loop (as the real flusher thread).
        let disk = self.disk.clone();
        let epoch = self.epoch;
        spawn(async move {
            disk.fsync_delay().await;
            match file.sync_data() {
                Ok(()) => callback.io_completed(Ok(())),
                // A crashed incarnation never hears back, like a process that died mid-fsync.
                Err(_) if disk.epoch() != epoch => {}
                Err(e) => callback.io_completed(Err(e)),
            }
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.core.truncate_after(last_log_id)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // openraft purges only entries a persisted snapshot covers (the simulated state
        // machine's checkpoint); the purge point is durable before any file goes.
        self.core.write_purge_point(&log_id)?;
        self.disk.sync(self.epoch).await?;
        self.core.forget_through(&log_id).delete()
    }
}
