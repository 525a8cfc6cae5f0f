//! Snapshots: the streaming file format, and turning a node's manifest (metadata rows only)
//! into the full snapshot a follower installs. Building and installing one touch the live
//! replica, so they live in [`crate::machine`].

pub mod expand;
pub mod format;
