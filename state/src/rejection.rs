//! Business rejections: a write that every replica refuses the same way.
//!
//! A rejection is *data* in the committed result, not an error: every replica applies the
//! same entry and agrees on it.

use serde::{Deserialize, Serialize};

use crate::{TopicKind, TxnState};

/// A business rejection every replica agrees on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("topic '{0}' already exists; choose another name or use the existing topic")]
    TopicExists(String),
    #[error(
        "topic '{0}' does not exist; create it first with `txmq topic create {0} --type normal` \
         (`--type transaction` for transactional messages)"
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
    #[error("receipt '{0}' is not a receipt handle of this group and topic")]
    InvalidReceipt(String),
    #[error(
        "receipt '{0}' is stale: the message was delivered again since; use the newest receipt"
    )]
    StaleReceipt(String),
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
    #[error(
        "topic '{topic}' has {count} pending transaction(s); decide them (`txmq txn list`, \
         `txmq txn end`) or wait for their timeout, then delete the topic"
    )]
    PendingTransactions { topic: String, count: usize },
    #[error("consumer group '{group}' has not consumed topic '{topic}'")]
    UnknownGroup { group: String, topic: String },
    #[error("user '{0}' already exists; change its password with `txmq user passwd {0}`")]
    UserExists(String),
    #[error("user '{0}' does not exist; create it with `txmq user create {0}`")]
    UnknownUser(String),
    #[error(
        "this would leave no administrator; grant another user `--admin` first (`txmq acl grant NAME --admin`)"
    )]
    LastAdmin,
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
