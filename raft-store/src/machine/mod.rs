//! The state machine's side of a node: the openraft state-machine store, the live replica
//! (state in memory plus its stores), write-behind checkpoints, loading and upgrading data
//! directories, building and installing snapshots, and the read API the services use.
//!
//! Only the store and the reader leave this folder; the rest is how they work.

pub(crate) mod checkpoint;
pub(crate) mod load;
pub mod reader;
pub(crate) mod replica;
pub(crate) mod snapshot_build;
pub(crate) mod snapshot_install;
pub mod store;
pub(crate) mod upgrade;
