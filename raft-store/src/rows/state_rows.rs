//! The state's metadata as rows: how topics, groups, transactions, users and retired node ids are
//! written to sled at a checkpoint and to snapshot files.

use txmq_state::codec::{self, CodecError};
use txmq_state::{BrokerState, Change};

use super::keys::{self, GROUP_PREFIX, RETIRED_PREFIX, TOPIC_PREFIX, TXN_PREFIX, USER_PREFIX};
use super::txn_row::encode_txn_row;

/// A stored (key, value) row.
pub type Row = (Vec<u8>, Vec<u8>);

/// The key of the row a change (other than appends and trims, which go to the queue files)
/// makes current; `None` for changes that are not rows.
pub fn changed_row_key(change: &Change) -> Option<Vec<u8>> {
    match change {
        Change::Topic(name) => Some(keys::topic_key(name)),
        Change::Group { group, topic } => Some(keys::group_key(group, topic)),
        Change::NodeRetired(id) => Some(keys::retired_key(*id).to_vec()),
        Change::Txn(id) => Some(keys::txn_key(id)),
        Change::User(name) => Some(keys::user_key(name)),
        Change::Appended { .. } | Change::TrimmedBelow { .. } | Change::TopicDeleted { .. } => None,
    }
}

/// The value the row `key` (a topic, group, transaction or retired-node row) has in `state`,
/// `None` if there is no such row.
pub fn row_value(state: &BrokerState, key: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    let Some((&prefix, rest)) = key.split_first() else {
        return Ok(None);
    };
    let text = || std::str::from_utf8(rest).ok();
    Ok(match prefix {
        TOPIC_PREFIX => match text().and_then(|name| state.topics().get(name)) {
            Some(meta) => Some(codec::encode(meta)?),
            None => None,
        },
        TXN_PREFIX => match text().and_then(|id| state.transactions().get_by_name(id)) {
            Some(record) => Some(encode_txn_row(record)?),
            None => None,
        },
        GROUP_PREFIX => {
            let names = text().and_then(|t| t.split_once('\0'));
            match names.and_then(|(g, t)| state.groups().get(&(g.to_string(), t.to_string()))) {
                Some(group) => Some(codec::encode_compact(group)?),
                None => None,
            }
        }
        USER_PREFIX => match text().and_then(|name| state.users().get(name)) {
            Some(user) => Some(codec::encode(user)?),
            None => None,
        },
        RETIRED_PREFIX => {
            let id = rest.try_into().ok().map(u64::from_be_bytes);
            id.filter(|id| state.retired_nodes().contains(id))
                .map(|_| Vec::new())
        }
        _ => None,
    })
}

/// Every metadata row of `state`, as the store holds them (written into snapshot files).
pub fn metadata_rows(state: &BrokerState) -> Result<Vec<Row>, CodecError> {
    let txns = &state.transactions();
    let mut rows = Vec::with_capacity(
        state.topics().len() + state.retired_nodes().len() + state.groups().len() + txns.len(),
    );
    for meta in state.topics().values() {
        rows.push((keys::topic_key(&meta.name), codec::encode(meta)?));
    }
    for id in state.retired_nodes() {
        rows.push((keys::retired_key(*id).to_vec(), Vec::new()));
    }
    for g in state.groups().values() {
        rows.push((
            keys::group_key(&g.group, &g.topic),
            codec::encode_compact(g)?,
        ));
    }
    for user in state.users().values() {
        rows.push((keys::user_key(&user.name), codec::encode(user)?));
    }
    for record in txns.pending().chain(txns.decided()) {
        rows.push((keys::txn_key(&record.id), encode_txn_row(record)?));
    }
    Ok(rows)
}
