//! Changing and removing topics and consumer groups.

use crate::{BrokerState, Changes, CommandResult, Rejection};

impl BrokerState {
    /// Deletes a topic, its messages and its groups; refused while a transaction on it is
    /// pending (its commit would need the topic). Decided transactions keep their records.
    pub(crate) fn delete_topic(&mut self, name: &str, changes: &mut Changes) -> CommandResult {
        let Some(meta) = self.topics.get(name) else {
            return CommandResult::Rejected(Rejection::UnknownTopic(name.to_string()));
        };
        let pending = self
            .transactions
            .pending()
            .filter(|t| t.topic == name)
            .count();
        if pending > 0 {
            return CommandResult::Rejected(Rejection::PendingTransactions {
                topic: name.to_string(),
                count: pending,
            });
        }
        let messages = (0..meta.queues as usize)
            .map(|q| meta.next_offsets[q] - meta.low_offsets[q])
            .sum();
        changes.topic_deleted(meta.id, meta.queues);
        changes.topic(name);
        let groups: Vec<(String, String)> = self
            .groups
            .keys()
            .filter(|(_, topic)| topic == name)
            .cloned()
            .collect();
        for key in groups {
            self.groups.remove(&key);
            changes.group(&key.0, &key.1);
        }
        self.topics.remove(name);
        CommandResult::TopicDeleted { messages }
    }

    pub(crate) fn update_topic(
        &mut self,
        name: &str,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        changes: &mut Changes,
    ) -> CommandResult {
        let Some(meta) = self.topics.get_mut(name) else {
            return CommandResult::Rejected(Rejection::UnknownTopic(name.to_string()));
        };
        if let Some(ms) = retention_ms {
            meta.retention_ms = ms;
        }
        if let Some(bytes) = retention_bytes {
            meta.retention_bytes = bytes;
        }
        changes.topic(name);
        CommandResult::TopicUpdated(meta.clone())
    }

    pub(crate) fn delete_group(
        &mut self,
        group: &str,
        topic: &str,
        changes: &mut Changes,
    ) -> CommandResult {
        if self
            .groups
            .remove(&(group.to_string(), topic.to_string()))
            .is_none()
        {
            return CommandResult::Rejected(Rejection::UnknownGroup {
                group: group.to_string(),
                topic: topic.to_string(),
            });
        }
        changes.group(group, topic);
        CommandResult::GroupDeleted
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        BrokerState, Change, Command, CommandResult, NewMessage, Operation, Rejection, TopicKind,
        TopicSpec, TxnTiming,
    };

    fn apply(state: &mut BrokerState, index: u64, op: Operation) -> (CommandResult, Vec<Change>) {
        let applied = state.apply(index, &Command::new(index, op)).expect("apply");
        (applied.result, applied.changes.into_list())
    }

    fn topic(name: &str, kind: TopicKind) -> Operation {
        Operation::CreateTopic(TopicSpec {
            name: name.into(),
            kind,
            queues: 2,
            retention_ms: 1000,
            retention_bytes: 0,
        })
    }

    fn message() -> NewMessage {
        NewMessage {
            key: String::new(),
            tag: String::new(),
            body: b"m".to_vec(),
            properties: Default::default(),
        }
    }

    #[test]
    fn deleting_a_topic_drops_its_groups_and_reports_its_queues() {
        let mut state = BrokerState::default();
        apply(&mut state, 1, topic("t", TopicKind::Normal));
        apply(
            &mut state,
            2,
            Operation::Publish {
                topic: "t".into(),
                messages: vec![message(), message(), message()],
            },
        );
        apply(
            &mut state,
            3,
            Operation::Receive {
                group: "g".into(),
                topic: "t".into(),
                max: 1,
                invisible_ms: 10,
            },
        );
        let (result, changes) = apply(&mut state, 4, Operation::DeleteTopic { name: "t".into() });
        assert_eq!(result, CommandResult::TopicDeleted { messages: 3 });
        assert!(changes.contains(&Change::TopicDeleted {
            topic: 1,
            queues: 2
        }));
        assert!(changes.contains(&Change::Group {
            group: "g".into(),
            topic: "t".into()
        }));
        assert!(state.topic("t").is_none() && state.groups().is_empty());
        // The name is free again, under a new id.
        let (created, _) = apply(&mut state, 5, topic("t", TopicKind::Normal));
        assert!(matches!(created, CommandResult::TopicCreated(m) if m.id == 5));
        let (again, _) = apply(
            &mut state,
            6,
            Operation::DeleteTopic {
                name: "nope".into(),
            },
        );
        assert!(matches!(
            again,
            CommandResult::Rejected(Rejection::UnknownTopic(_))
        ));
    }

    #[test]
    fn a_topic_with_a_pending_transaction_is_not_deleted() {
        let mut state = BrokerState::default();
        apply(&mut state, 1, topic("pay", TopicKind::Transaction));
        let timing = TxnTiming {
            first_check_delay_ms: 10,
            check_interval_ms: 10,
            max_checks: 1,
            max_lifetime_ms: 100,
        };
        apply(
            &mut state,
            2,
            Operation::HalfMessage {
                topic: "pay".into(),
                group: "shop".into(),
                message: message(),
                timing,
            },
        );
        let (result, changes) = apply(&mut state, 3, Operation::DeleteTopic { name: "pay".into() });
        assert!(
            matches!(
                result,
                CommandResult::Rejected(Rejection::PendingTransactions { count: 1, .. })
            ),
            "{result:?}"
        );
        assert!(changes.is_empty() && state.topic("pay").is_some());
    }

    #[test]
    fn retention_is_updated_and_groups_deleted() {
        let mut state = BrokerState::default();
        apply(&mut state, 1, topic("t", TopicKind::Normal));
        let update = Operation::UpdateTopic {
            name: "t".into(),
            retention_ms: Some(5),
            retention_bytes: None,
        };
        let (result, _) = apply(&mut state, 2, update);
        assert!(
            matches!(result, CommandResult::TopicUpdated(m) if m.retention_ms == 5 && m.retention_bytes == 0)
        );
        apply(
            &mut state,
            3,
            Operation::Receive {
                group: "g".into(),
                topic: "t".into(),
                max: 1,
                invisible_ms: 10,
            },
        );
        let delete = || Operation::DeleteGroup {
            group: "g".into(),
            topic: "t".into(),
        };
        assert_eq!(
            apply(&mut state, 4, delete()).0,
            CommandResult::GroupDeleted
        );
        assert!(matches!(
            apply(&mut state, 5, delete()).0,
            CommandResult::Rejected(Rejection::UnknownGroup { .. })
        ));
    }
}
