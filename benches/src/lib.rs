//! Criterion micro-benchmarks of txmq's hot paths live in `benches/`. This library holds the
//! shared workload builders so that every benchmark measures the same shapes of data.

use std::collections::BTreeMap;

use txmq_state::{Command, NewMessage, Operation, TopicKind, TopicSpec};
use txmq_state::{Decision, DecisionSource, TxnTiming};

/// A `normal` topic creation command.
pub fn create_topic(name: &str, queues: u32) -> Command {
    Command::new(
        1,
        Operation::CreateTopic(TopicSpec {
            name: name.into(),
            kind: TopicKind::Normal,
            queues,
            retention_ms: 3_600_000,
            retention_bytes: 0,
        }),
    )
}

/// A publish of `count` messages of `size` bytes, half of them keyed.
pub fn publish(topic: &str, count: usize, size: usize) -> Command {
    let messages = (0..count)
        .map(|i| NewMessage {
            key: if i % 2 == 0 {
                format!("key-{i}")
            } else {
                String::new()
            },
            tag: "bench".into(),
            body: vec![b'x'; size],
            properties: BTreeMap::new(),
        })
        .collect();
    Command::new(
        2,
        Operation::Publish {
            topic: topic.into(),
            messages,
        },
    )
}

/// A `transaction` topic creation command.
pub fn create_txn_topic(name: &str, queues: u32) -> Command {
    let mut op = create_topic(name, queues).into_op();
    if let Operation::CreateTopic(spec) = &mut op {
        spec.kind = TopicKind::Transaction;
    }
    Command::new(0, op)
}

/// One entry of `count` half messages of `size` bytes (as the leader's batcher packs them).
pub fn half_batch(topic: &str, count: usize, size: usize) -> Command {
    let ops = (0..count)
        .map(|_| Operation::HalfMessage {
            topic: topic.into(),
            group: "bench".into(),
            message: NewMessage {
                key: String::new(),
                tag: "bench".into(),
                body: vec![b'x'; size],
                properties: BTreeMap::new(),
            },
            timing: TxnTiming {
                first_check_delay_ms: 6_000,
                check_interval_ms: 6_000,
                max_checks: 15,
                max_lifetime_ms: 3_600_000,
            },
        })
        .collect();
    Command::new(3, Operation::Batch(ops))
}

/// One entry committing the given transactions.
pub fn commit_batch(txn_ids: &[String]) -> Command {
    let ops = txn_ids
        .iter()
        .map(|id| Operation::EndTransaction {
            txn_id: id.clone(),
            group: "bench".into(),
            decision: Decision::Commit,
            source: DecisionSource::Producer,
        })
        .collect();
    Command::new(4, Operation::Batch(ops))
}
