//! Rows: the key/value form of the state's metadata, in sled (checkpoints) and in snapshot
//! files. The state machine speaks of topics, groups and transactions; only this folder knows
//! their keys and row encodings.

pub mod applied_state;
pub mod keys;
pub mod message_rows;
pub mod row_store;
pub mod state_rows;
pub mod txn_row;
