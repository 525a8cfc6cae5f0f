//! The Raft log as openraft sees it: [`LogCore`] (entries in segment files, the vote, committed
//! index and purge point in a small sled tree) with the node's I/O scheduling — an fsync
//! thread, sled flushes, a blocking checkpoint and an idle-priority deletion before and after
//! a purge, and the disk-space gate.
//!
//! Durability rule (the NATS JetStream trap): an append is reported flushed to openraft only
//! after `fdatasync` of the segment holding it returned ([`LogFlusher`]). The vote is flushed
//! before `save_vote` returns, because nothing may be sent that depends on an unsaved vote.
//! Entries are deleted by a purge only after a state-machine checkpoint and a flush of the sled
//! database: a restarted node re-applies its log from the state it finds on disk, so the log
//! must still hold everything that state has not durably absorbed (`crate::machine::checkpoint`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::files::file_system::OsFs;
use crate::log::flusher::LogFlusher;
use crate::log::log_core::LogCore;
use crate::log::segments::SEGMENT_BYTES;
use crate::log::space_gate::SpaceGate;
use crate::types::TypeConfig;
use crate::types::alias::{Entry, LogId, Vote};
use txmq_state::codec;

/// The log store. Cloning is cheap (shared handles); the clone serves as the log reader.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    core: Arc<LogCore<OsFs, sled::Tree>>,
    flusher: LogFlusher,
    /// Makes the state machine's applied state durable (see the module comment).
    checkpoint: Checkpoint,
    /// Closed while the data volume is nearly full: appends wait (see [`SpaceGate`]).
    space: Arc<SpaceGate>,
}

/// Writes the applied state through to disk (blocking).
pub type Checkpoint = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// About the bytes an entry takes in the log and, applied, in the queue files.
fn entry_size_hint(entry: &Entry) -> u64 {
    let op = match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.op().size_hint(),
        _ => 0,
    };
    2 * op as u64 + 64
}

impl LogStore {
    /// Opens the log in `dir`. `db` is the node's sled database, `meta` the tree for the vote
    /// and purge point, `checkpoint` makes the state machine durable before a purge.
    pub fn open(
        db: sled::Db,
        meta: sled::Tree,
        dir: &Path,
        checkpoint: Checkpoint,
    ) -> io::Result<Self> {
        Ok(Self {
            db,
            core: LogCore::open(OsFs, meta, dir, SEGMENT_BYTES)?,
            flusher: LogFlusher::start()?,
            checkpoint,
            space: Arc::new(SpaceGate::watching(dir.to_path_buf())),
        })
    }

    /// The gate appends wait at while the data volume is nearly full (the node's disk monitor
    /// opens and closes it).
    pub fn space_gate(&self) -> Arc<SpaceGate> {
        self.space.clone()
    }

    async fn flush_db(&self) -> io::Result<()> {
        self.db.flush_async().await.map_err(io::Error::other)?;
        Ok(())
    }

    /// The number of entries held (for tests and metrics).
    pub fn entry_count(&self) -> usize {
        self.core.files().len()
    }

    /// Bytes of the log's segment files (for metrics).
    pub fn disk_bytes(&self) -> u64 {
        self.core.files().disk_bytes()
    }

    /// Moves the entries of a log kept in sled by earlier versions into the segment files, so an
    /// upgraded node keeps its log. The entries are synced before the old tree is dropped.
    pub fn migrate_from_sled_tree(&self, old: &str) -> io::Result<()> {
        if !self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == old.as_bytes())
        {
            return Ok(());
        }
        let tree = self.db.open_tree(old).map_err(io::Error::other)?;
        let purged = self.core.purged()?;
        let mut entries: Vec<Entry> = Vec::new();
        for item in tree.iter() {
            let (_, bytes) = item.map_err(io::Error::other)?;
            let entry: Entry = codec::decode(&bytes)?;
            if purged.is_none_or(|p| entry.log_id.index > p.index) {
                entries.push(entry);
            }
        }
        let count = entries.len();
        {
            // Files next to the old tree can only be an interrupted earlier move (the node runs
            // nothing before this finishes): start over from the tree, which is complete.
            let mut files = self.core.files();
            files.truncate_after(None)?;
            if let Some(file) = files.append(entries)? {
                file.sync_data()?;
            }
        }
        self.db.drop_tree(old).map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        tracing::info!(
            entries = count,
            "moved the raft log out of sled into segment files"
        );
        Ok(())
    }
}

/// A range of log indexes as `start..end` (saturating: `..=u64::MAX` ends at `u64::MAX`).
pub fn index_range(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
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

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let (last_purged, last) = self.core.log_state()?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.core.write_vote(vote)?;
        self.flush_db().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.core.save_committed(committed, Instant::now())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.core.read_committed()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Before anything is written: a nearly full disk makes the append wait, not fail.
        let entries: Vec<Entry> = entries.into_iter().collect();
        let bytes: u64 = entries.iter().map(entry_size_hint).sum();
        self.space.wait_for_room(bytes).await;
        // Written (readable) now; reported flushed by the fsync thread, which syncs once for
        // all the appends that queue up meanwhile (group commit without blocking openraft).
        match self.core.append(entries)? {
            Some((file, count)) => self.flusher.flush(file, count, callback),
            None => callback.io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.core.truncate_after(last_log_id)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The purge point and the state machine's applied state become durable before any
        // entry is deleted (see the module comment); after a crash in between, the remaining
        // files are cut back to the purge point when the log is opened.
        let started = Instant::now();
        let checkpoint = self.checkpoint.clone();
        tokio::task::spawn_blocking(move || checkpoint())
            .await
            .map_err(io::Error::other)??;
        self.core.write_purge_point(&log_id)?;
        self.flush_db().await?;
        let purged = self.core.forget_through(&log_id);
        metrics::histogram!("txmq_raft_log_purge_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        if !purged.is_empty() {
            // Off the log's lock and off openraft's core loop, which awaits this purge: the
            // deletion is not urgent, and a file it leaves behind is harmless (see
            // `LogFiles::purge`).
            tokio::spawn(async move {
                match crate::files::idle_thread::run_when_idle("txmq-log-purge", || purged.delete())
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => {
                        tracing::warn!("deleting purged raft log segments failed: {e}")
                    }
                }
            });
        }
        Ok(())
    }
}
