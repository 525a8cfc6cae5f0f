//! The pure, deterministic replicated state machine.
//!
//! [`BrokerState`] holds the small, hot metadata (topics and their queue counters) in memory;
//! message rows go to the store through a [`WriteBatch`]. `apply` reads no clock and does no
//! I/O: replaying the same log yields the same state and the same batches (tested by the
//! replay-determinism test).

mod broker_state;
mod group;
mod group_apply;
mod message;
mod topic;
mod transaction;
mod transactions;
mod txn_apply;
mod txn_id;
mod write_batch;

pub use broker_state::BrokerState;
pub use group::{
    DEFAULT_MAX_DELIVERY_ATTEMPTS, DLQ_PREFIX, GroupState, Lease, MAX_DELIVERY_ATTEMPTS,
    MAX_IN_FLIGHT_PER_QUEUE, QueueProgress,
};
pub use group_apply::{parse_receipt, receipt};
pub use message::{StoredMessage, StoredMessageRef};
pub use topic::TopicMeta;
pub use transaction::{
    Decision, DecisionSource, MAX_EVENTS, MAX_HISTORY, TxnEvent, TxnEventKind, TxnRecord, TxnRow,
    TxnState, TxnTiming,
};
pub use transactions::{MAX_DECIDED_KEPT, Transactions};
pub use txn_id::TxnId;
pub use write_batch::{WriteBatch, WriteOp};
