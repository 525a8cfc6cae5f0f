//! The Raft log on sled.
//!
//! Durability rule (the NATS JetStream trap): an append is reported flushed to openraft only
//! after `flush_async` returned, which fsyncs sled's log file. The vote is flushed before
//! `save_vote` returns, because nothing may be sent that depends on an unsaved vote.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::codec;
use crate::types::TypeConfig;
use crate::types::alias::{Entry, LogId, Vote};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";

/// The sled-backed log store. Cloning is cheap (sled handles are reference counted); the clone
/// serves as the log reader.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

fn io_err(e: sled::Error) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    pub fn new(db: sled::Db, log: sled::Tree, meta: sled::Tree) -> Self {
        Self { db, log, meta }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(io_err)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        self.meta
            .insert(key, codec::encode(value)?)
            .map_err(io_err)?;
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        self.db.flush_async().await.map_err(io_err)?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        match self.log.last().map_err(io_err)? {
            Some((_, bytes)) => {
                let entry: Entry = codec::decode(&bytes)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// The number of entries held (for tests and metrics).
    pub fn entry_count(&self) -> usize {
        self.log.len()
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn to_key_bound(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    match bound {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let range = (
            to_key_bound(range.start_bound()),
            to_key_bound(range.end_bound()),
        );
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>(range) {
            let (_, bytes) = item.map_err(io_err)?;
            entries.push(codec::decode(&bytes)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(VOTE_KEY)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.read_meta(PURGED_KEY)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta(VOTE_KEY, vote)?;
        self.flush().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed: a lost committed index is re-learned from the leader; it only lets a
        // restarted node re-apply its committed log before it hears from anyone.
        self.write_meta(COMMITTED_KEY, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
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
        let started = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        let mut count = 0u64;
        for entry in entries {
            batch.insert(&index_key(entry.log_id.index), codec::encode(&entry)?);
            count += 1;
        }
        self.log.apply_batch(batch).map_err(io_err)?;
        // Group commit: one fsync covers every entry of this append (openraft hands us all the
        // entries that queued up while the previous flush ran).
        let fsync_started = std::time::Instant::now();
        let result = self.flush().await;
        metrics::histogram!("txmq_raft_log_fsync_duration_seconds")
            .record(fsync_started.elapsed().as_secs_f64());
        metrics::histogram!("txmq_raft_log_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("txmq_raft_log_entries_appended_total").increment(count);
        callback.io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| io::Error::new(e.kind(), e.to_string())),
        );
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index + 1).unwrap_or(0);
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(from)..) {
            let (key, _) = item.map_err(io_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(io_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: after a crash in between, the log state still makes sense.
        self.write_meta(PURGED_KEY, &log_id)?;
        self.flush().await?;
        // Delete by index from the first entry: iterating the range would read every purged
        // entry's value (thousands of batched entries, hundreds of MB) just to drop it.
        let Some((first, _)) = self.log.first().map_err(io_err)? else {
            return Ok(());
        };
        let first = first
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "malformed log key"))?;
        let mut batch = sled::Batch::default();
        for index in first..=log_id.index {
            batch.remove(&index_key(index));
        }
        self.log.apply_batch(batch).map_err(io_err)?;
        Ok(())
    }
}
