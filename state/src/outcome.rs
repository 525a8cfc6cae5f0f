//! The committed outcome of a command: what every replica computes identically, and the node
//! that proposed it turns into the client's answer.

use serde::{Deserialize, Serialize};

use crate::{DecisionSource, Rejection, TopicMeta, TxnId, TxnState};

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
    TopicCreated(TopicMeta),
    /// One position per message, in the order the messages were given.
    Published(Vec<MessagePosition>),
    Rejected(Rejection),
    /// A half message was stored; its message id is the transaction's (see [`TxnId`]).
    HalfAccepted {
        txn_id: TxnId,
    },
    TxnDecided(TxnOutcome),
    Batch(Vec<CommandResult>),
    Leased(Vec<Delivery>),
    Acked(Vec<AckOutcome>),
    InvisibilityChanged {
        receipt: String,
    },
    GroupChanged,
    DeadLettered(u64),
    Trimmed(u64),
    TimersApplied {
        /// (transaction id, attempt number) of each check recorded.
        checks: Vec<(String, u32)>,
        /// (transaction id, reason) of each rollback.
        rolled_back: Vec<(String, DecisionSource)>,
    },
    /// How many of a release's leases were given back.
    Released(u32),
    /// A topic was deleted, with this many retained messages.
    TopicDeleted {
        messages: u64,
    },
    TopicUpdated(TopicMeta),
    GroupDeleted,
    /// A user was created, changed or deleted, or its rights changed; `changed` is false when
    /// the operation found the state already as asked (a repeated grant, an existing bootstrap
    /// administrator).
    UserChanged {
        changed: bool,
    },
}

/// The state of a transaction after a decision was applied. Ids stay integers here: every
/// replica computes the outcome, only the node answering the client turns it into text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    pub txn_id: TxnId,
    pub state: TxnState,
    /// Who decided (for a pending transaction: none yet).
    pub reason: Option<DecisionSource>,
    /// `(queue, offset)` of the committed message (its id is the transaction's message id).
    pub position: Option<(u32, u64)>,
    /// True when this decision repeated one already applied (idempotent success).
    pub repeated: bool,
    /// When the half message was stored (for the time-to-decision metric).
    #[serde(default)]
    pub created_ms: u64,
}

impl TxnOutcome {
    /// Where the committed message landed, with its id.
    pub fn message_position(&self) -> Option<MessagePosition> {
        self.position.map(|(queue, offset)| MessagePosition {
            message_id: self.txn_id.message_id(),
            queue,
            offset,
        })
    }
}

/// One leased message of a receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub queue: u32,
    pub offset: u64,
    pub attempt: u32,
    pub receipt: String,
}

/// The outcome of acknowledging one receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckOutcome {
    Acked,
    /// Already acknowledged (a repeat): nothing changes.
    AlreadyAcked,
    /// The message was delivered again since this receipt was issued; the newer delivery
    /// must be acknowledged with its own receipt.
    Stale,
    /// Not a receipt of this group and topic.
    Invalid,
}
