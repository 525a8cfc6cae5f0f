//! txmq's replicated state machine: what every replica computes, identically, from the log.
//!
//! * [`Command`] / [`Operation`]: the log's entries (and writes forwarded to the leader);
//!   [`CommandResult`] and [`Rejection`]: what applying one yields on every replica.
//! * [`BrokerState`]: topics with their queue counters, consumer groups with their leases,
//!   transactions with their deadlines — all in memory. [`BrokerState::apply`] takes a log
//!   index and a command and returns the result and the [`Changes`] (topic X changed,
//!   messages appended to queue q, …); the store decides how changes become files and rows.
//! * [`access`]: users (with password hashes, never passwords) and their rights.
//! * [`limits`]: validation shared with the edge (names, sizes, counts).
//! * [`codec`]: the MessagePack encoding of everything stored or sent between peers.
//!
//! This crate holds no clock, no I/O, no threads: "now" is the leader's time stamped into each
//! command, ids derive from log indexes. So replaying a log always yields the same state —
//! which is what lets every replica, a restarted node and the simulator agree. Its only
//! dependencies are data crates (`cargo tree -p txmq-state -e normal`).

pub mod access;
mod access_apply;
mod broker_state;
mod changes;
pub mod codec;
mod command;
mod entry_point;
mod group;
mod group_apply;
pub mod limits;
mod message;
mod operation;
mod outcome;
mod rejection;
mod topic;
mod topic_admin;
mod transaction;
mod transactions;
mod txn_apply;
mod txn_id;

pub use access::{Need, PasswordHash, Right, User};
pub use broker_state::{Applied, BrokerState};
pub use changes::{Change, Changes};
pub use command::Command;
pub use group::{
    DEFAULT_MAX_DELIVERY_ATTEMPTS, DLQ_PREFIX, GroupState, Lease, MAX_DELIVERY_ATTEMPTS,
    MAX_IN_FLIGHT_PER_QUEUE, QueueProgress,
};
pub use group_apply::{parse_receipt, receipt};
pub use message::{StoredMessage, StoredMessageRef};
pub use operation::{
    DeadLetterItem, NewMessage, Operation, PutUserMode, QueueTrim, ResetTarget, TopicKind,
    TopicSpec,
};
pub use outcome::{AckOutcome, CommandResult, Delivery, MessagePosition, TxnOutcome};
pub use rejection::Rejection;
pub use topic::TopicMeta;
pub use transaction::{
    Decision, DecisionSource, DueAction, MAX_EVENTS, MAX_HISTORY, TxnEvent, TxnEventKind,
    TxnRecord, TxnState, TxnTiming,
};
pub use transactions::{MAX_DECIDED_KEPT, Transactions};
pub use txn_id::TxnId;
