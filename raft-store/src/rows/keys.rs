//! Key layout of the state-machine rows (the sled `state` tree, and snapshot files).
//!
//! * `T` + topic name → [`txmq_state::TopicMeta`]
//! * `M` + topic id (u64 BE) + queue (u32 BE) + first offset (u64 BE) → a message segment
//!   ([`crate::rows::message_rows`]): only in snapshot files (and in the sled tree of versions before the
//!   queue files, moved out at start); a node keeps bodies in [`crate::files::queue_files`]
//! * `R` + node id (u64 BE) → empty: a retired node id
//! * `X` + transaction id → [`txmq_state::TxnRecord`] (pending and recently decided): only in
//!   snapshot files (and in the sled tree of versions before the transaction journal, moved
//!   out at start); a node keeps them in [`crate::files::txn_journal`]
//! * `J` → the transaction journal's range, written with each checkpoint
//! * `G` + group + 0 + topic → [`txmq_state::GroupState`]
//! * `U` + user name → [`txmq_state::User`] (its password hash and rights)
//! * `S` → [`crate::machine::store::AppliedState`] (last applied log id, membership), written in the
//!   same atomic batch as the rows of each checkpoint ([`crate::machine::checkpoint`])
//!
//! Big-endian integers make byte order equal to numeric order, so a queue is a range.

pub const TOPIC_PREFIX: u8 = b'T';
pub const MESSAGE_PREFIX: u8 = b'M';
pub const APPLIED_KEY: &[u8] = b"S";
pub const RETIRED_PREFIX: u8 = b'R';
pub const TXN_PREFIX: u8 = b'X';
pub const GROUP_PREFIX: u8 = b'G';
pub const USER_PREFIX: u8 = b'U';
/// The transaction journal's range ([`crate::files::txn_journal::JournalRange`]), written with each
/// checkpoint.
pub const JOURNAL_KEY: &[u8] = b"J";

/// `G` + group + 0 + topic (names never contain a zero byte).
pub fn group_key(group: &str, topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + group.len() + topic.len());
    k.push(GROUP_PREFIX);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k
}

/// `X` + the transaction id's client form (rows of every version use it).
pub fn txn_key(id: &txmq_state::TxnId) -> Vec<u8> {
    let text = id.text();
    let mut key = Vec::with_capacity(1 + text.len());
    key.push(TXN_PREFIX);
    key.extend_from_slice(text.as_bytes());
    key
}

pub fn user_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(USER_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn retired_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = RETIRED_PREFIX;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn topic_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(TOPIC_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn message_key(topic_id: u64, queue: u32, offset: u64) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = MESSAGE_PREFIX;
    k[1..9].copy_from_slice(&topic_id.to_be_bytes());
    k[9..13].copy_from_slice(&queue.to_be_bytes());
    k[13..21].copy_from_slice(&offset.to_be_bytes());
    k
}

/// Splits a message key back into (topic id, queue, offset); `None` for any other row.
pub fn parse_message_key(key: &[u8]) -> Option<(u64, u32, u64)> {
    if key.len() != 21 || key[0] != MESSAGE_PREFIX {
        return None;
    }
    let topic_id = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let queue = u32::from_be_bytes(key[9..13].try_into().ok()?);
    let offset = u64::from_be_bytes(key[13..21].try_into().ok()?);
    Some((topic_id, queue, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_numerically_and_round_trip() {
        let a = message_key(7, 1, 255);
        let b = message_key(7, 1, 256);
        let c = message_key(7, 2, 0);
        assert!(a < b && b < c);
        assert_eq!(parse_message_key(&b), Some((7, 1, 256)));
        assert_eq!(parse_message_key(b"Tfoo"), None);
    }

    #[test]
    fn a_transaction_row_is_keyed_by_x_and_the_client_form_of_its_id() {
        let id = txmq_state::TxnId::new(0x1234, 7);
        assert_eq!(txn_key(&id), format!("X{id}").into_bytes());
    }
}
