//! The `S` row: how far the state machine has applied, and the membership it applied last.

use serde::{Deserialize, Serialize};

use crate::types::alias::{LogId, StoredMembership};

/// The last applied log id and membership, stored in the same atomic batch as the rows (of a
/// checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}
