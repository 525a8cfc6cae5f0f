//! The rows an apply changes, written atomically by the store.

use std::collections::HashMap;
use std::io;

use super::txn_id::TxnId;
use crate::{keys, segment};

/// One row change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// The row now holds what the state says ([`crate::state::BrokerState::row_value`]; deleted
    /// if nothing). Encoded when the change is written, not at apply: a group or transaction
    /// that changes many times between two checkpoints is encoded once.
    Refresh(Vec<u8>),
    /// A transaction's record changed, or left the state (decided records fall out of the
    /// window): its stored copy follows the state at the next checkpoint.
    Txn(TxnId),
    /// Messages appended to one queue, `messages[i]` at offset `first + i`: one segment row.
    Append {
        topic: u64,
        queue: u32,
        first: u64,
        messages: Vec<Vec<u8>>,
    },
    /// Retention: delete the queue's segments that lie wholly below `below` (which segments
    /// those are is read from the rows when the batch is written).
    TrimBelow {
        topic: u64,
        queue: u32,
        below: u64,
    },
}

/// The row changes of one or more applied entries, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
    /// (topic, queue) → the index in `ops` of its latest `Append`, to extend it.
    open_appends: HashMap<(u64, u32), usize>,
    /// Topics whose row this batch refreshes already (an entry of commits touches one topic
    /// hundreds of times).
    refreshed_topics: Vec<String>,
}

/// A row change: `(key, Some(value))` writes, `(key, None)` deletes.
pub type RowChange = (Vec<u8>, Option<Vec<u8>>);

/// The current value of a row (`None`: no such row any more).
pub type Resolver<'a> = dyn Fn(&[u8]) -> io::Result<Option<Vec<u8>>> + 'a;

/// Reads the rows with keys in `[from, to)`, in key order.
pub type RangeReader<'a> = dyn FnMut(&[u8], &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> + 'a;

impl WriteBatch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put(key.into(), value));
    }

    /// See [`WriteOp::Refresh`].
    pub fn refresh(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Refresh(key.into()));
    }

    /// Refreshes a topic's row (once per batch).
    pub fn refresh_topic(&mut self, name: &str) {
        if self.refreshed_topics.iter().any(|t| t == name) {
            return;
        }
        self.refreshed_topics.push(name.to_string());
        self.refresh(keys::topic_key(name));
    }

    /// See [`WriteOp::Txn`].
    pub fn txn_changed(&mut self, id: TxnId) {
        self.ops.push(WriteOp::Txn(id));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete(key.into()));
    }

    /// Appends one encoded message at `offset` of a queue; consecutive appends to the same queue
    /// share a segment row.
    pub fn append_message(&mut self, topic: u64, queue: u32, offset: u64, message: Vec<u8>) {
        if let Some(&i) = self.open_appends.get(&(topic, queue))
            && let Some(WriteOp::Append {
                first, messages, ..
            }) = self.ops.get_mut(i)
            && *first + messages.len() as u64 == offset
        {
            messages.push(message);
            return;
        }
        self.open_appends.insert((topic, queue), self.ops.len());
        self.ops.push(WriteOp::Append {
            topic,
            queue,
            first: offset,
            messages: vec![message],
        });
    }

    /// Retention moved a queue's low offset to `below`.
    pub fn trim_below(&mut self, topic: u64, queue: u32, below: u64) {
        self.open_appends.remove(&(topic, queue));
        self.ops.push(WriteOp::TrimBelow {
            topic,
            queue,
            below,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Hands every row change to `change`, in order: `(key, Some(value))` writes, `(key, None)`
    /// deletes. `range` reads existing rows (to find the segments a trim removes); `resolve`
    /// gives the current value of a refreshed row.
    pub fn for_each_change(
        &self,
        range: &mut RangeReader<'_>,
        resolve: &Resolver<'_>,
        mut change: impl FnMut(&[u8], Option<&[u8]>),
    ) -> io::Result<()> {
        for op in &self.ops {
            match op {
                WriteOp::Put(k, v) => change(k, Some(v)),
                WriteOp::Delete(k) => change(k, None),
                WriteOp::Refresh(k) => change(k, resolve(k)?.as_deref()),
                WriteOp::Txn(id) => {
                    let k = keys::txn_key(id);
                    change(&k, resolve(&k)?.as_deref())
                }
                WriteOp::Append {
                    topic,
                    queue,
                    first,
                    messages,
                } => change(
                    &keys::message_key(*topic, *queue, *first),
                    Some(&segment::encode(messages)),
                ),
                WriteOp::TrimBelow {
                    topic,
                    queue,
                    below,
                } => {
                    let from = keys::message_key(*topic, *queue, 0);
                    let to = keys::message_key(*topic, *queue, *below);
                    let rows = range(&from, &to)?;
                    let segments = rows.iter().filter_map(|(k, v)| {
                        keys::parse_message_key(k).map(|(_, _, first)| (first, v.as_slice()))
                    });
                    for first in segment::wholly_below(segments, *below)? {
                        change(&keys::message_key(*topic, *queue, first), None);
                    }
                }
            }
        }
        Ok(())
    }

    /// The row changes as owned pairs (see [`WriteBatch::for_each_change`]).
    pub fn row_changes(
        &self,
        range: &mut RangeReader<'_>,
        resolve: &Resolver<'_>,
    ) -> io::Result<Vec<RowChange>> {
        let mut out = Vec::with_capacity(self.ops.len());
        self.for_each_change(range, resolve, |k, v| {
            out.push((k.to_vec(), v.map(<[u8]>::to_vec)))
        })?;
        Ok(out)
    }
}
