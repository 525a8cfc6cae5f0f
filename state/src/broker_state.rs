//! The in-memory replicated metadata and the deterministic apply.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::CodecError;
use crate::entry_point::EntryPoint;
use crate::limits;
use crate::message::{StoredMessageRef, message_id};
use crate::{Changes, GroupState, TopicMeta, Transactions, User};
use crate::{
    Command, CommandResult, MessagePosition, NewMessage, Operation, Rejection, TopicKind, TopicSpec,
};

/// What applying one command yielded: the committed result (the same on every replica) and
/// what the store must write.
#[derive(Debug)]
pub struct Applied {
    pub result: CommandResult,
    pub changes: Changes,
}

/// The replicated metadata. Message rows are not held here; `apply` emits them as writes.
///
/// Fields are private: only `apply` changes a state (keeping the invariants of
/// [`BrokerState::check_invariants`]), and a store rebuilds one with [`BrokerState::restore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerState {
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    /// Node ids that were removed from the cluster; never handed out again.
    pub(crate) retired_nodes: BTreeSet<u64>,
    /// Consumer groups' progress by (group, topic).
    pub(crate) groups: BTreeMap<(String, String), GroupState>,
    pub(crate) transactions: Transactions,
    /// Users by name.
    pub(crate) users: BTreeMap<String, User>,
}

impl BrokerState {
    /// Applies one command committed at `log_index`. Pure: the outcome depends only on the
    /// state, the command (including the leader's `time_ms`) and the index.
    pub fn apply(&mut self, log_index: u64, command: &Command) -> Result<Applied, CodecError> {
        let mut changes = Changes::default();
        let at = EntryPoint {
            index: log_index,
            now_ms: command.time_ms(),
            sub: 0,
        };
        let result = match command.op() {
            Operation::Batch(ops) => self.apply_batch(at, ops, &mut changes)?,
            op => self.apply_op(at, op, &mut changes)?,
        };
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        Ok(Applied { result, changes })
    }

    /// Applies the operations of one entry in order. Ids derived from the log index stay unique:
    /// each operation gets `sub` = the number of message ids the earlier ones took.
    fn apply_batch(
        &mut self,
        at: EntryPoint,
        ops: &[Operation],
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let mut results = Vec::with_capacity(ops.len());
        let mut sub = 0u64;
        for op in ops {
            let ids_taken = match op {
                Operation::Publish { messages, .. } => messages.len() as u64,
                Operation::HalfMessage { .. } => 1,
                _ => 0,
            };
            let result = match op {
                Operation::Batch(_) | Operation::CreateTopic(_) | Operation::DeadLetter { .. } => {
                    CommandResult::Rejected(Rejection::Invalid(
                        "this operation cannot be batched".into(),
                    ))
                }
                op => self.apply_op(EntryPoint { sub, ..at }, op, changes)?,
            };
            sub += ids_taken;
            results.push(result);
        }
        Ok(CommandResult::Batch(results))
    }

