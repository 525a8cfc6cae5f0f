//! The newest Raft log entries, kept decoded in memory.
//!
//! Why: right after an entry is appended, the leader reads it back once per follower (to
//! replicate it) and once more to apply it; every node reads it to apply it. From the files each
//! read is a `pread` and a MessagePack decode of the whole entry — on the leader under a
//! transactional load that was a tenth of its CPU. A clone of the decoded entry is cheaper, and
//! the entry is at hand anyway when it is appended.
//!
//! Bounded by entries and by encoded bytes; a read it cannot serve whole goes to the files.

use std::collections::VecDeque;

use crate::types::alias::Entry;

/// Entries kept, at most. Followers in step read entries within milliseconds of their append;
/// a few hundred cover any healthy lag, and one that falls further behind reads the files.
const MAX_ENTRIES: usize = 256;
/// Encoded bytes of the entries kept, at most (the newest entry is kept whatever its size).
/// Memory is about three times this: each entry is held decoded *and* with the encoded bytes its
/// command keeps for re-encoding. At 32 MiB a node under transactional load was 20–40 MiB
/// larger with no measurable gain in throughput.
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Consecutive entries ending at the log's last one.
#[derive(Default)]
pub struct LogCache {
    /// `(entry, encoded size)`, oldest first; indexes are consecutive.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl LogCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    /// Adds the entry just appended after the last one (anything else empties the cache
    /// first: it only ever holds a run of consecutive indexes).
    pub fn push(&mut self, entry: Entry, encoded_bytes: usize) {
        if self
            .last_index()
            .is_some_and(|last| last + 1 != entry.log_id.index)
        {
            self.clear();
        }
        self.bytes += encoded_bytes;
        self.entries.push_back((entry, encoded_bytes));
        while self.entries.len() > MAX_ENTRIES || (self.bytes > MAX_BYTES && self.entries.len() > 1)
        {
            if let Some((_, n)) = self.entries.pop_front() {
                self.bytes -= n;
            }
        }
    }

    /// Copies of the entries `start..end` if all of them are here.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let (first, last) = (self.first_index()?, self.last_index()?);
        if start < first || end > last + 1 || start >= end {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }

    /// Drops the entries after `last` (all with `None`).
    pub fn truncate_after(&mut self, last: Option<u64>) {
        while self
            .last_index()
            .is_some_and(|i| last.is_none_or(|l| i > l))
        {
            if let Some((_, n)) = self.entries.pop_back() {
                self.bytes -= n;
            }
        }
    }

    /// Drops the entries up to and including `upto`.
    pub fn purge(&mut self, upto: u64) {
        while self.first_index().is_some_and(|i| i <= upto) {
            if let Some((_, n)) = self.entries.pop_front() {
                self.bytes -= n;
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;

    fn entry(index: u64) -> Entry {
        Entry::new(
            openraft::testing::log_id::<crate::TypeConfig>(1, 1, index),
            EntryPayload::Blank,
        )
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|es| es.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_whole_ranges_of_what_it_holds() {
        let mut cache = LogCache::default();
        for i in 5..10 {
            cache.push(entry(i), 10);
        }
        assert_eq!(indexes(cache.get(6, 9)), Some(vec![6, 7, 8]));
        assert_eq!(indexes(cache.get(4, 7)), None);
        assert_eq!(indexes(cache.get(8, 11)), None);
        cache.truncate_after(Some(7));
        assert_eq!(indexes(cache.get(5, 8)), Some(vec![5, 6, 7]));
        assert_eq!(indexes(cache.get(8, 9)), None);
        cache.purge(6);
        assert_eq!(indexes(cache.get(6, 8)), None);
        assert_eq!(indexes(cache.get(7, 8)), Some(vec![7]));
        // A gap (the log was reset elsewhere) starts the run over.
        cache.push(entry(20), 10);
        assert_eq!(indexes(cache.get(7, 8)), None);
        assert_eq!(indexes(cache.get(20, 21)), Some(vec![20]));
    }

    #[test]
    fn stays_within_its_bounds() {
        let mut cache = LogCache::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            cache.push(entry(i), 1);
        }
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        cache.push(entry(MAX_ENTRIES as u64 + 10), MAX_BYTES);
        assert_eq!(cache.entries.len(), 1, "one huge entry pushes out the rest");
        assert_eq!(cache.bytes, MAX_BYTES);
    }
}
