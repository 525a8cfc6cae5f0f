//! What the Raft log store does, apart from when its I/O happens: the segment files, the
//! vote, committed index and purge point in a small key-value store, and the rules between
//! them. The node's [`crate::log::store::LogStore`] wraps it with an fsync thread and sled;
//! the deterministic simulator (`sim/`) wraps the same code with fsyncs it schedules and a
//! simulated disk. Time is an argument (`now`), so the simulator's clock drives it.
//!
//! Nothing here syncs metadata or reports an append flushed: the wrapper makes the vote
//! durable before `save_vote` returns, the purge point durable before files are deleted, and
//! reports an append flushed only after the fsync of the file [`LogCore::append`] returns.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::files::file_system::FileSystem;
use crate::log::segments::{LogFiles, PurgedSegments, read_located};
use crate::types::alias::{Entry, LogId, Vote};
use txmq_state::codec;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";
/// The committed index is stored at most this often (see [`LogCore::save_committed`]).
const COMMITTED_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// Where the log keeps its few records: the node's sled tree, or the simulator's disk. Writes
/// need not be durable until the wrapper flushes.
pub trait LogMeta: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    fn insert(&self, key: &[u8], value: Vec<u8>) -> io::Result<()>;
}

impl LogMeta for sled::Tree {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let value = sled::Tree::get(self, key).map_err(io::Error::other)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> io::Result<()> {
        sled::Tree::insert(self, key, value).map_err(io::Error::other)?;
        Ok(())
    }
}

/// The log's files and records (shared by the store and its readers).
pub struct LogCore<F: FileSystem, M: LogMeta> {
    files: Mutex<LogFiles<F>>,
    meta: M,
    /// When the committed index was last written (see [`LogCore::save_committed`]).
    committed_written: Mutex<Option<Instant>>,
}

impl<F: FileSystem, M: LogMeta> LogCore<F, M> {
    /// Opens the log in `dir` on `fs`, with its records in `meta`.
    pub fn open(fs: F, meta: M, dir: &Path, segment_bytes: u64) -> io::Result<Arc<Self>> {
        let purged = read_purged(&meta)?;
        let files = LogFiles::open_in(fs, dir, purged.map(|p| p.index), segment_bytes)?;
        Ok(Arc::new(Self {
            files: Mutex::new(files),
            meta,
            committed_written: Mutex::default(),
        }))
    }

    pub fn files(&self) -> MutexGuard<'_, LogFiles<F>> {
        // A panic while holding the lock leaves the index as it was before that operation's
        // first change at worst; openraft stops the node on the storage error that follows.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries in `start..end` that the log holds.
    pub fn entries(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        // The newest entries come from memory; others are located under the lock and read
        // without it, so appends are not held up by a reader's I/O.
        let located = {
            let files = self.files();
            let end = end.min(files.last_log_id().map_or(start, |l| l.index + 1));
            if let Some(entries) = files.cached(start, end) {
                return Ok(entries);
            }
            files.locate(start, end)?
        };
        read_located(&located)
    }

    pub fn vote(&self) -> io::Result<Option<Vote>> {
        read_record(&self.meta, VOTE_KEY)
    }

    /// Writes the vote; the caller makes it durable before anything depends on it.
    pub fn write_vote(&self, vote: &Vote) -> io::Result<()> {
        write_record(&self.meta, VOTE_KEY, vote)
    }

    pub fn purged(&self) -> io::Result<Option<LogId>> {
        read_purged(&self.meta)
    }

    /// The purge point and the last entry (the purge point when the log holds none).
    pub fn log_state(&self) -> io::Result<(Option<LogId>, Option<LogId>)> {
        let purged = self.purged()?;
        Ok((purged, self.files().last_log_id().or(purged)))
    }

    /// Writes the committed index, at most every [`COMMITTED_WRITE_INTERVAL`] (openraft calls
    /// this at every commit), and never flushed: a lost or older committed index is re-learned
    /// from the leader; it only lets a restarted node re-apply its committed log before it
    /// hears from anyone.
    pub fn save_committed(&self, committed: Option<LogId>, now: Instant) -> io::Result<()> {
        {
            let mut written = self
                .committed_written
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if written
                .is_some_and(|at| now.saturating_duration_since(at) < COMMITTED_WRITE_INTERVAL)
            {
                return Ok(());
            }
            *written = Some(now);
        }
        write_record(&self.meta, COMMITTED_KEY, &committed)
    }

    /// The committed index to re-apply up to after a restart (see [`committed_within_log`]).
    pub fn read_committed(&self) -> io::Result<Option<LogId>> {
        let committed = read_record::<Option<LogId>>(&self.meta, COMMITTED_KEY)?.flatten();
        let (_, last) = self.log_state()?;
        Ok(committed_within_log(committed, last))
    }

    /// Writes `entries` (readable at once) and returns the file to sync and how many entries
    /// it now holds unsynced; `None` when there were none.
    pub fn append(&self, entries: Vec<Entry>) -> io::Result<Option<(Arc<F::File>, u64)>> {
        let count = entries.len() as u64;
        Ok(self.files().append(entries)?.map(|file| (file, count)))
    }

    pub fn truncate_after(&self, last: Option<LogId>) -> io::Result<()> {
        self.files().truncate_after(last.map(|id| id.index))
    }

    /// Records the purge point; the caller makes it (and the state machine's applied state)
    /// durable before [`LogCore::forget_through`] lets files go.
    pub fn write_purge_point(&self, log_id: &LogId) -> io::Result<()> {
        write_record(&self.meta, PURGED_KEY, log_id)
    }

    /// Forgets the entries through `log_id`; the segment files that held only those, to delete
    /// (after a crash, files left behind are cut back to the purge point when the log opens).
    pub fn forget_through(&self, log_id: &LogId) -> PurgedSegments<F> {
        self.files().purge(log_id.index)
    }
}

/// The purge point recorded in `meta` (without opening the log).
pub fn read_purged(meta: &impl LogMeta) -> io::Result<Option<LogId>> {
    read_record(meta, PURGED_KEY)
}

fn read_record<T: serde::de::DeserializeOwned>(
    meta: &impl LogMeta,
    key: &[u8],
) -> io::Result<Option<T>> {
    match meta.get(key)? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

fn write_record<T: serde::Serialize>(meta: &impl LogMeta, key: &[u8], value: &T) -> io::Result<()> {
    meta.insert(key, codec::encode(value)?)
}

/// The committed log id a restarted node may re-apply up to: the one saved, cut back to the
/// last entry its log still holds (`last`, or the purge point).
///
/// Why: openraft commits on a follower entries it has written but not yet fsynced, and the
/// committed index is saved in sled, which reaches the disk on its own schedule (sled's
/// background flush, or the flush of a vote). A power loss can keep the saved index and lose
/// the log's tail; openraft would then fail to start, reading entries that are gone (found by
/// the simulator: `txmq-sim run --seed 639`). Every entry the log kept up to the saved index is
/// committed (a node loses only its log's tail), and the rest is re-learned from the leader.
pub fn committed_within_log(committed: Option<LogId>, last: Option<LogId>) -> Option<LogId> {
    match (committed, last) {
        (Some(c), Some(l)) if c.index > l.index => Some(l),
        (Some(_), None) => None,
        (c, _) => c,
    }
}
