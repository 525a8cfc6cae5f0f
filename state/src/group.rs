//! A consumer group's replicated progress on one topic: per queue, what is acknowledged, what
//! is leased (in flight, invisible to the rest of the group), and where new deliveries start.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The default number of deliveries before a message goes to the dead-letter topic.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 16;
/// The most deliveries a group may allow.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 1000;
/// The most messages one group may have in flight (leased) on one queue.
pub const MAX_IN_FLIGHT_PER_QUEUE: usize = 10_000;

/// One leased (in-flight) message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// 1 for the first delivery.
    pub attempt: u32,
    /// When the message becomes visible to the group again if not acknowledged.
    pub visible_at_ms: u64,
    /// The log index of the entry that granted this lease: part of the receipt handle, so an
    /// acknowledgement with an older receipt cannot acknowledge a newer delivery.
    pub lease_index: u64,
}

/// A group's progress in one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueProgress {
    /// Every offset below this is acknowledged (or was skipped by retention or a reset).
    pub ack_offset: u64,
    /// The next offset never delivered to this group.
    pub next_offset: u64,
    /// In-flight messages by offset (all in `ack_offset..next_offset`).
    pub leases: BTreeMap<u64, Lease>,
    /// Acknowledged offsets above `ack_offset` (acknowledgements arrive out of order).
    pub acked: BTreeSet<u64>,
}

impl QueueProgress {
    /// Moves `ack_offset` over every contiguous acknowledged offset.
    pub fn advance(&mut self) {
        while self.acked.remove(&self.ack_offset) {
            self.ack_offset += 1;
        }
    }

    /// Jumps to `offset` (a reset, or retention removing what the group had not consumed).
    pub fn jump_to(&mut self, offset: u64) {
        self.ack_offset = offset;
        self.next_offset = offset;
        self.leases.clear();
        self.acked.clear();
    }

    /// Messages not yet acknowledged up to `end` (the queue's next offset).
    pub fn lag(&self, end: u64) -> u64 {
        end.saturating_sub(self.ack_offset)
            .saturating_sub(self.acked.len() as u64)
    }
}

/// A consumer group's progress on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub group: String,
    pub topic: String,
    pub max_delivery_attempts: u32,
    pub queues: Vec<QueueProgress>,
    /// Where the next receive starts looking (fairness across queues).
    pub cursor: u32,
    /// Messages this group never saw because retention removed them first.
    pub skipped_by_retention: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    pub created_ms: u64,
}

impl GroupState {
    /// The dead-letter topic of a group: a normal topic created on first use.
    pub fn dlq_topic(group: &str) -> String {
        format!("{DLQ_PREFIX}{group}")
    }

    pub fn in_flight(&self) -> usize {
        self.queues.iter().map(|q| q.leases.len()).sum()
    }

    /// Invariants of the group's progress.
    pub fn check_invariants(&self) {
        for (i, q) in self.queues.iter().enumerate() {
            let ctx = || format!("group {} topic {} queue {i}", self.group, self.topic);
            assert!(q.ack_offset <= q.next_offset, "{}", ctx());
            assert!(
                q.leases
                    .keys()
                    .all(|o| (q.ack_offset..q.next_offset).contains(o)),
                "{}: lease out of range",
                ctx()
            );
            assert!(
                q.acked
                    .iter()
                    .all(|o| *o > q.ack_offset && *o < q.next_offset),
                "{}: ack out of range",
                ctx()
            );
            assert!(
                q.acked.iter().all(|o| !q.leases.contains_key(o)),
                "{}: acked and leased",
                ctx()
            );
            assert!(q.leases.len() <= MAX_IN_FLIGHT_PER_QUEUE, "{}", ctx());
        }
    }
}

/// Dead-letter topics are named `dlq.<group>`; users cannot create topics with this prefix.
pub const DLQ_PREFIX: &str = "dlq.";
