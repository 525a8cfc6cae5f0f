//! Formats pinned by saved bytes: every `Operation` as a Raft entry's command, and the state's
//! records as the store and the journal hold them.
//!
//! Each value below was encoded once and its bytes saved in `tests/saved/`. The test decodes
//! the saved bytes and compares them with the value, and encodes the value again and compares
//! with the saved bytes: a change that breaks old data directories or a cluster of mixed
//! versions fails here. Formats are append-only: when a type gains a variant or a field, add a
//! new saved file for the new form and keep every old one.
//!
//! A new file is written only on request: `TXMQ_SAVE_NEW_FORMATS=1 cargo test -p txmq-state
//! --test saved_formats` writes the files that do not exist yet (it never overwrites one).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use txmq_state::codec::{self, CodecError};
use txmq_state::{
    BrokerState, Command, CommandResult, DeadLetterItem, Decision, DecisionSource, NewMessage,
    Operation, PasswordHash, PutUserMode, QueueTrim, ResetTarget, Right, StoredMessage, TopicKind,
    TopicSpec, TxnTiming,
};

fn saved_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/saved")
        .join(format!("{name}.bin"))
}

/// Checks `value` against its saved bytes (see the module comment).
fn pinned<T, E>(name: &str, value: &T, encode: E)
where
    T: DeserializeOwned + PartialEq + Debug,
    E: Fn(&T) -> Result<Vec<u8>, CodecError>,
{
    let path = saved_path(name);
    let fresh = encode(value).expect("encode");
    let saved = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(_) if std::env::var_os("TXMQ_SAVE_NEW_FORMATS").is_some() => {
            std::fs::write(&path, &fresh).expect("write a new saved file");
            fresh.clone()
        }
        Err(e) => panic!(
            "{}: {e}; a new format is saved with TXMQ_SAVE_NEW_FORMATS=1",
            path.display()
        ),
    };
    let decoded: T = codec::decode(&saved)
        .unwrap_or_else(|e| panic!("{name}: saved bytes no longer decode: {e}"));
    assert_eq!(
        &decoded, value,
        "{name}: saved bytes decode to another value"
    );
    assert_eq!(fresh, saved, "{name}: the encoding changed");
}

fn named<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    codec::encode(v)
}

fn positional<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    codec::encode_compact(v)
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        key: "order-7".into(),
        tag: "paid".into(),
        body: body.as_bytes().to_vec(),
        properties: BTreeMap::from([("source".into(), "shop".into())]),
    }
}

const TIMING: TxnTiming = TxnTiming {
    first_check_delay_ms: 6_000,
    check_interval_ms: 30_000,
    max_checks: 15,
    max_lifetime_ms: 14_400_000,
};

fn stored(id: &str) -> StoredMessage {
    StoredMessage {
        message_id: id.into(),
        key: "order-7".into(),
        tag: "paid".into(),
        body: b"{\"total\":12}".to_vec(),
        properties: BTreeMap::from([("source".into(), "shop".into())]),
        born_at_ms: 1_700_000_000_000,
    }
}

