//! A transaction's replicated record: one half message, its checks and its decision.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::txn_id::TxnId;
use crate::{MessagePosition, NewMessage};

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

/// What the scheduler does with a due transaction ([`TxnRecord::due_action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueAction {
    /// Send a check-back (when a checker of its group is connected).
    Check,
    /// Roll it back (`timeout` or `check_exhausted`).
    Expire,
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

/// The most events kept besides the half message and the decision, which are implied by the
/// record's own fields.
pub const MAX_EVENTS: usize = MAX_HISTORY - 2;

/// The replicated record of one transaction.
///
/// Its derived serde form (positional, see [`crate::codec::encode_compact`]) is the transaction
/// journal's: every field as in memory. Snapshot rows use another layout, kept by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub id: TxnId,
    pub group: String,
    pub topic: String,
    pub state: TxnState,
    /// Who decided (set once decided).
    pub reason: Option<DecisionSource>,
    /// The half message; dropped once decided (committed messages live in their queue).
    pub message: Option<NewMessage>,
    pub created_ms: u64,
    pub decided_ms: Option<u64>,
    /// The log index of the decision.
    pub decided_index: Option<u64>,
    /// The decision's place among all decisions ever applied (replicated): orders the decided
    /// window identically on every replica, including one that rebuilt it after a restart —
    /// one entry can decide many transactions, so the log index alone does not.
    pub decided_seq: Option<u64>,
    pub timing: TxnTiming,
    /// Checks sent so far (replicated: a new leader continues the count).
    pub check_count: u32,
    /// When the next check is due; after the last check, when the check window closes.
    pub next_check_ms: u64,
    /// When the transaction is rolled back for timeout.
    pub deadline_ms: u64,
    /// `(queue, offset)` of the committed message (its message id is the transaction's).
    pub position: Option<(u32, u64)>,
    /// What happened between the half message and the decision (checks sent, `unknown`
    /// answers), oldest first, at most [`MAX_EVENTS`].
    pub events: Vec<TxnEvent>,
}

impl TxnRecord {
    /// A new pending transaction for `message`, stored at `now_ms`.
    pub fn pending(
        id: TxnId,
        group: &str,
        topic: &str,
        message: NewMessage,
        timing: TxnTiming,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            group: group.to_string(),
            topic: topic.to_string(),
            state: TxnState::Pending,
            reason: None,
            message: Some(message),
            created_ms: now_ms,
            decided_ms: None,
            decided_index: None,
            decided_seq: None,
            timing,
            check_count: 0,
            next_check_ms: now_ms.saturating_add(timing.first_check_delay_ms),
            deadline_ms: now_ms.saturating_add(timing.max_lifetime_ms),
            position: None,
            events: Vec::new(),
        }
    }

    /// The time the scheduler must next look at this transaction.
    pub fn due_ms(&self) -> u64 {
        self.next_check_ms.min(self.deadline_ms)
    }

    /// What the leader's scheduler proposes for this transaction once it is due at `now_ms`:
    /// roll it back when its lifetime or its checks are used up, otherwise check it. (The
    /// state machine validates the proposal again at the entry's time.)
    pub fn due_action(&self, now_ms: u64) -> DueAction {
        if now_ms >= self.deadline_ms || self.check_count >= self.timing.max_checks {
            DueAction::Expire
        } else {
            DueAction::Check
        }
    }

    pub fn message_id(&self) -> String {
        self.id.message_id()
    }

    /// Where the committed message landed.
    pub fn message_position(&self) -> Option<MessagePosition> {
        self.position.map(|(queue, offset)| MessagePosition {
            message_id: self.message_id(),
            queue,
            offset,
        })
    }

    /// About the size of the record's encoding (a little more, rarely less): what a buffer for
    /// it is reserved at.
    pub fn encoded_size_hint(&self) -> usize {
        let message = self.message.as_ref().map_or(0, |m| {
            let names = crate::message::properties_size_hint(&m.properties);
            m.body.len() + m.key.len() + m.tag.len() + names + 16
        });
        let fixed = 128 + 24 * self.events.len();
        fixed + self.group.len() + self.topic.len() + message
    }

    /// Records an event between the half message and the decision.
    pub fn record(&mut self, at_ms: u64, kind: TxnEventKind) {
        if self.events.len() == MAX_EVENTS {
            // Keep the most recent ones (the half message is always the first of the history).
            self.events.remove(0);
        }
        self.events.push(TxnEvent { at_ms, kind });
    }

    /// The whole history: the half message, the recorded events, and the decision.
    pub fn history(&self) -> Vec<TxnEvent> {
        let mut out = Vec::with_capacity(self.events.len() + 2);
        out.push(TxnEvent {
            at_ms: self.created_ms,
            kind: TxnEventKind::HalfStored,
        });
        out.extend(self.events.iter().cloned());
        if let (Some(at_ms), Some(source)) = (self.decided_ms, self.reason) {
            out.push(TxnEvent {
                at_ms,
                kind: TxnEventKind::Decided {
                    state: self.state,
                    source,
                },
            });
        }
        out
    }

    /// Invariants of a record.
    pub fn check_invariants(&self) {
        assert!(self.events.len() <= MAX_EVENTS, "txn {}", self.id);
        assert!(
            self.check_count <= self.timing.max_checks,
            "txn {}: too many checks",
            self.id
        );
        let decided = self.decided_ms.is_some()
            && self.decided_index.is_some()
            && self.decided_seq.is_some()
            && self.reason.is_some();
        match self.state {
            TxnState::Pending => assert!(
                self.message.is_some()
                    && self.reason.is_none()
                    && self.position.is_none()
                    && self.decided_seq.is_none(),
                "txn {}",
                self.id
            ),
            TxnState::Committed => assert!(
                decided && self.message.is_none() && self.position.is_some(),
                "txn {}",
                self.id
            ),
            TxnState::RolledBack => assert!(
                decided && self.message.is_none() && self.position.is_none(),
                "txn {}",
                self.id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_due_transaction_is_checked_until_its_lifetime_or_checks_run_out() {
        let timing = TxnTiming {
            first_check_delay_ms: 1_000,
            check_interval_ms: 1_000,
            max_checks: 2,
            max_lifetime_ms: 10_000,
        };
        let message = NewMessage {
            key: String::new(),
            tag: String::new(),
            body: Vec::new(),
            properties: BTreeMap::new(),
        };
        let mut r = TxnRecord::pending(TxnId::new(1, 0), "g", "t", message, timing, 0);
        assert_eq!(r.due_action(1_000), DueAction::Check);
        assert_eq!(r.due_action(10_000), DueAction::Expire, "lifetime over");
        r.check_count = 2;
        assert_eq!(r.due_action(3_000), DueAction::Expire, "checks used up");
    }
}
