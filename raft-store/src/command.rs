//! Commands proposed through Raft, and the results every replica computes identically.
//!
//! A business rejection (unknown topic, duplicate topic, wrong topic type) is *data* in the
//! committed result, not an error: every replica applies the same entry and agrees on it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::state::{Decision, DecisionSource, TxnState, TxnTiming};

/// One Raft entry's application payload. `time_ms` is stamped by the leader when it proposes;
/// the state machine uses it as "now" and never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub time_ms: u64,
    pub op: Operation,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Operation::CreateTopic(spec) => write!(f, "create_topic({})", spec.name),
            Operation::Publish { topic, messages } => {
                write!(f, "publish({topic}, {} messages)", messages.len())
            }
            Operation::RetireNode { id } => write!(f, "retire_node({id})"),
            Operation::HalfMessage { topic, group, .. } => {
                write!(f, "half_message({topic}, {group})")
            }
            Operation::EndTransaction {
                txn_id,
                decision,
                source,
                ..
            } => {
                write!(
                    f,
                    "end_transaction({txn_id}, {}, {})",
                    decision.as_str(),
                    source.as_str()
                )
            }
            Operation::TxnTimers {
                checks,
                expirations,
            } => {
                write!(
                    f,
                    "txn_timers({} checks, {} expirations)",
                    checks.len(),
                    expirations.len()
                )
            }
        }
    }
}

/// What a command does.
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

/// Where a published message landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosition {
    pub message_id: String,
    pub queue: u32,
    pub offset: u64,
}

/// The committed outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Blank and membership entries.
    Nothing,
    TopicCreated(crate::state::TopicMeta),
    /// One position per message, in the order the messages were given.
    Published(Vec<MessagePosition>),
    Rejected(Rejection),
    HalfAccepted {
        txn_id: String,
        message_id: String,
    },
    TxnDecided(TxnOutcome),
    TimersApplied {
        /// (transaction id, attempt number) of each check recorded.
        checks: Vec<(String, u32)>,
        /// (transaction id, reason) of each rollback.
        rolled_back: Vec<(String, DecisionSource)>,
    },
}

/// The state of a transaction after a decision was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    pub txn_id: String,
    pub state: TxnState,
    /// Who decided (for a pending transaction: none yet).
    pub reason: Option<DecisionSource>,
    pub position: Option<MessagePosition>,
    /// True when this decision repeated one already applied (idempotent success).
    pub repeated: bool,
}

/// A business rejection every replica agrees on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("topic '{0}' already exists; choose another name or use the existing topic")]
    TopicExists(String),
    #[error(
        "topic '{0}' does not exist; create it first with `txmq topic create {0} --type normal`"
    )]
    UnknownTopic(String),
    #[error("{}", wrong_type_message(topic, *expected, *actual))]
    WrongTopicType {
        topic: String,
        expected: TopicKind,
        actual: TopicKind,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(
        "transaction '{0}' is unknown: it never existed, or it was decided long ago and forgotten"
    )]
    UnknownTransaction(String),
    #[error(
        "transaction '{txn_id}' belongs to producer group '{owner}', not '{group}'; decide it from its own group"
    )]
    WrongGroup {
        txn_id: String,
        owner: String,
        group: String,
    },
    #[error(
        "transaction '{txn_id}' is already {existing} (by {reason}); a {requested} cannot change that"
    )]
    ConflictingDecision {
        txn_id: String,
        existing: TxnState,
        reason: String,
        requested: String,
    },
}

fn wrong_type_message(topic: &str, expected: TopicKind, actual: TopicKind) -> String {
    match (expected, actual) {
        (TopicKind::Normal, TopicKind::Transaction) => format!(
            "topic '{topic}' is a transaction topic, so plain sends are rejected; send a transactional message \
             (`txmq txn send {topic} --group G ...`) or use a normal topic"
        ),
        _ => format!(
            "topic '{topic}' is a {actual} topic, but transactional messages are accepted only on transaction \
             topics; create one with `txmq topic create NAME --type transaction`"
        ),
    }
}
