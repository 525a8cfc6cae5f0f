//! Where the state machine keeps its rows (topics, groups, users, retired nodes, the journal's
//! range, the applied log id), as the few calls it makes: sled's tree in production; the
//! deterministic simulator (`sim/`) keeps them as records on its simulated disk, where a power
//! loss keeps a prefix of the batches not yet flushed, as sled recovers its own log.

use std::io;

/// Row changes written together: all or none of them survive a crash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowBatch {
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RowBatch {
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.changes.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.changes.push((key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes in the order they were made (a later one of a key wins).
    pub fn into_changes(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.changes
    }
}

/// What [`RowStore::for_each_with_prefix`] calls with each row's key and value.
pub type RowVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> io::Result<()> + 'a;

/// The calls the state machine makes on its rows.
pub trait RowStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    /// Calls `f(key, value)` for every row whose key starts with `prefix`, in key order.
    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut RowVisitor<'_>) -> io::Result<()>;
    /// Writes a batch atomically (durable after [`RowStore::flush`], or whenever the store
    /// flushes by itself).
    fn apply(&self, batch: RowBatch) -> io::Result<()>;
    /// Removes every row.
    fn clear(&self) -> io::Result<()>;
    /// Makes every batch written so far durable.
    fn flush(&self) -> io::Result<()>;
}

impl RowStore for sled::Tree {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let value = sled::Tree::get(self, key).map_err(io::Error::other)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut RowVisitor<'_>) -> io::Result<()> {
        for item in self.scan_prefix(prefix) {
            let (key, value) = item.map_err(io::Error::other)?;
            f(&key, &value)?;
        }
        Ok(())
    }

    fn apply(&self, batch: RowBatch) -> io::Result<()> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.into_changes() {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        self.apply_batch(sled_batch).map_err(io::Error::other)
    }

    fn clear(&self) -> io::Result<()> {
        sled::Tree::clear(self).map_err(io::Error::other)
    }

    fn flush(&self) -> io::Result<()> {
        sled::Tree::flush(self)
            .map(|_| ())
            .map_err(io::Error::other)
    }
}
