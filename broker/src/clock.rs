//! The node's wall clock, read in one place. Only the edge reads it: the leader stamps it into
//! each command, and the state machine uses that stamp as "now" (it never reads a clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the leader's clock, stamped into commands.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
