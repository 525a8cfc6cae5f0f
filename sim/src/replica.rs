//! What a simulated node has applied: the real `BrokerState`, with the messages it appended
//! kept in memory per queue (what the real store writes to queue files). A snapshot is a copy
//! of it.

use std::collections::BTreeMap;

use txmq_state::{BrokerState, Change, Changes, StoredMessage, codec};

use crate::types::{LogId, StoredMembership};

/// Queue → offset → encoded message.
pub type Queues = BTreeMap<(u64, u32), BTreeMap<u64, Vec<u8>>>;

/// The applied state of one incarnation, shared by the apply task and the request handlers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replica {
    pub state: BrokerState,
    pub queues: Queues,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

impl Replica {
    /// The message at a queue position, decoded.
    pub fn message(&self, topic_id: u64, queue: u32, offset: u64) -> Option<StoredMessage> {
        let bytes = self.queues.get(&(topic_id, queue))?.get(&offset)?;
        codec::decode(bytes).ok()
    }

    pub fn record(&mut self, changes: Changes) {
        for change in changes.into_list() {
            match change {
                Change::Appended {
                    topic,
                    queue,
                    first,
                    messages,
                } => {
                    let q = self.queues.entry((topic, queue)).or_default();
                    for (i, m) in messages.into_iter().enumerate() {
                        q.insert(first + i as u64, m);
                    }
                }
                Change::TrimmedBelow {
                    topic,
                    queue,
                    below,
                } => {
                    if let Some(q) = self.queues.get_mut(&(topic, queue)) {
                        *q = q.split_off(&below);
                    }
                }
                Change::TopicDeleted { topic, .. } => {
                    self.queues.retain(|(t, _), _| *t != topic);
                }
                _ => {}
            }
        }
    }
}
