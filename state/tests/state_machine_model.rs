//! Property test: random command sequences applied to the pure state machine agree with a
//! deliberately simple model (topics as vectors of queues of messages).

use std::collections::BTreeMap;

use proptest::prelude::*;
use txmq_state::{
    BrokerState, Change, Command, CommandResult, NewMessage, Operation, Rejection, StoredMessage,
    TopicKind, TopicSpec, codec,
};

/// The model: per topic, its kind and the bodies in each queue, plus the round-robin cursor.
#[derive(Default)]
struct Model {
    topics: BTreeMap<String, ModelTopic>,
}

/// (kind, per-queue (key, body) lists, round-robin cursor)
type ModelTopic = (TopicKind, Vec<Vec<(String, Vec<u8>)>>, u32);

fn key_queue(key: &str, queues: u32) -> u32 {
    crc32fast::hash(key.as_bytes()) % queues
}

impl Model {
    fn apply(&mut self, op: &Operation) -> CommandResult {
        match op {
            Operation::CreateTopic(spec) => {
                if spec.queues == 0 || spec.queues > 256 || spec.name.is_empty() {
                    return CommandResult::Rejected(Rejection::Invalid(String::new()));
                }
                if self.topics.contains_key(&spec.name) {
                    return CommandResult::Rejected(Rejection::TopicExists(spec.name.clone()));
                }
                self.topics.insert(
                    spec.name.clone(),
                    (spec.kind, vec![Vec::new(); spec.queues as usize], 0),
                );
                CommandResult::Nothing // compared by variant only
            }
            Operation::Publish { topic, messages } => {
                let Some((kind, queues, rr)) = self.topics.get_mut(topic) else {
                    return CommandResult::Rejected(Rejection::UnknownTopic(topic.clone()));
                };
                if *kind != TopicKind::Normal {
                    return CommandResult::Rejected(Rejection::WrongTopicType {
                        topic: topic.clone(),
                        expected: TopicKind::Normal,
                        actual: *kind,
                    });
                }
                let n = queues.len() as u32;
                for m in messages {
                    let q = if m.key.is_empty() {
                        let q = *rr;
                        *rr = (*rr + 1) % n;
                        q
                    } else {
                        key_queue(&m.key, n)
                    };
                    queues[q as usize].push((m.key.clone(), m.body.clone()));
                }
                CommandResult::Published(Vec::new())
            }
            // Transactions have their own model (transaction_model.rs); not generated here.
            _ => CommandResult::Nothing,
        }
    }
}

fn same_variant(a: &CommandResult, b: &CommandResult) -> bool {
    match (a, b) {
        (CommandResult::Rejected(x), CommandResult::Rejected(y)) => {
            std::mem::discriminant(x) == std::mem::discriminant(y)
        }
        (CommandResult::TopicCreated(_), CommandResult::Nothing) => true,
        (CommandResult::Published(_), CommandResult::Published(_)) => true,
        _ => false,
    }
}

fn op_strategy() -> impl Strategy<Value = Operation> {
    let name = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string()),
        Just(String::new())
    ];
    let create = (name.clone(), any::<bool>(), 0u32..5).prop_map(|(name, txn, queues)| {
        Operation::CreateTopic(TopicSpec {
            name,
            kind: if txn {
                TopicKind::Transaction
            } else {
                TopicKind::Normal
            },
            queues,
            retention_ms: 1,
            retention_bytes: 0,
        })
    });
    let message = (
        prop_oneof![Just(""), Just("k1"), Just("k2"), Just("k3")],
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(key, body)| NewMessage {
            key: key.into(),
            tag: String::new(),
            body,
            properties: BTreeMap::new(),
        });
    let publish = (name, prop::collection::vec(message, 0..4))
        .prop_map(|(topic, messages)| Operation::Publish { topic, messages });
    prop_oneof![1 => create, 4 => publish]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn state_machine_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let mut state = BrokerState::default();
        // What the changes appended, by (topic id, queue): the store writes exactly these.
        let mut appended: BTreeMap<(u64, u32), Vec<StoredMessage>> = BTreeMap::new();
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            let applied = state.apply(index, &Command::new(index * 10, op.clone())).unwrap();
            let got = applied.result;
            let want = model.apply(op);
            prop_assert!(same_variant(&got, &want), "op {op:?}: got {got:?}, model {want:?}");
            if let CommandResult::Published(positions) = &got {
                let Operation::Publish { messages, .. } = op else { unreachable!() };
                prop_assert_eq!(positions.len(), messages.len());
            }
            if matches!(got, CommandResult::Rejected(_)) {
                prop_assert!(applied.changes.is_empty(), "a rejection changed something");
            }
            for change in applied.changes.into_list() {
                if let Change::Appended { topic, queue, first, messages } = change {
                    let queue_messages = appended.entry((topic, queue)).or_default();
                    prop_assert_eq!(first, queue_messages.len() as u64, "appends not contiguous");
                    for bytes in messages {
                        queue_messages.push(codec::decode::<StoredMessage>(&bytes).unwrap());
                    }
                }
            }
        }
        // Every queue of every topic holds exactly the model's messages, at dense offsets.
        prop_assert_eq!(state.topics().len(), model.topics.len());
        for (name, (kind, queues, _)) in &model.topics {
            let meta = state.topic(name).unwrap();
            prop_assert_eq!(meta.kind, *kind);
            for (q, expected) in queues.iter().enumerate() {
                prop_assert_eq!(meta.next_offsets[q], expected.len() as u64);
                let empty = Vec::new();
                let stored = appended.get(&(meta.id, q as u32)).unwrap_or(&empty);
                prop_assert_eq!(stored.len(), expected.len());
                for (m, (key, body)) in stored.iter().zip(expected) {
                    prop_assert_eq!(&m.key, key);
                    prop_assert_eq!(&m.body, body);
                }
            }
        }
        let appended_count: usize = appended.values().map(Vec::len).sum();
        let model_messages: usize = model.topics.values().map(|(_, q, _)| q.iter().map(Vec::len).sum::<usize>()).sum();
        prop_assert_eq!(appended_count, model_messages);
    }
}
