//! A transaction's replicated record: one half message, its checks and its decision.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{MessagePosition, NewMessage};

/// The most history events kept per transaction (the record stays bounded whatever happens).
pub const MAX_HISTORY: usize = 64;

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Pending,
    Committed,
    RolledBack,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Pending => "pending",
            TxnState::Committed => "committed",
            TxnState::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A producer's (or checker's, or operator's) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Commit,
    Rollback,
    Unknown,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Commit => "commit",
            Decision::Rollback => "rollback",
            Decision::Unknown => "unknown",
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionSource {
    /// The producer, right after its local transaction.
    Producer,
    /// A producer instance answering a check-back.
    Check,
    /// The broker, after the last check went unanswered or answered unknown.
    CheckExhausted,
    /// The broker, at the transaction's maximum lifetime.
    Timeout,
    /// An operator forcing a decision.
    Operator,
}

impl DecisionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionSource::Producer => "producer",
            DecisionSource::Check => "check",
            DecisionSource::CheckExhausted => "check_exhausted",
            DecisionSource::Timeout => "timeout",
            DecisionSource::Operator => "operator",
        }
    }
}

/// Per-transaction timing, fixed when the half message is stored (so a new leader with other
/// settings continues each transaction exactly as it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnTiming {
    pub first_check_delay_ms: u64,
    pub check_interval_ms: u64,
    pub max_checks: u32,
    pub max_lifetime_ms: u64,
}

/// Something that happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnEventKind {
    HalfStored,
    CheckSent {
        attempt: u32,
    },
    Answered {
        decision: Decision,
        source: DecisionSource,
    },
    Decided {
        state: TxnState,
        source: DecisionSource,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEvent {
    pub at_ms: u64,
    pub kind: TxnEventKind,
}

impl TxnEvent {
    /// A short machine-friendly name of the event.
    pub fn name(&self) -> &'static str {
        match self.kind {
            TxnEventKind::HalfStored => "half_stored",
            TxnEventKind::CheckSent { .. } => "check_sent",
            TxnEventKind::Answered { .. } => "answered",
            TxnEventKind::Decided { .. } => "decided",
        }
    }

    /// A human description.
    pub fn describe(&self) -> String {
        match &self.kind {
            TxnEventKind::HalfStored => "half message stored".into(),
            TxnEventKind::CheckSent { attempt } => format!("check {attempt} sent"),
            TxnEventKind::Answered { decision, source } => {
                format!("{} answered {}", source.as_str(), decision.as_str())
            }
            TxnEventKind::Decided { state, source } => {
                format!("{} by {}", state.as_str(), source.as_str())
            }
        }
    }
}

/// The replicated record of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub id: String,
    pub group: String,
    pub topic: String,
    pub message_id: String,
    pub state: TxnState,
    /// Who decided (set once decided).
    pub reason: Option<DecisionSource>,
    /// The half message; dropped once decided (committed messages live in their queue).
    pub message: Option<NewMessage>,
    pub created_ms: u64,
    pub decided_ms: Option<u64>,
    /// The log index of the decision: orders the decided window identically on every replica,
    /// including one that rebuilt it from rows after a restart.
    pub decided_index: Option<u64>,
    pub timing: TxnTiming,
    /// Checks sent so far (replicated: a new leader continues the count).
    pub check_count: u32,
    /// When the next check is due; after the last check, when the check window closes.
    pub next_check_ms: u64,
    /// When the transaction is rolled back for timeout.
    pub deadline_ms: u64,
    /// Where the committed message landed.
    pub position: Option<MessagePosition>,
    pub history: Vec<TxnEvent>,
}

impl TxnRecord {
    /// The time the scheduler must next look at this transaction.
    pub fn due_ms(&self) -> u64 {
        self.next_check_ms.min(self.deadline_ms)
    }

    pub fn record(&mut self, at_ms: u64, kind: TxnEventKind) {
        if self.history.len() == MAX_HISTORY {
            // Keep the first event (the half message) and the most recent ones.
            self.history.remove(1);
        }
        self.history.push(TxnEvent { at_ms, kind });
    }

    /// Invariants of a record.
    pub fn check_invariants(&self) {
        assert!(self.history.len() <= MAX_HISTORY, "txn {}", self.id);
        assert!(
            self.check_count <= self.timing.max_checks,
            "txn {}: too many checks",
            self.id
        );
        match self.state {
            TxnState::Pending => {
                assert!(
                    self.message.is_some() && self.reason.is_none() && self.position.is_none(),
                    "txn {}",
                    self.id
                )
            }
            TxnState::Committed => {
                assert!(
                    self.message.is_none() && self.reason.is_some() && self.position.is_some(),
                    "txn {}",
                    self.id
                )
            }
            TxnState::RolledBack => {
                assert!(
                    self.message.is_none() && self.reason.is_some() && self.position.is_none(),
                    "txn {}",
                    self.id
                )
            }
        }
    }
}
