//! What an apply changed, in the state's own terms.
//!
//! The state machine says *what* changed (a topic, a group, a transaction, messages appended to
//! a queue); the store decides how that becomes rows, files and journal records. Rows of
//! topics, groups and transactions are not encoded here: a group changed by every receive and
//! ack of a checkpoint interval is encoded once, by the store, from the state as of the
//! checkpoint.

use std::collections::HashMap;

use crate::txn_id::TxnId;

/// One change made by an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The topic's metadata (counters, retention) changed, or the topic was created.
    Topic(String),
    /// A consumer group's progress on a topic changed (or the group left it).
    Group { group: String, topic: String },
    /// A transaction's record changed, or it left the state (decided records fall out of the
    /// window).
    Txn(TxnId),
    /// A node id was retired: it is never handed out again.
    NodeRetired(u64),
    /// Encoded messages appended to one queue, `messages[i]` at offset `first + i`.
    Appended {
        topic: u64,
        queue: u32,
        first: u64,
        messages: Vec<Vec<u8>>,
    },
    /// Retention moved the queue's low offset to `below`: messages under it may be deleted.
    TrimmedBelow { topic: u64, queue: u32, below: u64 },
    /// The topic with this id was deleted: its `queues` queues' messages may be deleted.
    TopicDeleted { topic: u64, queues: u32 },
    /// A user was created, changed or deleted (its password hash or rights).
    User(String),
}

/// The changes of one applied entry, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    list: Vec<Change>,
    /// (topic, queue) → the index in `list` of its latest `Appended`, to extend it.
    open_appends: HashMap<(u64, u32), usize>,
    /// Topics this entry changed already (an entry of commits touches one topic hundreds of
    /// times; the store needs to hear it once).
    changed_topics: Vec<String>,
}

impl Changes {
    /// The topic's metadata changed (recorded once per entry).
    pub fn topic(&mut self, name: &str) {
        if self.changed_topics.iter().any(|t| t == name) {
            return;
        }
        self.changed_topics.push(name.to_string());
        self.list.push(Change::Topic(name.to_string()));
    }

    pub fn group(&mut self, group: &str, topic: &str) {
        self.list.push(Change::Group {
            group: group.to_string(),
            topic: topic.to_string(),
        });
    }

    pub fn txn(&mut self, id: TxnId) {
        self.list.push(Change::Txn(id));
    }

    pub fn user(&mut self, name: &str) {
        self.list.push(Change::User(name.to_string()));
    }

    pub fn node_retired(&mut self, id: u64) {
        self.list.push(Change::NodeRetired(id));
    }

    /// Appends one encoded message at `offset` of a queue; consecutive appends to the same
    /// queue become one change.
    pub fn append_message(&mut self, topic: u64, queue: u32, offset: u64, message: Vec<u8>) {
        if let Some(&i) = self.open_appends.get(&(topic, queue))
            && let Some(Change::Appended {
                first, messages, ..
            }) = self.list.get_mut(i)
            && *first + messages.len() as u64 == offset
        {
            messages.push(message);
            return;
        }
        self.open_appends.insert((topic, queue), self.list.len());
        self.list.push(Change::Appended {
            topic,
            queue,
            first: offset,
            messages: vec![message],
        });
    }

    /// Retention moved a queue's low offset to `below`.
    pub fn trim_below(&mut self, topic: u64, queue: u32, below: u64) {
        self.open_appends.remove(&(topic, queue));
        self.list.push(Change::TrimmedBelow {
            topic,
            queue,
            below,
        });
    }

    pub fn topic_deleted(&mut self, topic: u64, queues: u32) {
        self.list.push(Change::TopicDeleted { topic, queues });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Change> {
        self.list.iter()
    }

    pub fn into_list(self) -> Vec<Change> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_appends_to_one_queue_become_one_change_and_a_trim_ends_it() {
        let mut c = Changes::default();
        c.append_message(1, 0, 5, b"a".to_vec());
        c.append_message(1, 0, 6, b"b".to_vec());
        c.append_message(1, 1, 0, b"x".to_vec());
        c.trim_below(1, 0, 3);
        c.append_message(1, 0, 7, b"c".to_vec());
        let list = c.into_list();
        assert_eq!(list.len(), 4);
        assert!(
            matches!(&list[0], Change::Appended { first: 5, messages, .. } if messages.len() == 2)
        );
        assert!(matches!(&list[3], Change::Appended { first: 7, .. }));
    }

    #[test]
    fn a_topic_is_reported_once_per_entry() {
        let mut c = Changes::default();
        c.topic("t");
        c.topic("t");
        c.topic("u");
        assert_eq!(
            c.into_list(),
            vec![Change::Topic("t".into()), Change::Topic("u".into())]
        );
    }
}
