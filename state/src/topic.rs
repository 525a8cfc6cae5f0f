//! A topic's replicated metadata.

use serde::{Deserialize, Serialize};

use crate::Changes;
use crate::TopicKind;
use crate::message::StoredMessageRef;

/// A topic and its per-queue offset range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// The log index of the entry that created the topic: unique, deterministic, and short in
    /// message keys.
    pub id: u64,
    pub kind: TopicKind,
    pub queues: u32,
    pub retention_ms: u64,
    pub retention_bytes: u64,
    pub created_at_ms: u64,
    /// The next queue for a message without a key (round robin, replicated so every replica
    /// picks the same queue).
    pub round_robin: u32,
    /// Per queue: the offset the next message gets.
    pub next_offsets: Vec<u64>,
    /// Per queue: the oldest retained offset.
    pub low_offsets: Vec<u64>,
    /// Per queue: body bytes of the retained messages (for size-based retention).
    #[serde(default)]
    pub retained_bytes: Vec<u64>,
}

impl TopicMeta {
    /// The queue a message goes to: by key hash, or round robin without a key.
    pub fn pick_queue(&mut self, key: &str) -> u32 {
        if key.is_empty() {
            let q = self.round_robin % self.queues;
            self.round_robin = (q + 1) % self.queues;
            q
        } else {
            crc32fast::hash(key.as_bytes()) % self.queues
        }
    }

    /// Appends a message: picks its queue, takes the next offset, writes its row. Used by plain
    /// publishes, transaction commits and dead-lettering alike.
    pub fn append(
        &mut self,
        message: &StoredMessageRef<'_>,
        changes: &mut Changes,
    ) -> Result<(u32, u64), crate::codec::CodecError> {
        let queue = self.pick_queue(message.key);
        let offset = self.take_offset(queue);
        self.retained_bytes[queue as usize] += message.body.len() as u64;
        changes.append_message(self.id, queue, offset, message.encode()?);
        Ok((queue, offset))
    }

    /// Drops `queue`'s offsets below `new_low` (retention): the segments wholly below it are
    /// deleted, readers skip the rest.
    pub fn trim(&mut self, queue: u32, new_low: u64, bytes: u64, changes: &mut Changes) -> u64 {
        let q = queue as usize;
        let new_low = new_low.min(self.next_offsets[q]);
        let old_low = self.low_offsets[q];
        if new_low > old_low {
            changes.trim_below(self.id, queue, new_low);
            self.low_offsets[q] = new_low;
            self.retained_bytes[q] = self.retained_bytes[q].saturating_sub(bytes);
        }
        new_low.saturating_sub(old_low)
    }

    /// Reserves the next offset of `queue`.
    pub fn take_offset(&mut self, queue: u32) -> u64 {
        let slot = &mut self.next_offsets[queue as usize];
        let offset = *slot;
        *slot += 1;
        offset
    }

    /// Invariants of a topic: one counter pair per queue, low never past next, cursor in range.
    pub fn check_invariants(&self) {
        assert_eq!(
            self.next_offsets.len(),
            self.queues as usize,
            "topic {}",
            self.name
        );
        assert_eq!(
            self.low_offsets.len(),
            self.queues as usize,
            "topic {}",
            self.name
        );
        assert!(self.round_robin < self.queues, "topic {}", self.name);
        for (low, next) in self.low_offsets.iter().zip(&self.next_offsets) {
            assert!(
                low <= next,
                "topic {}: low offset {low} past next offset {next}",
                self.name
            );
        }
    }
}
