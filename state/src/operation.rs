//! What a command does: the operations proposed through Raft and the inputs they carry.
//!
//! This is the log's format and the format of writes forwarded to the leader. Variants and
//! fields are append-only: a new variant goes at the end, a new field goes last with a
//! default, nothing is renamed, reordered or removed (entries are decoded positionally, and
//! a cluster of mixed versions exchanges them).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::access::PasswordHash;
use crate::{Decision, DecisionSource, Right};
use crate::{StoredMessage, TxnTiming};

/// What a command does.
///
/// **Append-only**: this is the Raft log's format and the format of writes forwarded between
/// nodes of possibly different versions. A new variant goes at the end; a new field goes last
/// with a default; nothing is renamed, reordered or removed. `tests/saved_formats.rs` decodes
/// every variant from bytes saved by earlier code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    CreateTopic(TopicSpec),
    /// Plain messages to a `normal` topic. Several client sends may be packed into one entry.
    Publish {
        topic: String,
        messages: Vec<NewMessage>,
    },
    /// Records that a node id left the cluster, so it is never given to another node.
    RetireNode {
        id: u64,
    },
    /// Stores a half message (invisible until committed) and opens its transaction.
    HalfMessage {
        topic: String,
        group: String,
        message: NewMessage,
        timing: TxnTiming,
    },
    /// A decision for one transaction, fenced to its id and producer group.
    EndTransaction {
        txn_id: String,
        group: String,
        decision: Decision,
        source: DecisionSource,
    },
    /// The leader's scheduler: record checks it is about to send, and roll back transactions
    /// past their check window or lifetime. Validated at apply time against the entry's time,
    /// so a stale or deposed leader's proposal can never act early.
    TxnTimers {
        checks: Vec<String>,
        expirations: Vec<String>,
    },
    /// A receive for a consumer group: lease up to `max` messages (redeliveries first) and
    /// make them invisible to the group for `invisible_ms`.
    Receive {
        group: String,
        topic: String,
        max: u32,
        invisible_ms: u64,
    },
    /// Acknowledge received messages by their receipt handles.
    Ack {
        group: String,
        topic: String,
        receipts: Vec<String>,
    },
    /// Extend (or shorten) the invisibility of a received message; returns a new receipt.
    ChangeInvisible {
        group: String,
        topic: String,
        receipt: String,
        invisible_ms: u64,
    },
    /// Move a group's position.
    ResetGroup {
        group: String,
        topic: String,
        to: ResetTarget,
    },
    /// Create a group or change its settings.
    ConfigureGroup {
        group: String,
        topic: String,
        max_delivery_attempts: u32,
    },
    /// The leader moves messages that used up their deliveries to the group's dead-letter
    /// topic. The bodies travel in the entry (read by the leader from immutable rows); each item
    /// is re-validated at apply time.
    DeadLetter {
        group: String,
        topic: String,
        items: Vec<DeadLetterItem>,
        /// Asked for by the consumer holding the lease (RocketMQ's
        /// ForwardMessageToDeadLetterQueue): moved while its lease is current, whatever its
        /// attempts. Otherwise (the scheduler) only once the lease expired with its attempts
        /// used up. Absent (false) in entries written before it existed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        on_request: bool,
    },
    /// Retention: drop each listed queue's offsets below `new_low`.
    /// Several client operations packed into one entry (one append, one fsync, one apply) by
    /// the leader's write batcher. Results come back in the same order.
    Batch(Vec<Operation>),
    Trim {
        topic: String,
        trims: Vec<QueueTrim>,
    },
    /// Gives leases back unused: the node serving a receive did not return these messages
    /// (its response was full, or reading them failed). Each becomes visible again at once and
    /// its delivery attempt does not count. A receipt that no longer names the current lease
    /// is ignored.
    Release {
        group: String,
        topic: String,
        receipts: Vec<String>,
    },
    /// Deletes a topic with its messages and its consumer groups' progress. Refused while any
    /// of its transactions is pending (decide them, or let them time out, first).
    DeleteTopic {
        name: String,
    },
    /// Changes a topic's retention; a field left `None` keeps its value.
    UpdateTopic {
        name: String,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    },
    /// Forgets a consumer group's progress on a topic (its leases included); the group starts
    /// again from the oldest retained message if it receives again.
    DeleteGroup {
        group: String,
        topic: String,
    },
    /// Creates a user or changes its password (see [`PutUserMode`]). The edge hashed the
    /// password; the entry carries only the hash.
    PutUser {
        name: String,
        password_hash: PasswordHash,
        mode: PutUserMode,
    },
    /// Removes a user and its rights. Refused for the last administrator.
    DeleteUser {
        name: String,
    },
    /// Gives a user a right (repeating one it holds changes nothing).
    Grant {
        user: String,
        right: Right,
    },
    /// Takes a right away. Refused when it would leave no administrator.
    Revoke {
        user: String,
        right: Right,
    },
    /// Sets (or, with `None`, removes) a user's access secret (see
    /// [`crate::access::AccessSecret`]).
    SetAccessSecret {
        name: String,
        secret: Option<crate::access::AccessSecret>,
    },
}

/// What a [`Operation::PutUser`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutUserMode {
    /// A new user, without rights; refused if the name is taken.
    Create,
    /// A new password for an existing user; refused if there is no such user.
    ChangePassword,
    /// The bootstrap administrator: created with the admin right if no user has that name,
    /// otherwise nothing changes (so every node may propose it at every start).
    Bootstrap,
}

impl Operation {
    /// About how many bytes the operation encodes to (a buffer of this size rarely grows).
    pub fn size_hint(&self) -> usize {
        let message = |m: &NewMessage| {
            m.body.len()
                + m.key.len()
                + m.tag.len()
                + m.properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>()
                + 16
        };
        match self {
            Operation::Publish { topic, messages } => {
                topic.len() + messages.iter().map(message).sum::<usize>() + 16
            }
            Operation::HalfMessage {
                topic,
                group,
                message: m,
                ..
            } => topic.len() + group.len() + message(m) + 64,
            Operation::Batch(ops) => ops.iter().map(Operation::size_hint).sum::<usize>() + 8,
            _ => 128,
        }
    }
}

/// Where a reset moves a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// One offset per queue (clamped to what is retained).
    Offsets(Vec<u64>),
}

/// One message to dead-letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterItem {
    pub queue: u32,
    pub offset: u64,
    pub lease_index: u64,
    pub message: StoredMessage,
}

/// One queue's retention trim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTrim {
    pub queue: u32,
    pub new_low: u64,
    /// Body bytes of the trimmed messages (computed by the leader from the immutable rows).
    pub bytes: u64,
}

/// The message type of a topic, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TopicKind {
    Normal,
    Transaction,
}

impl TopicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Normal => "normal",
            TopicKind::Transaction => "transaction",
        }
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic as requested by its creator (already defaulted and validated at the edge; the state
/// machine validates again because it must never store an invalid topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub kind: TopicKind,
    pub queues: u32,
    pub retention_ms: u64,
    pub retention_bytes: u64,
}

/// A message as sent by a producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub key: String,
    pub tag: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub properties: BTreeMap<String, String>,
}
