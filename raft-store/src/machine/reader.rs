//! Read access to a node's committed (applied) state, for the services. Reads never go through
//! Raft: a follower serves them from what it has applied, which is always a committed prefix.

use std::io;
use std::sync::Arc;

use tokio::sync::watch;

use super::replica::Replica;
use crate::rows::applied_state::AppliedState;
use crate::rows::keys;
use txmq_state::codec;
use txmq_state::{DeadLetterItem, QueueTrim};
use txmq_state::{GroupState, StoredMessage, TopicMeta, TxnRecord};

/// The most messages one read returns.
pub const MAX_READ: usize = 1000;

/// A message read back with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    pub topic: String,
    pub queue: u32,
    pub offset: u64,
    pub message: StoredMessage,
}

/// About how many message bytes one dead-letter entry carries (at least one message).
pub const DEAD_LETTER_BYTES: usize = 4 * 1024 * 1024;

/// A cheap, cloneable read handle.
#[derive(Clone)]
pub struct StateReader {
    replica: Arc<Replica>,
}

/// Reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "topic '{0}' does not exist on this node (it may not have been created, or this node has not caught up yet)"
    )]
    UnknownTopic(String),
    #[error("topic '{topic}' has queues 0 to {max}; queue {queue} does not exist")]
    UnknownQueue { topic: String, queue: u32, max: u32 },
    #[error("storage: {0}")]
    Storage(#[from] io::Error),
    #[error("stored message is unreadable: {0}")]
    Corrupt(#[from] txmq_state::codec::CodecError),
}

impl StateReader {
    pub(crate) fn new(replica: Arc<Replica>) -> Self {
        Self { replica }
    }

    pub fn topics(&self) -> Vec<TopicMeta> {
        self.replica
            .read_state()
            .topics()
            .values()
            .cloned()
            .collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.replica.read_state().topic(name).cloned()
    }

    /// A consumer group's progress on a topic.
    pub fn group(&self, group: &str, topic: &str) -> Option<GroupState> {
        self.replica
            .read_state()
            .groups()
            .get(&(group.to_string(), topic.to_string()))
            .cloned()
    }

    /// Every consumer group, sorted by (group, topic).
    pub fn groups(&self) -> Vec<GroupState> {
        self.replica
            .read_state()
            .groups()
            .values()
            .cloned()
            .collect()
    }

    /// Whether a receive for the group could lease something now, judged from this node's
    /// applied state; and otherwise, the earliest time a lease expires (to wake a long poll).
    pub fn group_work(&self, group: &str, topic: &str, now_ms: u64) -> (bool, Option<u64>) {
        let state = self.replica.read_state();
        let Some(meta) = state.topic(topic) else {
            return (false, None);
        };
        let Some(g) = state.groups().get(&(group.to_string(), topic.to_string())) else {
            let any = meta
                .low_offsets
                .iter()
                .zip(&meta.next_offsets)
                .any(|(l, n)| l < n);
            return (any, None);
        };
        let mut wake: Option<u64> = None;
        for (q, p) in g.queues.iter().enumerate() {
            if p.next_offset < meta.next_offsets[q] || p.ack_offset < meta.low_offsets[q] {
                return (true, None);
            }
            for lease in p
                .leases
                .values()
                .filter(|l| l.attempt < g.max_delivery_attempts)
            {
                if lease.visible_at_ms <= now_ms {
                    return (true, None);
                }
                wake = Some(wake.map_or(lease.visible_at_ms, |w| w.min(lease.visible_at_ms)));
            }
        }
        (false, wake)
    }

    /// The retained message with this id (24 hex digits), wherever it is. A committed
    /// transaction's message is found through its record (in the decided window); in a normal
    /// topic, ids grow with offsets in each queue (both follow the log), so each queue is
    /// binary-searched: a few reads per queue, not a scan.
    pub fn find_message(&self, id: &str) -> Result<Option<ReadMessage>, ReadError> {
        if let Some(record) = self.transaction(&format!("T{id}")) {
            return match record.position {
                Some((queue, offset)) => self.message_at(&record.topic, queue, offset),
                None => Ok(None),
            };
        }
        let normal = self
            .topics()
            .into_iter()
            .filter(|t| t.kind == txmq_state::TopicKind::Normal);
        for topic in normal {
            for queue in 0..topic.queues {
                if let Some(found) = self.search_queue(&topic, queue, id)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Binary search of one queue of a normal topic for a message id.
    fn search_queue(
        &self,
        topic: &TopicMeta,
        queue: u32,
        id: &str,
    ) -> Result<Option<ReadMessage>, ReadError> {
        let q = queue as usize;
        let (mut lo, mut hi) = (topic.low_offsets[q], topic.next_offsets[q]);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(m) = self.message_at(&topic.name, queue, mid)? else {
                // Trimmed meanwhile: only newer offsets can still hold it.
                lo = mid + 1;
                continue;
            };
            match m.message.message_id.as_str().cmp(id) {
                std::cmp::Ordering::Equal => return Ok(Some(m)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    /// Per queue, the first retained offset whose message was born at or after `time_ms` (the
    /// next offset when none was): where a group reset "to a time" starts.
    pub fn offsets_at_time(&self, topic: &str, time_ms: u64) -> Result<Vec<u64>, ReadError> {
        let meta = self
            .topic(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let mut offsets = Vec::with_capacity(meta.queues as usize);
        for q in 0..meta.queues {
            let (mut lo, mut hi) = (meta.low_offsets[q as usize], meta.next_offsets[q as usize]);
            // Born times grow with offsets within a queue: binary search.
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let born = self
                    .message_at(topic, q, mid)?
                    .map(|m| m.message.born_at_ms);
                match born {
                    Some(b) if b < time_ms => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            offsets.push(lo);
        }
        Ok(offsets)
    }

    /// One message by position, if retained.
    pub fn message_at(
        &self,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<Option<ReadMessage>, ReadError> {
        let Some(meta) = self.topic(topic) else {
            return Ok(None);
        };
        let q = queue as usize;
        if queue >= meta.queues || offset < meta.low_offsets[q] || offset >= meta.next_offsets[q] {
            return Ok(None);
        }
        let mut found = None;
        self.for_each_message(meta.id, queue, offset, offset + 1, |_, message| {
            found = Some(message);
            false
        })?;
        Ok(found.map(|message| ReadMessage {
            topic: topic.to_string(),
            queue,
            offset,
            message,
        }))
    }

    /// Calls `f(offset, message)` for the stored messages of one queue with offsets in
    /// `[from, end)`, in order, until it returns false. Reads the segment rows (see
    /// [`crate::files::queue_files`]).
    pub fn for_each_message(
        &self,
        topic_id: u64,
        queue: u32,
        from: u64,
        end: u64,
        mut f: impl FnMut(u64, StoredMessage) -> bool,
    ) -> Result<(), ReadError> {
        if from >= end {
            return Ok(());
        }
        self.replica
            .queues
            .read(topic_id, queue, from, end, |offset, bytes| {
                Ok(f(offset, codec::decode(bytes)?))
            })?;
        Ok(())
    }

    /// Leases that used up their deliveries and expired: (group, topic, items), at most `limit`
    /// items and about [`DEAD_LETTER_BYTES`] of messages (at least one) in all, with their
    /// messages (for the leader's dead-letter step).
    pub fn dead_letter_candidates(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, String, Vec<DeadLetterItem>)>, ReadError> {
        let mut found = Vec::new();
        {
            let state = self.replica.read_state();
            for g in state.groups().values() {
                for (q, p) in g.queues.iter().enumerate() {
                    for (offset, lease) in &p.leases {
                        if found.len() == limit {
                            break;
                        }
                        if lease.visible_at_ms <= now_ms && lease.attempt >= g.max_delivery_attempts
                        {
                            found.push((
                                g.group.clone(),
                                g.topic.clone(),
                                q as u32,
                                *offset,
                                lease.lease_index,
                            ));
                        }
                    }
                }
            }
        }
        let mut out: Vec<(String, String, Vec<DeadLetterItem>)> = Vec::new();
        let mut bytes = 0usize;
        for (group, topic, queue, offset, lease_index) in found {
            let Some(m) = self.message_at(&topic, queue, offset)? else {
                continue;
            };
            // The bodies travel in one Raft entry: keep it to about one message's size.
            bytes = bytes.saturating_add(m.message.response_size());
            if bytes > DEAD_LETTER_BYTES && !out.is_empty() {
                break;
            }
            let item = DeadLetterItem {
                queue,
                offset,
                lease_index,
                message: m.message,
            };
            match out.last_mut() {
                Some((g, t, items)) if *g == group && *t == topic => items.push(item),
                _ => out.push((group, topic, vec![item])),
            }
        }
        Ok(out)
    }

    /// Retention trims due at `now_ms`: per topic, per queue, the new low offset and the bytes
    /// removed — by age (`retention_ms`) and by size (`retention_bytes`). Examines at most
    /// `max_rows` rows per queue.
    pub fn retention_trims(
        &self,
        now_ms: u64,
        max_rows: usize,
    ) -> Result<Vec<(String, Vec<QueueTrim>)>, ReadError> {
        let mut out = Vec::new();
        for meta in self.topics() {
            let mut trims = Vec::new();
            for q in 0..meta.queues {
                let qi = q as usize;
                let (low, end) = (meta.low_offsets[qi], meta.next_offsets[qi]);
                let mut retained = meta.retained_bytes[qi];
                let (mut new_low, mut bytes) = (low, 0u64);
                let mut examined = 0;
                self.for_each_message(meta.id, q, low, end, |_, m| {
                    let too_old = m.born_at_ms.saturating_add(meta.retention_ms) <= now_ms;
                    let too_big = meta.retention_bytes > 0 && retained > meta.retention_bytes;
                    if !too_old && !too_big {
                        return false;
                    }
                    new_low += 1;
                    bytes += m.body.len() as u64;
                    retained = retained.saturating_sub(m.body.len() as u64);
                    examined += 1;
                    examined < max_rows
                })?;
                if new_low > low {
                    trims.push(QueueTrim {
                        queue: q,
                        new_low,
                        bytes,
                    });
                }
            }
            if !trims.is_empty() {
                out.push((meta.name.clone(), trims));
            }
        }
        Ok(out)
    }

    /// Disk pressure: trims of up to `max_messages` from the queue whose oldest retained message
    /// is the oldest of all (across topics), so the oldest data goes first.
    pub fn oldest_first_trim(
        &self,
        max_messages: u64,
    ) -> Result<Option<(String, QueueTrim)>, ReadError> {
        let mut oldest: Option<(u64, String, u32)> = None;
        for meta in self.topics() {
            for q in 0..meta.queues {
                let low = meta.low_offsets[q as usize];
                if low >= meta.next_offsets[q as usize] {
                    continue;
                }
                let Some(m) = self.message_at(&meta.name, q, low)? else {
                    continue;
                };
                if oldest
                    .as_ref()
                    .is_none_or(|(born, _, _)| m.message.born_at_ms < *born)
                {
                    oldest = Some((m.message.born_at_ms, meta.name.clone(), q));
                }
            }
        }
        let Some((_, topic, queue)) = oldest else {
            return Ok(None);
        };
        let meta = self
            .topic(&topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.clone()))?;
        let (low, end) = (
            meta.low_offsets[queue as usize],
            meta.next_offsets[queue as usize],
        );
        let new_low = end.min(low + max_messages);
        let mut bytes = 0;
        self.for_each_message(meta.id, queue, low, new_low, |_, m| {
            bytes += m.body.len() as u64;
            true
        })?;
        Ok(Some((
            topic,
            QueueTrim {
                queue,
                new_low,
                bytes,
            },
        )))
    }

    /// One transaction (pending or recently decided).
    pub fn transaction(&self, id: &str) -> Option<TxnRecord> {
        self.replica
            .read_state()
            .transactions()
            .get_by_name(id)
            .cloned()
    }

    /// The topic of one transaction, without copying its record (which holds the body).
    pub fn transaction_topic(&self, id: &str) -> Option<String> {
        self.replica
            .read_state()
            .transactions()
            .get_by_name(id)
            .map(|r| r.topic.clone())
    }

    /// Pending transactions, oldest first, optionally of one group, at most `limit`.
    pub fn pending_transactions(&self, group: Option<&str>, limit: usize) -> Vec<TxnRecord> {
        let state = self.replica.read_state();
        // Sort references and clone only what is returned: pending records hold their bodies.
        let mut refs: Vec<&TxnRecord> = state
            .transactions()
            .pending()
            .filter(|r| group.is_none_or(|g| r.group == g))
            .collect();
        refs.sort_by_key(|r| r.created_ms);
        refs.into_iter().take(limit).cloned().collect()
    }

    /// The number of pending transactions.
    pub fn pending_transaction_count(&self) -> usize {
        self.replica.read_state().transactions().pending_count()
    }

    /// Pending transactions due at `now_ms` (the scheduler's input; cost ∝ number due).
    pub fn due_transactions(&self, now_ms: u64, limit: usize) -> Vec<TxnRecord> {
        self.replica
            .read_state()
            .transactions()
            .due(now_ms, limit)
            .into_iter()
            .cloned()
            .collect()
    }

    /// One user (with its password hash: for verifying at the edge, never for a client).
    pub fn user(&self, name: &str) -> Option<txmq_state::User> {
        self.replica.read_state().users().get(name).cloned()
    }

    /// The first of `needs` that user `name` may not do (all of them if there is no such
    /// user), checked under one look at the state and without copying the user.
    pub fn first_denied<'a, 'n>(
        &self,
        name: &str,
        needs: &'a [txmq_state::Need<'n>],
    ) -> Option<&'a txmq_state::Need<'n>> {
        let state = self.replica.read_state();
        match state.users().get(name) {
            Some(user) => needs.iter().find(|n| !user.may(n)),
            None => needs.first(),
        }
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<txmq_state::User> {
        self.replica
            .read_state()
            .users()
            .values()
            .cloned()
            .collect()
    }

    /// Whether any user exists (authentication has been bootstrapped).
    pub fn has_users(&self) -> bool {
        !self.replica.read_state().users().is_empty()
    }

    pub fn is_retired(&self, node_id: u64) -> bool {
        self.replica.read_state().retired_nodes().contains(&node_id)
    }

    pub fn applied(&self) -> AppliedState {
        self.replica.read_applied()
    }

    /// Watches the last applied log index.
    pub fn watch_applied_index(&self) -> watch::Receiver<u64> {
        self.replica.applied_index.subscribe()
    }

    /// Reads up to `max` messages of one queue (or of every queue when `queue` is `None`),
    /// starting at `from` in each queue.
    pub fn read(
        &self,
        topic: &str,
        queue: Option<u32>,
        from: u64,
        max: usize,
    ) -> Result<Vec<ReadMessage>, ReadError> {
        self.read_bounded(topic, queue, from, max, usize::MAX)
    }

    /// [`StateReader::read`], stopping before a message that would take the messages past
    /// `max_bytes` ([`StoredMessage::response_size`]) — but always returning at least one, so
    /// any message up to the size limit can be read.
    pub fn read_bounded(
        &self,
        topic: &str,
        queue: Option<u32>,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<ReadMessage>, ReadError> {
        let meta = self
            .topic(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let max = max.clamp(1, MAX_READ);
        let queues: Vec<u32> = match queue {
            Some(q) if q >= meta.queues => {
                return Err(ReadError::UnknownQueue {
                    topic: topic.to_string(),
                    queue: q,
                    max: meta.queues - 1,
                });
            }
            Some(q) => vec![q],
            None => (0..meta.queues).collect(),
        };
        let mut out = Vec::new();
        let (mut bytes, mut full) = (0usize, false);
        for q in queues {
            let start = from.max(meta.low_offsets[q as usize]);
            let end = meta.next_offsets[q as usize];
            if start >= end {
                continue;
            }
            if out.len() == max || full {
                return Ok(out);
            }
            self.for_each_message(meta.id, q, start, end, |offset, message| {
                let size = message.response_size();
                if !out.is_empty() && bytes.saturating_add(size) > max_bytes {
                    full = true;
                    return false;
                }
                bytes = bytes.saturating_add(size);
                out.push(ReadMessage {
                    topic: topic.to_string(),
                    queue: q,
                    offset,
                    message,
                });
                out.len() < max
            })?;
        }
        Ok(out)
    }

    /// A digest of every replicated row (topics and messages), equal on replicas that applied
    /// the same log prefix. Used by tests and the chaos checker to compare replicas.
    pub fn content_digest(&self) -> Result<u32, io::Error> {
        Ok(self.applied_digest()?.1)
    }

    /// The applied log index and the digest of the state at exactly that index (applies wait
    /// while the digest is computed).
    pub fn applied_digest(&self) -> Result<(u64, u32), io::Error> {
        let state = self.replica.read_state();
        let applied = *self.replica.applied_index.borrow();
        let mut hasher = crc32fast::Hasher::new();
        let mut hash = |k: &[u8], v: &[u8]| {
            hasher.update(&(k.len() as u64).to_le_bytes());
            hasher.update(k);
            hasher.update(&(v.len() as u64).to_le_bytes());
            hasher.update(v);
        };
        let mut rows = crate::rows::state_rows::metadata_rows(&state)?;
        rows.sort();
        for (k, v) in &rows {
            hash(k, v);
        }
        let mut topics: Vec<_> = state.topics().values().collect();
        topics.sort_by_key(|t| t.id);
        for topic in topics {
            for queue in 0..topic.queues {
                let q = queue as usize;
                let (low, next) = (topic.low_offsets[q], topic.next_offsets[q]);
                self.replica
                    .queues
                    .read(topic.id, queue, low, next, |offset, message| {
                        hash(&keys::message_key(topic.id, queue, offset), message);
                        Ok(true)
                    })?;
            }
        }
        Ok((applied, hasher.finalize()))
    }

    /// Bytes the queue files take on disk (for metrics).
    pub fn queue_file_bytes(&self) -> u64 {
        self.replica.queues.disk_bytes()
    }
}
