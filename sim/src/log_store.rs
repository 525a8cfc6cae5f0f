//! The Raft log store of a simulated node, over its [`SimDisk`]: openraft's storage contract
//! with the same promises as the real `LogStore` — an append is reported flushed only after
//! the fsync that covers it, the vote is durable before `save_vote` returns.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use txmq_raft_store::log::store::index_range;

use crate::bugs::Bug;
use crate::disk::{DiskWrite, SimDisk};
use crate::types::{Entry, LogId, SimConfig, Vote, spawn};

/// One incarnation's view of its disk.
#[derive(Clone)]
pub struct SimLogStore {
    disk: Arc<SimDisk>,
    epoch: u64,
    bug: Option<Bug>,
}

impl SimLogStore {
    pub fn new(disk: Arc<SimDisk>, bug: Option<Bug>) -> Self {
        let epoch = disk.epoch();
        SimLogStore { disk, epoch, bug }
    }
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
        Ok(self.disk.read(|image| {
            image
                .log
                .range(start..end)
                .map(|(_, e)| e.clone())
                .collect()
        }))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.disk.read(|image| image.vote))
    }
}

impl RaftLogStorage<SimConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<SimConfig>, io::Error> {
        let (purged, last) = self.disk.read(|image| {
            (
                image.purged,
                image.log.values().next_back().map(|e| e.log_id),
            )
        });
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
        Ok(self.disk.read(|image| image.committed))
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.disk.write(self.epoch, DiskWrite::Append(entries))?;
        if self.bug == Some(Bug::FlushBeforeFsync) {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        // Reported flushed by the fsync, off openraft's core loop (as the real flusher thread).
        let disk = self.disk.clone();
        let epoch = self.epoch;
        spawn(async move {
            if let Ok(()) = disk.sync(epoch).await {
                callback.io_completed(Ok(()));
            }
            // A crashed incarnation never hears back, like a process that died mid-fsync.
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let after = last_log_id.map(|l| l.index);
        self.disk.write(self.epoch, DiskWrite::TruncateAfter(after))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // openraft purges only entries a persisted snapshot covers; the purge point is made
        // durable before the call returns, as the real store flushes it.
        self.disk.write(self.epoch, DiskWrite::Purge(log_id))?;
        self.disk.sync(self.epoch).await
    }
}
