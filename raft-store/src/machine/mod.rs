//! The state machine's side of a node: the openraft state-machine store, the live replica
//! (state in memory plus its stores), write-behind checkpoints, loading and upgrading data
//! directories, building and installing snapshots, and the read API the services use.
//!
//! The store and the reader leave this folder; so do, for the deterministic simulator
//! (`sim/`), the parts that decide what is on disk — recording applied entries, checkpoints,
//! loading after a restart, restoring a snapshot's rows — which it runs on its simulated disk.

pub(crate) mod checkpoint;
pub(crate) mod load;
pub mod reader;
pub(crate) mod replica;
pub(crate) mod snapshot_build;
pub(crate) mod snapshot_install;
pub mod store;
pub(crate) mod upgrade;

pub use checkpoint::{CheckpointTargets, Checkpointer};
pub use load::{load, stored_offsets};
pub use snapshot_install::restore_rows;
