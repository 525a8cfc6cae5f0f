//! The Raft log store of a simulated node: the real segment files
//! (`txmq_raft_store::log::segments::LogFiles`) on the node's [`SimDisk`], under openraft's
//! storage contract with the same promises as the real `LogStore` — an append is reported
//! flushed only after the fsync of the file that holds it, the vote is durable before
//! `save_vote` returns, the purge point is durable before entries are deleted.
//!
//! What differs from the real `LogStore`: the fsync is a task here, not the flusher thread;
//! the vote, committed index and purge point are records of the [`SimDisk`], not sled rows.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use txmq_raft_store::files::file_system::StoredFile;
use txmq_raft_store::log::segments::{LogFiles, read_located};
use txmq_raft_store::log::store::{committed_within_log, index_range};

use crate::bugs::Bug;
use crate::disk::{DiskWrite, SimDisk};
use crate::sim_fs::SimFs;
use crate::types::{Entry, LogId, SimConfig, Vote, spawn};

/// Where the log's files are on the simulated disk.
const LOG_DIR: &str = "/data/raft-log";
/// Small segments, so runs start, seal and purge many of them (the real size is 32 MiB).
const SEGMENT_BYTES: u64 = 16 * 1024;

/// One incarnation's log.
#[derive(Clone)]
pub struct SimLogStore {
    disk: Arc<SimDisk>,
    epoch: u64,
    files: Arc<Mutex<LogFiles<SimFs>>>,
    bug: Option<Bug>,
}

impl SimLogStore {
    /// Opens the log the disk holds, as a restarted node does (a torn tail is cut off; damage
    /// anywhere else fails the start).
    pub fn open(disk: Arc<SimDisk>, bug: Option<Bug>) -> io::Result<Self> {
        let epoch = disk.epoch();
        let files = open_files(&disk)?;
        Ok(SimLogStore {
            disk,
            epoch,
            files: Arc::new(Mutex::new(files)),
            bug,
        })
    }

    fn files(&self) -> MutexGuard<'_, LogFiles<SimFs>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens the log's files on `disk` for its running incarnation.
pub fn open_files(disk: &Arc<SimDisk>) -> io::Result<LogFiles<SimFs>> {
    let purged = disk.read(|image| image.purged.map(|p| p.index));
    let fs = SimFs::new(disk.clone(), disk.epoch());
    LogFiles::open_in(fs, Path::new(LOG_DIR), purged, SEGMENT_BYTES)
}

/// Every entry the log on `disk` holds (for the report of a failed seed).
pub fn read_all(disk: &Arc<SimDisk>) -> io::Result<Vec<Entry>> {
    read_located(&open_files(disk)?.locate(0, u64::MAX)?)
}

impl RaftLogReader<SimConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_range(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        let files = self.files();
        if let Some(entries) = files.cached(start, end) {
            return Ok(entries);
        }
        read_located(&files.locate(start, end)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.disk.read(|image| image.vote))
    }
}

impl RaftLogStorage<SimConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<SimConfig>, io::Error> {
        let purged = self.disk.read(|image| image.purged);
        let last = self.files().last_log_id();
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.disk.write(self.epoch, DiskWrite::Vote(*vote))?;
        self.disk.sync(self.epoch).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced, as in the real store: a lost committed index is learned again.
        self.disk.write(self.epoch, DiskWrite::Committed(committed))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let (committed, purged) = self.disk.read(|image| (image.committed, image.purged));
        let last = self.files().last_log_id().or(purged);
        Ok(committed_within_log(committed, last))
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
        let Some(file) = self.files().append(entries)? else {
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
        self.files().truncate_after(last_log_id.map(|l| l.index))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // openraft purges only entries a persisted snapshot covers; the purge point is made
        // durable before the call returns, as the real store flushes it.
        self.disk.write(self.epoch, DiskWrite::Purge(log_id))?;
        self.disk.sync(self.epoch).await?;
        // Deleted at once (the real store deletes on an idle thread, later): either way a
        // segment a crash leaves behind is skipped when the log is opened.
        self.files().purge(log_id.index).delete()
    }
}