/// One of each operation, named for its saved file.
fn every_operation() -> Vec<(&'static str, Operation)> {
    let (g, t) = (String::from("billing"), String::from("orders"));
    vec![
        (
            "create_topic",
            Operation::CreateTopic(TopicSpec {
                name: t.clone(),
                kind: TopicKind::Transaction,
                queues: 4,
                retention_ms: 86_400_000,
                retention_bytes: 1 << 30,
            }),
        ),
        (
            "publish",
            Operation::Publish {
                topic: t.clone(),
                messages: vec![message("a"), message("b")],
            },
        ),
        ("retire_node", Operation::RetireNode { id: 4 }),
        (
            "half_message",
            Operation::HalfMessage {
                topic: t.clone(),
                group: g.clone(),
                message: message("half"),
                timing: TIMING,
            },
        ),
        (
            "end_transaction",
            Operation::EndTransaction {
                txn_id: "T00000000000000000000002a00000001".into(),
                group: g.clone(),
                decision: Decision::Commit,
                source: DecisionSource::Check,
            },
        ),
        (
            "txn_timers",
            Operation::TxnTimers {
                checks: vec!["T1".into()],
                expirations: vec!["T2".into()],
            },
        ),
        (
            "receive",
            Operation::Receive {
                group: g.clone(),
                topic: t.clone(),
                max: 32,
                invisible_ms: 30_000,
            },
        ),
        (
            "ack",
            Operation::Ack {
                group: g.clone(),
                topic: t.clone(),
                receipts: vec!["1-2-3".into()],
            },
        ),
        (
            "change_invisible",
            Operation::ChangeInvisible {
                group: g.clone(),
                topic: t.clone(),
                receipt: "1-2-3".into(),
                invisible_ms: 5_000,
            },
        ),
        (
            "reset_group",
            Operation::ResetGroup {
                group: g.clone(),
                topic: t.clone(),
                to: ResetTarget::Offsets(vec![0, 7]),
            },
        ),
        (
            "configure_group",
            Operation::ConfigureGroup {
                group: g.clone(),
                topic: t.clone(),
                max_delivery_attempts: 5,
            },
        ),
        (
            "dead_letter",
            Operation::DeadLetter {
                group: g.clone(),
                topic: t.clone(),
                items: vec![DeadLetterItem {
                    queue: 1,
                    offset: 9,
                    lease_index: 77,
                    message: stored("0000000000000000004d00000000"),
                }],
                on_request: false,
            },
        ),
        (
            "dead_letter_on_request",
            Operation::DeadLetter {
                group: g.clone(),
                topic: t.clone(),
                items: vec![DeadLetterItem {
                    queue: 0,
                    offset: 3,
                    lease_index: 12,
                    message: stored("0000000000000000004d00000000"),
                }],
                on_request: true,
            },
        ),
        (
            "batch",
            Operation::Batch(vec![
                Operation::RetireNode { id: 5 },
                Operation::ResetGroup {
                    group: g.clone(),
                    topic: t.clone(),
                    to: ResetTarget::Latest,
                },
            ]),
        ),
        (
            "trim",
            Operation::Trim {
                topic: t.clone(),
                trims: vec![QueueTrim {
                    queue: 0,
                    new_low: 100,
                    bytes: 4096,
                }],
            },
        ),
        (
            "release",
            Operation::Release {
                group: g,
                topic: t,
                receipts: vec!["4-5-6".into()],
            },
        ),
        (
            "delete_topic",
            Operation::DeleteTopic {
                name: "orders".into(),
            },
        ),
        (
            "update_topic",
            Operation::UpdateTopic {
                name: "orders".into(),
                retention_ms: Some(60_000),
                retention_bytes: None,
            },
        ),
        (
            "delete_group",
            Operation::DeleteGroup {
                group: "billing".into(),
                topic: "orders".into(),
            },
        ),
        (
            "put_user",
            Operation::PutUser {
                name: "alice".into(),
                password_hash: PasswordHash(
                    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
                ),
                mode: PutUserMode::Create,
            },
        ),
        (
            "delete_user",
            Operation::DeleteUser {
                name: "alice".into(),
            },
        ),
        (
            "grant",
            Operation::Grant {
                user: "alice".into(),
                right: Right::Consume {
                    topics: "orders*".into(),
                    groups: "g*".into(),
                },
            },
        ),
        (
            "revoke",
            Operation::Revoke {
                user: "alice".into(),
                right: Right::Produce {
                    topics: "orders".into(),
                },
            },
        ),
        (
            "set_access_secret",
            Operation::SetAccessSecret {
                name: "alice".into(),
                secret: Some(txmq_state::access::AccessSecret("c2VjcmV0LWtleQ".into())),
            },
        ),
    ]
}

#[test]
fn every_operation_as_a_raft_entry_command() {
    for (name, op) in every_operation() {
        let command = Command::new(1_700_000_000_000, op);
        pinned(&format!("command_{name}"), &command, named);
    }
}

/// A state with a topic, messages, a consumer group holding a lease, and transactions both
/// pending and committed — made by applying commands, as every replica does.
fn sample_state() -> BrokerState {
    let mut state = BrokerState::default();
    let mut index = 0;
    let mut apply = |state: &mut BrokerState, op: Operation| -> CommandResult {
        index += 1;
        state
            .apply(index, &Command::new(1_000 * index, op))
            .expect("apply")
            .result
    };
    let spec = |name: &str, kind| TopicSpec {
        name: name.into(),
        kind,
        queues: 2,
        retention_ms: 60_000,
        retention_bytes: 0,
    };
    apply(
        &mut state,
        Operation::CreateTopic(spec("orders", TopicKind::Normal)),
    );
    apply(
        &mut state,
        Operation::CreateTopic(spec("pay", TopicKind::Transaction)),
    );
    apply(
        &mut state,
        Operation::Publish {
            topic: "orders".into(),
            messages: vec![message("a"), message("b")],
        },
    );
    apply(
        &mut state,
        Operation::Receive {
            group: "billing".into(),
            topic: "orders".into(),
            max: 1,
            invisible_ms: 30_000,
        },
    );
    for body in ["one", "two"] {
        apply(
            &mut state,
            Operation::HalfMessage {
                topic: "pay".into(),
                group: "shop".into(),
                message: message(body),
                timing: TIMING,
            },
        );
    }
    let first = state
        .transactions()
        .pending()
        .next()
        .expect("pending")
        .id
        .to_string();
    let decided = apply(
        &mut state,
        Operation::EndTransaction {
            txn_id: first,
            group: "shop".into(),
            decision: Decision::Commit,
            source: DecisionSource::Producer,
        },
    );
    assert!(
        matches!(decided, CommandResult::TxnDecided(_)),
        "{decided:?}"
    );
    state
}

#[test]
fn the_states_records_as_stored() {
    let state = sample_state();
    pinned("topic_meta", state.topic("orders").expect("topic"), named);
    let group = state.groups().values().next().expect("a group");
    assert!(group.in_flight() > 0, "the sample group holds a lease");
    pinned("group_state", group, positional);
    let pending = state.transactions().pending().next().expect("pending");
    pinned("txn_record_pending", pending, positional);
    let committed = state.transactions().decided().next().expect("decided");
    pinned("txn_record_committed", committed, positional);
    pinned(
        "stored_message",
        &stored("0000000000000000000300000000"),
        positional,
    );
}
