//! Criterion micro-benchmarks of txmq's hot paths live in `benches/`. This library holds the
//! shared workload builders so that every benchmark measures the same shapes of data.

use std::collections::BTreeMap;

use txmq_raft_store::{Command, NewMessage, Operation, TopicKind, TopicSpec};

/// A `normal` topic creation command.
pub fn create_topic(name: &str, queues: u32) -> Command {
    Command {
        time_ms: 1,
        op: Operation::CreateTopic(TopicSpec {
            name: name.into(),
            kind: TopicKind::Normal,
            queues,
            retention_ms: 3_600_000,
            retention_bytes: 0,
        }),
    }
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
    Command {
        time_ms: 2,
        op: Operation::Publish {
            topic: topic.into(),
            messages,
        },
    }
}
