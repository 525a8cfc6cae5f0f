//! Commands proposed through Raft, and the results every replica computes identically.
//!
//! A business rejection (unknown topic, duplicate topic, wrong topic type) is *data* in the
//! committed result, not an error: every replica applies the same entry and agrees on it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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
    #[error(
        "topic '{topic}' is a {actual} topic but this request needs a {expected} topic; \
         send {actual} messages to it or use a {expected} topic"
    )]
    WrongTopicType {
        topic: String,
        expected: TopicKind,
        actual: TopicKind,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}
