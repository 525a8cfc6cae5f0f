//! Where and when an operation applies.
//!
//! Every id the state hands out is derived from this (never from a counter or a clock), so
//! replicas replaying the same log agree on them.

/// Where and when an entry applies: its log index and the leader's time stamped into it.
#[derive(Debug, Clone, Copy)]
pub struct EntryPoint {
    pub index: u64,
    pub now_ms: u64,
    /// For an operation inside a batched entry: how many message ids the operations before it
    /// in the same entry took (0 otherwise).
    pub sub: u64,
}
