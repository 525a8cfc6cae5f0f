//! A committed message as stored in the state-machine tree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The stored form of a message; its topic, queue and offset are in its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub key: String,
    pub tag: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub properties: BTreeMap<String, String>,
    /// The leader's time when the message was committed.
    pub born_at_ms: u64,
}

/// A message id: the log index of its entry and its position in that entry, as hex. Unique
/// across the cluster's lifetime because log indexes are never reused.
pub fn message_id(log_index: u64, position: usize) -> String {
    format!("{log_index:016X}{position:08X}")
}
