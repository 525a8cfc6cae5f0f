//! Rebuilding the in-memory state from what a checkpoint left on disk (at start, and after a
//! snapshot was installed).

use std::collections::HashMap;
use std::io;

use txmq_state::codec;
use txmq_state::{BrokerState, GroupState, TopicMeta, User};

use crate::files::txn_journal::{JournalRange, TxnJournal};
use crate::rows::applied_state::AppliedState;
use crate::rows::keys;

pub(crate) fn io_err(e: sled::Error) -> io::Error {
    io::Error::other(e)
}

/// Loads metadata rows and the applied state from the tree, and the transactions from the
/// journal (cut to the range the tree names).
pub(crate) fn load(
    tree: &sled::Tree,
    journal: &TxnJournal,
) -> io::Result<(BrokerState, AppliedState)> {
    let mut topics: Vec<TopicMeta> = Vec::new();
    for item in tree.scan_prefix([keys::TOPIC_PREFIX]) {
        let (_, bytes) = item.map_err(io_err)?;
        topics.push(codec::decode(&bytes)?);
    }
    let mut retired = Vec::new();
    for item in tree.scan_prefix([keys::RETIRED_PREFIX]) {
        let (key, _) = item.map_err(io_err)?;
        let id = key
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "malformed retired-node row")
            })?;
        retired.push(id);
    }
    let mut groups: Vec<GroupState> = Vec::new();
    for item in tree.scan_prefix([keys::GROUP_PREFIX]) {
        let (_, bytes) = item.map_err(io_err)?;
        groups.push(codec::decode(&bytes)?);
    }
    let mut users: Vec<User> = Vec::new();
    for item in tree.scan_prefix([keys::USER_PREFIX]) {
        let (_, bytes) = item.map_err(io_err)?;
        users.push(codec::decode(&bytes)?);
    }
    let range: JournalRange = match tree.get(keys::JOURNAL_KEY).map_err(io_err)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => JournalRange::default(),
    };
    let state = BrokerState::restore(topics, retired, groups, journal.load(range)?, users)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("stored state: {e}")))?;
    let applied = match tree.get(keys::APPLIED_KEY).map_err(io_err)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => AppliedState::default(),
    };
    Ok((state, applied))
}

/// The offsets each queue holds, `(low, next)` by `(topic id, queue)`.
pub(crate) fn stored_offsets(state: &BrokerState) -> HashMap<(u64, u32), (u64, u64)> {
    let mut out = HashMap::new();
    for topic in state.topics().values() {
        for queue in 0..topic.queues {
            let q = queue as usize;
            out.insert(
                (topic.id, queue),
                (topic.low_offsets[q], topic.next_offsets[q]),
            );
        }
    }
    out
}