    /// One operation, dispatched to its rule. Long by design: one arm per `Operation`
    /// variant reads better as one table than split across functions.
    fn apply_op(
        &mut self,
        at: EntryPoint,
        op: &Operation,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        Ok(match op {
            Operation::Batch(_) => {
                CommandResult::Rejected(Rejection::Invalid("batches do not nest".into()))
            }

            Operation::CreateTopic(spec) => {
                self.create_topic(at.index, at.now_ms, spec, changes)?
            }
            Operation::Publish { topic, messages } => self.publish(at, topic, messages, changes)?,
            Operation::HalfMessage {
                topic,
                group,
                message,
                timing,
            } => self.half_message(at, topic, group, message, *timing, changes)?,
            Operation::EndTransaction {
                txn_id,
                group,
                decision,
                source,
            } => self.end_transaction(at, txn_id, group, *decision, *source, changes)?,
            Operation::TxnTimers {
                checks,
                expirations,
            } => self.txn_timers(at, checks, expirations, changes)?,
            Operation::Receive {
                group,
                topic,
                max,
                invisible_ms,
            } => self.receive(at, group, topic, *max, *invisible_ms, changes)?,
            Operation::Ack {
                group,
                topic,
                receipts,
            } => self.ack(group, topic, receipts, changes)?,
            Operation::ChangeInvisible {
                group,
                topic,
                receipt,
                invisible_ms,
            } => self.change_invisible(at, group, topic, receipt, *invisible_ms, changes)?,
            Operation::ResetGroup { group, topic, to } => {
                self.reset_group(at, group, topic, to, changes)?
            }
            Operation::ConfigureGroup {
                group,
                topic,
                max_delivery_attempts,
            } => self.configure_group(at, group, topic, *max_delivery_attempts, changes)?,
            Operation::DeadLetter {
                group,
                topic,
                items,
                on_request,
            } => self.dead_letter(at, (group, topic), items, *on_request, changes)?,
            Operation::Trim { topic, trims } => self.trim(topic, trims, changes)?,
            Operation::Release {
                group,
                topic,
                receipts,
            } => self.release(at, group, topic, receipts, changes),
            Operation::DeleteTopic { name } => self.delete_topic(name, changes),
            Operation::UpdateTopic {
                name,
                retention_ms,
                retention_bytes,
            } => self.update_topic(name, *retention_ms, *retention_bytes, changes),
            Operation::DeleteGroup { group, topic } => self.delete_group(group, topic, changes),
            Operation::PutUser {
                name,
                password_hash,
                mode,
            } => self.put_user(at.now_ms, name, password_hash, *mode, changes),
            Operation::DeleteUser { name } => self.delete_user(name, changes),
            Operation::Grant { user, right } => self.grant(user, right, changes),
            Operation::Revoke { user, right } => self.revoke(user, right, changes),
            Operation::SetAccessSecret { name, secret } => {
                self.set_access_secret(name, secret.as_ref(), changes)
            }
            Operation::RetireNode { id } => {
                self.retired_nodes.insert(*id);
                changes.node_retired(*id);
                CommandResult::Nothing
            }
        })
    }

