//! The state machine's side of a node: the openraft state-machine store, the live replica
//! (state in memory plus its stores), write-behind checkpoints, loading and upgrading data
//! directories, building and installing snapshots, and the read API the services use.

pub mod checkpoint;
pub mod load;
pub mod reader;
pub mod replica;
pub mod snapshot_build;
pub mod snapshot_install;
pub mod store;
pub mod upgrade;
