//! Where txmq keeps what it replicates: the Raft log, the state machine's stores, snapshots.
//!
//! The state machine itself is [`txmq_state`] (pure: no clock, no I/O). This crate decides how
//! its changes become files and rows, and serves openraft its storage:
//!
//! * [`log`]: the Raft log — segment files, group commit, cache, the disk-space gate.
//! * [`machine`]: the openraft state-machine store, the live replica, checkpoints, snapshot
//!   build and install, the read API ([`StateReader`]).
//! * [`snapshot`]: the snapshot file format and manifest expansion.
//! * [`files`]: frames, queue files, the transaction journal, file deletion, the idle thread.
//! * [`rows`]: sled keys and row encodings.
//! * [`types`]: the openraft type configuration and the node record.
//! * [`storage`]: opening all of it from a data directory.
//!
//! Dependencies point down that list's reverse: `rows` and `files` depend on nothing here but
//! `types`; `snapshot` on those; `log` on `files`; `machine` on all of them.

pub mod files;
pub mod log;
pub mod machine;
pub mod raft_safety;
pub mod rows;
pub mod snapshot;
pub mod storage;
pub mod types;

pub use log::space_gate::{DiskSpace, SpaceGate};
pub use log::store::LogStore;
pub use machine::reader::{ReadError, ReadMessage, StateReader};
pub use machine::store::StateMachineStore;
pub use raft_safety::with_safety_settings;
pub use snapshot::expand::SnapshotSource;
pub use storage::{Storage, StorageConfig, StorageError};
pub use types::{NodeId, NodeInfo, TypeConfig};

/// The Raft handle, typed with txmq's state-machine store.
pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;
