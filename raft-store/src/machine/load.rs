//! Rebuilding the in-memory state from what a checkpoint left on disk (at start, and after a
//! snapshot was installed).

use std::collections::HashMap;
use std::io;

use txmq_state::codec;
use txmq_state::{BrokerState, GroupState, TopicMeta, User};

use crate::files::file_system::FileSystem;
use crate::files::txn_journal::{JournalRange, TxnJournal};
use crate::rows::applied_state::AppliedState;
use crate::rows::keys;
use crate::rows::row_store::RowStore;

/// Loads metadata rows and the applied state from the rows, and the transactions from the
/// journal (cut to the range the rows name).
pub fn load<F: FileSystem, R: RowStore>(
    rows: &R,
    journal: &TxnJournal<F>,
) -> io::Result<(BrokerState, AppliedState)> {
    let topics: Vec<TopicMeta> = decoded_rows(rows, keys::TOPIC_PREFIX)?;
    let mut retired = Vec::new();
    rows.for_each_with_prefix(&[keys::RETIRED_PREFIX], &mut |key, _| {
        let id = key
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "malformed retired-node row")
            })?;
        retired.push(id);
        Ok(())
    })?;
    let groups: Vec<GroupState> = decoded_rows(rows, keys::GROUP_PREFIX)?;
    let users: Vec<User> = decoded_rows(rows, keys::USER_PREFIX)?;
    let range: JournalRange = match rows.get(keys::JOURNAL_KEY)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => JournalRange::default(),
    };
    let state = BrokerState::restore(topics, retired, groups, journal.load(range)?, users)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("stored state: {e}")))?;
    let applied = match rows.get(keys::APPLIED_KEY)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => AppliedState::default(),
    };
    Ok((state, applied))
}

/// The values of the rows under a one-byte key prefix, decoded.
fn decoded_rows<T: serde::de::DeserializeOwned, R: RowStore>(
    rows: &R,
    prefix: u8,
) -> io::Result<Vec<T>> {
    let mut out = Vec::new();
    rows.for_each_with_prefix(&[prefix], &mut |_, value| {
        out.push(codec::decode(value)?);
        Ok(())
    })?;
    Ok(out)
}

/// The offsets each queue holds, `(low, next)` by `(topic id, queue)`.
pub fn stored_offsets(state: &BrokerState) -> HashMap<(u64, u32), (u64, u64)> {
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
