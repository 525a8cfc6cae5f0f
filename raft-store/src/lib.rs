//! Everything txmq replicates.
//!
//! * [`types`]: the openraft type configuration ([`TypeConfig`]) and the node record.
//! * [`command`]: the commands proposed through Raft and the results every replica agrees on.
//! * [`state`]: the pure, deterministic state machine. It never reads a clock, never does I/O:
//!   `apply(command, log index)` with the leader's time inside the command, producing a
//!   [`state::WriteBatch`] that the store writes atomically.
//! * [`log_store`]: the Raft log: entries in append-only segment files ([`log_files`]), reported
//!   flushed only after fsync ([`log_flusher`], group commit); vote and purge point in sled.
//! * [`sm_store`]: the sled-backed state-machine store, snapshot build and install.
//! * [`snapshot`]: the streaming snapshot file format.
//! * [`reader`]: read access to committed state, shared with the gRPC services.

pub mod background;
pub mod checkpoint;
pub mod codec;
pub mod command;
pub mod file_reaper;
pub mod frame;
pub mod gradual_delete;
pub mod keys;
pub mod limits;
pub mod log_cache;
pub mod log_files;
pub mod log_flusher;
pub mod log_store;
pub mod numbered_files;
pub mod queue_files;
pub mod reader;
pub mod segment;
pub mod sm_store;
pub mod snapshot;
pub mod space_gate;
pub mod state;
pub mod storage;
pub mod trickle_synced_file;
pub mod txn_journal;
pub mod types;

pub use command::{Command, CommandResult, NewMessage, Operation, Rejection, TopicKind, TopicSpec};
pub use log_store::LogStore;
pub use reader::StateReader;
pub use sm_store::StateMachineStore;
pub use storage::{Storage, StorageConfig, StorageError};
pub use types::{NodeId, NodeInfo, Raft, TypeConfig};
