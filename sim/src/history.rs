//! What the clients saw: the ground truth the checker judges the cluster against.

use std::collections::BTreeMap;

use txmq_state::Decision;

/// How a plain send ended, as its producer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFate {
    Acked { message_id: String },
    Unknown,
    Rejected(String),
}

/// The producer's local database row for one transaction (its business key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// The half message was not acknowledged: the local transaction never ran.
    NotRun,
    InProgress,
    Done(Decision),
}

/// One transaction as its producer saw it.
#[derive(Debug, Clone)]
pub struct TxnSeen {
    pub txn_id: Option<String>,
    pub local: Local,
    /// The producer's own decision, acknowledged by the broker.
    pub decision_acked: Option<Decision>,
}

/// A message a consumer received and processed.
#[derive(Debug, Clone)]
pub struct Processed {
    pub group: String,
    pub body: String,
    pub attempt: u32,
    pub queue: u32,
    pub offset: u64,
}

#[derive(Debug, Default)]
pub struct History {
    /// Plain messages by body (bodies are unique).
    pub sends: BTreeMap<String, SendFate>,
    /// Transactions by business key (the message's key and body).
    pub txns: BTreeMap<String, TxnSeen>,
    pub processed: Vec<Processed>,
    /// Leased messages a leader could not read from its own state.
    pub unreadable: Vec<String>,
    pub checks_answered: u64,
}
