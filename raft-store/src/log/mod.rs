//! The Raft log: entries in append-only segment files, group-committed and reported flushed
//! only after fsync, a cache of recent entries, and the gate that holds appends while the disk
//! is nearly full. [`store::LogStore`] is openraft's view of it.

pub(crate) mod cache;
pub(crate) mod flusher;
pub mod segments;
pub mod space_gate;
pub mod store;