    fn create_topic(
        &mut self,
        log_index: u64,
        now_ms: u64,
        spec: &TopicSpec,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        if let Err(why) =
            limits::validate_new_topic_name(&spec.name).and(limits::validate_queues(spec.queues))
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
            retained_bytes: vec![0; queues],
        };
        changes.topic(&meta.name);
        self.topics.insert(meta.name.clone(), meta.clone());
        Ok(CommandResult::TopicCreated(meta))
    }

    fn publish(
        &mut self,
        at: EntryPoint,
        topic: &str,
        messages: &[NewMessage],
        changes: &mut Changes,
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
            let message_id = message_id(at.index, at.sub as usize + i);
            let stored = StoredMessageRef {
                message_id: &message_id,
                key: &msg.key,
                tag: &msg.tag,
                body: &msg.body,
                properties: &msg.properties,
                born_at_ms: at.now_ms,
            };
            let (queue, offset) = meta.append(&stored, changes)?;
            positions.push(MessagePosition {
                message_id,
                queue,
                offset,
            });
        }
        changes.topic(topic);
        Ok(CommandResult::Published(positions))
    }

    /// Looks a topic up by name.
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// A state rebuilt from what a store kept (topics, retired node ids, groups, the
    /// transactions' records and users, in any order). Refused when the parts do not fit together (a
    /// group of a topic that does not exist, a topic twice).
    pub fn restore(
        topics: impl IntoIterator<Item = TopicMeta>,
        retired_nodes: impl IntoIterator<Item = u64>,
        groups: impl IntoIterator<Item = GroupState>,
        transactions: Transactions,
        users: impl IntoIterator<Item = User>,
    ) -> Result<BrokerState, String> {
        let mut state = BrokerState {
            retired_nodes: retired_nodes.into_iter().collect(),
            transactions,
            users: users
                .into_iter()
                .map(|mut u| {
                    u.rights.sort();
                    u.rights.dedup();
                    (u.name.clone(), u)
                })
                .collect(),
            ..BrokerState::default()
        };
        for meta in topics {
            if let Some(twice) = state.topics.insert(meta.name.clone(), meta) {
                return Err(format!("topic '{}' is stored twice", twice.name));
            }
        }
        for g in groups {
            let Some(topic) = state.topics.get(&g.topic) else {
                return Err(format!(
                    "group '{}' reads topic '{}', which does not exist",
                    g.group, g.topic
                ));
            };
            if g.queues.len() != topic.queues as usize {
                return Err(format!(
                    "group '{}' has {} queues of topic '{}', which has {}",
                    g.group,
                    g.queues.len(),
                    g.topic,
                    topic.queues
                ));
            }
            state.groups.insert((g.group.clone(), g.topic.clone()), g);
        }
        Ok(state)
    }

    pub fn topics(&self) -> &BTreeMap<String, TopicMeta> {
        &self.topics
    }

    pub fn retired_nodes(&self) -> &BTreeSet<u64> {
        &self.retired_nodes
    }

    /// Consumer groups' progress by (group, topic).
    pub fn groups(&self) -> &BTreeMap<(String, String), GroupState> {
        &self.groups
    }

    pub fn group(&self, group: &str, topic: &str) -> Option<&GroupState> {
        self.groups.get(&(group.to_string(), topic.to_string()))
    }

    pub fn transactions(&self) -> &Transactions {
        &self.transactions
    }

    /// Users by name (with their password hashes: never serve these to a client).
    pub fn users(&self) -> &BTreeMap<String, User> {
        &self.users
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
        for (name, user) in &self.users {
            assert_eq!(name, &user.name);
            user.check_invariants();
        }
        for ((group, topic), g) in &self.groups {
            assert!(g.group == *group && g.topic == *topic);
            let meta = self.topics.get(topic).expect("a group's topic exists");
            assert_eq!(g.queues.len(), meta.queues as usize);
            for (q, p) in g.queues.iter().enumerate() {
                assert!(
                    p.next_offset <= meta.next_offsets[q],
                    "group {group} delivered past the end of {topic}"
                );
            }
            g.check_invariants();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopicKind;

    fn topic_state() -> BrokerState {
        let mut state = BrokerState::default();
        let spec = TopicSpec {
            name: "t".into(),
            kind: TopicKind::Normal,
            queues: 2,
            retention_ms: 1,
            retention_bytes: 0,
        };
        state
            .apply(1, &Command::new(1, Operation::CreateTopic(spec)))
            .expect("apply");
        let receive = Operation::Receive {
            group: "g".into(),
            topic: "t".into(),
            max: 1,
            invisible_ms: 10,
        };
        state.apply(2, &Command::new(2, receive)).expect("apply");
        state
    }

    #[test]
    fn a_restored_state_equals_the_one_it_was_stored_from() {
        let state = topic_state();
        let restored = BrokerState::restore(
            state.topics().values().cloned(),
            [4],
            state.groups().values().cloned(),
            state.transactions().clone(),
            [],
        )
        .expect("restore");
        assert_eq!(restored.topics(), state.topics());
        assert_eq!(restored.groups(), state.groups());
        assert!(restored.retired_nodes().contains(&4));
    }

    #[test]
    fn parts_that_do_not_fit_together_are_refused() {
        let state = topic_state();
        let orphan = BrokerState::restore(
            [],
            [],
            state.groups().values().cloned(),
            Transactions::default(),
            [],
        );
        assert!(orphan.is_err_and(|e| e.contains("does not exist")));
        let twice = state
            .topics()
            .values()
            .cloned()
            .chain(state.topics().values().cloned());
        let doubled = BrokerState::restore(twice, [], [], Transactions::default(), []);
        assert!(doubled.is_err_and(|e| e.contains("twice")));
    }
}
