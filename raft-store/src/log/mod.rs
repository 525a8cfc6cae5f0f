//! The Raft log: entries in append-only segment files, group-committed and reported flushed
//! only after fsync, a cache of recent entries, and the gate that holds appends while the disk
//! is nearly full. [`log_core::LogCore`] is what the log does, [`store::LogStore`] openraft's
//! view of it on a node (the simulator wraps the same core its own way).

pub(crate) mod cache;
pub(crate) mod flusher;
pub mod log_core;
pub mod segments;
pub mod space_gate;
pub mod store;
