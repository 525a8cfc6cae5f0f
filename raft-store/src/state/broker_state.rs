//! The in-memory replicated metadata and the deterministic apply.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::message::{StoredMessage, message_id};
use super::{TopicMeta, Transactions, TxnRecord, WriteBatch};
use crate::codec::{self, CodecError};
use crate::command::{
    Command, CommandResult, MessagePosition, NewMessage, Operation, Rejection, TopicKind, TopicSpec,
};
use crate::keys;
use crate::limits;

/// A stored (key, value) row.
pub type Row = (Vec<u8>, Vec<u8>);

/// The replicated metadata. Message rows are not held here; `apply` emits them as writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub topics: BTreeMap<String, TopicMeta>,
    /// Node ids that were removed from the cluster; never handed out again.
    pub retired_nodes: BTreeSet<u64>,
    /// Transactions; stored as rows, rebuilt from them on load (not part of serialization).
    #[serde(skip)]
    pub transactions: Transactions,
}

impl BrokerState {
    /// Applies one command committed at `log_index`. Pure: the outcome depends only on the
    /// state, the command (including the leader's `time_ms`) and the index.
    pub fn apply(
        &mut self,
        log_index: u64,
        command: &Command,
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        let at = super::txn_apply::At {
            index: log_index,
            now_ms: command.time_ms,
        };
        let result = match &command.op {
            Operation::CreateTopic(spec) => {
                self.create_topic(log_index, command.time_ms, spec, batch)?
            }
            Operation::Publish { topic, messages } => {
                self.publish(log_index, command.time_ms, topic, messages, batch)?
            }
            Operation::HalfMessage {
                topic,
                group,
                message,
                timing,
            } => self.half_message(at, topic, group, message, *timing, batch)?,
            Operation::EndTransaction {
                txn_id,
                group,
                decision,
                source,
            } => self.end_transaction(at, txn_id, group, *decision, *source, batch)?,
            Operation::TxnTimers {
                checks,
                expirations,
            } => self.txn_timers(at, checks, expirations, batch)?,
            Operation::RetireNode { id } => {
                self.retired_nodes.insert(*id);
                batch.put(keys::retired_key(*id), Vec::new());
                CommandResult::Nothing
            }
        };
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        Ok(result)
    }

    fn create_topic(
        &mut self,
        log_index: u64,
        now_ms: u64,
        spec: &TopicSpec,
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        if let Err(why) =
            limits::validate_name("topic", &spec.name).and(limits::validate_queues(spec.queues))
        {
            return Ok(CommandResult::Rejected(Rejection::Invalid(why)));
        }
        if self.topics.contains_key(&spec.name) {
            return Ok(CommandResult::Rejected(Rejection::TopicExists(
                spec.name.clone(),
            )));
        }
        let queues = spec.queues as usize;
        let meta = TopicMeta {
            name: spec.name.clone(),
            id: log_index,
            kind: spec.kind,
            queues: spec.queues,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            created_at_ms: now_ms,
            round_robin: 0,
            next_offsets: vec![0; queues],
            low_offsets: vec![0; queues],
        };
        batch.put(keys::topic_key(&meta.name), codec::encode(&meta)?);
        self.topics.insert(meta.name.clone(), meta.clone());
        Ok(CommandResult::TopicCreated(meta))
    }

    fn publish(
        &mut self,
        log_index: u64,
        now_ms: u64,
        topic: &str,
        messages: &[NewMessage],
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        let Some(meta) = self.topics.get_mut(topic) else {
            return Ok(CommandResult::Rejected(Rejection::UnknownTopic(
                topic.to_string(),
            )));
        };
        if meta.kind != TopicKind::Normal {
            return Ok(CommandResult::Rejected(Rejection::WrongTopicType {
                topic: topic.to_string(),
                expected: TopicKind::Normal,
                actual: meta.kind,
            }));
        }
        let mut positions = Vec::with_capacity(messages.len());
        for (i, msg) in messages.iter().enumerate() {
            let queue = meta.pick_queue(&msg.key);
            let offset = meta.take_offset(queue);
            let stored = StoredMessage {
                message_id: message_id(log_index, i),
                key: msg.key.clone(),
                tag: msg.tag.clone(),
                body: msg.body.clone(),
                properties: msg.properties.clone(),
                born_at_ms: now_ms,
            };
            batch.put(
                keys::message_key(meta.id, queue, offset),
                codec::encode(&stored)?,
            );
            positions.push(MessagePosition {
                message_id: stored.message_id,
                queue,
                offset,
            });
        }
        batch.put(keys::topic_key(topic), codec::encode(meta)?);
        Ok(CommandResult::Published(positions))
    }

    /// Looks a topic up by name.
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// Every metadata row of this state, as the store holds them (used to install a snapshot).
    pub fn metadata_rows(&self) -> Result<Vec<Row>, CodecError> {
        let mut rows = Vec::with_capacity(self.topics.len() + self.retired_nodes.len());
        for meta in self.topics.values() {
            rows.push((keys::topic_key(&meta.name), codec::encode(meta)?));
        }
        for id in &self.retired_nodes {
            rows.push((keys::retired_key(*id).to_vec(), Vec::new()));
        }
        for record in self
            .transactions
            .pending()
            .chain(self.transactions.decided())
        {
            rows.push((keys::txn_key(&record.id), codec::encode(record)?));
        }
        Ok(rows)
    }

    /// Restores transactions from their rows (any order): decided ones are re-ordered by the
    /// log index of their decision so the bounded window is the same as on every replica.
    pub fn restore_transactions(&mut self, records: Vec<TxnRecord>) {
        let (pending, mut decided): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| r.state == super::TxnState::Pending);
        decided.sort_by_key(|r| r.decided_index);
        for r in pending {
            self.transactions.insert_pending(r);
        }
        for r in decided {
            self.transactions.insert_decided(r);
        }
    }

    /// Invariants over all topics; checked after every apply in debug builds.
    pub fn check_invariants(&self) {
        let mut ids = BTreeSet::new();
        for (name, meta) in &self.topics {
            assert_eq!(name, &meta.name);
            assert!(ids.insert(meta.id), "duplicate topic id {}", meta.id);
            meta.check_invariants();
        }
        self.transactions.check_invariants();
    }
}
