//! Commands proposed through Raft, and the results every replica computes identically.
//!
//! A business rejection (unknown topic, duplicate topic, wrong topic type) is *data* in the
//! committed result, not an error: every replica applies the same entry and agrees on it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

pub use crate::state::{Decision, DecisionSource, TxnId, TxnState, TxnTiming};

/// One Raft entry's application payload. `time_ms` is stamped by the leader when it proposes;
/// the state machine uses it as "now" and never reads a clock.
///
/// Shared and encoded once: openraft hands every reader of an entry (the replication stream of
/// each follower, the state machine) its own copy, so a clone only counts a reference; and the
/// positional bytes made when the leader appends the entry (or received by a follower) are kept
/// and reused for every later encoding — the streams to the followers, a follower's own log.
///
/// Serialized as one MessagePack `bin` holding the command in positional form
/// ([`crate::codec::encode_compact`]) inside whatever encodes the entry: the entry and openraft's
/// own types stay named, but the payload — nearly all of an entry's bytes — carries no field
/// names. Entries written by earlier versions (the command as a named map) still decode.
#[derive(Clone)]
pub struct Command(Arc<CommandParts>);

struct CommandParts {
    time_ms: u64,
    op: Operation,
    /// The positional encoding of `(time_ms, op)`, once made or received.
    encoded: OnceLock<Box<[u8]>>,
}

impl Command {
    pub fn new(time_ms: u64, op: Operation) -> Self {
        Self(Arc::new(CommandParts {
            time_ms,
            op,
            encoded: OnceLock::new(),
        }))
    }

    pub fn time_ms(&self) -> u64 {
        self.0.time_ms
    }

    pub fn op(&self) -> &Operation {
        &self.0.op
    }

    /// The operation, copied only if another holder still shares it.
    pub fn into_op(self) -> Operation {
        match Arc::try_unwrap(self.0) {
            Ok(parts) => parts.op,
            Err(shared) => shared.op.clone(),
        }
    }

    /// The positional encoding (made on first use).
    fn encoded(&self) -> Result<&[u8], crate::codec::CodecError> {
        if let Some(bytes) = self.0.encoded.get() {
            return Ok(bytes);
        }
        let mut bytes = Vec::with_capacity(self.0.op.size_hint());
        rmp_serde::encode::write(
            &mut bytes,
            &CommandRef {
                time_ms: self.0.time_ms,
                op: &self.0.op,
            },
        )
        .map_err(crate::codec::CodecError::from)?;
        // Another thread may have set it meanwhile: the bytes are the same either way.
        Ok(self.0.encoded.get_or_init(|| bytes.into_boxed_slice()))
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("time_ms", &self.0.time_ms)
            .field("op", &self.0.op)
            .finish()
    }
}

impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        self.0.time_ms == other.0.time_ms && self.0.op == other.0.op
    }
}

impl Eq for Command {}

/// The stored form of a [`Command`] (fields in this order; append only, with defaults).
#[derive(Serialize)]
struct CommandRef<'a> {
    time_ms: u64,
    op: &'a Operation,
}

#[derive(Deserialize)]
struct CommandOwned {
    time_ms: u64,
    op: Operation,
}

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.encoded().map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CommandVisitor)
    }
}

struct CommandVisitor;

impl<'de> serde::de::Visitor<'de> for CommandVisitor {
    type Value = Command;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command (bytes, or a map from earlier versions)")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Command, E> {
        let c: CommandOwned = crate::codec::decode(bytes).map_err(E::custom)?;
        let command = Command::new(c.time_ms, c.op);
        // Keep what arrived: this node's log stores the same bytes without encoding again.
        let _ = command.0.encoded.set(bytes.into());
        Ok(command)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Command, A::Error> {
        let c = CommandOwned::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Command::new(c.time_ms, c.op))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op() {
            Operation::CreateTopic(spec) => write!(f, "create_topic({})", spec.name),
            Operation::Publish { topic, messages } => {
                write!(f, "publish({topic}, {} messages)", messages.len())
            }
            Operation::RetireNode { id } => write!(f, "retire_node({id})"),
            Operation::HalfMessage { topic, group, .. } => {
                write!(f, "half_message({topic}, {group})")
            }
            Operation::EndTransaction {
                txn_id,
                decision,
                source,
                ..
            } => {
                write!(
                    f,
                    "end_transaction({txn_id}, {}, {})",
                    decision.as_str(),
                    source.as_str()
                )
            }
            Operation::Receive {
                group, topic, max, ..
            } => write!(f, "receive({group}, {topic}, {max})"),
            Operation::Ack {
                group,
                topic,
                receipts,
            } => write!(f, "ack({group}, {topic}, {})", receipts.len()),
            Operation::ChangeInvisible { group, topic, .. } => {
                write!(f, "change_invisible({group}, {topic})")
            }
            Operation::ResetGroup { group, topic, .. } => {
                write!(f, "reset_group({group}, {topic})")
            }
            Operation::ConfigureGroup { group, topic, .. } => {
                write!(f, "configure_group({group}, {topic})")
            }
            Operation::DeadLetter {
                group,
                topic,
                items,
            } => {
                write!(f, "dead_letter({group}, {topic}, {})", items.len())
            }
            Operation::Batch(ops) => write!(f, "batch({} operations)", ops.len()),
            Operation::Trim { topic, trims } => write!(f, "trim({topic}, {} queues)", trims.len()),
            Operation::Release {
                group,
                topic,
                receipts,
            } => write!(f, "release({group}, {topic}, {})", receipts.len()),
            Operation::TxnTimers {
                checks,
                expirations,
            } => {
                write!(
                    f,
                    "txn_timers({} checks, {} expirations)",
                    checks.len(),
                    expirations.len()
                )
            }
        }
    }
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    CreateTopic(TopicSpec),
    /// Plain messages to a `normal` topic. Several client sends may be packed into one entry.
    Publish {
        topic: String,
        messages: Vec<NewMessage>,
    },
    /// Records that a node id left the cluster, so it is never given to another node.
    RetireNode {
        id: u64,
    },
    /// Stores a half message (invisible until committed) and opens its transaction.
    HalfMessage {
        topic: String,
        group: String,
        message: NewMessage,
        timing: TxnTiming,
    },
    /// A decision for one transaction, fenced to its id and producer group.
    EndTransaction {
        txn_id: String,
        group: String,
        decision: Decision,
        source: DecisionSource,
    },
    /// The leader's scheduler: record checks it is about to send, and roll back transactions
    /// past their check window or lifetime. Validated at apply time against the entry's time,
    /// so a stale or deposed leader's proposal can never act early.
    TxnTimers {
        checks: Vec<String>,
        expirations: Vec<String>,
    },
    /// A receive for a consumer group: lease up to `max` messages (redeliveries first) and
    /// make them invisible to the group for `invisible_ms`.
    Receive {
        group: String,
        topic: String,
        max: u32,
        invisible_ms: u64,
    },
    /// Acknowledge received messages by their receipt handles.
    Ack {
        group: String,
        topic: String,
        receipts: Vec<String>,
    },
    /// Extend (or shorten) the invisibility of a received message; returns a new receipt.
    ChangeInvisible {
        group: String,
        topic: String,
        receipt: String,
        invisible_ms: u64,
    },
    /// Move a group's position.
    ResetGroup {
        group: String,
        topic: String,
        to: ResetTarget,
    },
    /// Create a group or change its settings.
    ConfigureGroup {
        group: String,
        topic: String,
        max_delivery_attempts: u32,
    },
    /// The leader moves messages that used up their deliveries to the group's dead-letter
    /// topic. The bodies travel in the entry (read by the leader from immutable rows); each item
    /// is re-validated at apply time.
    DeadLetter {
        group: String,
        topic: String,
        items: Vec<DeadLetterItem>,
    },
    /// Retention: drop each listed queue's offsets below `new_low`.
    /// Several client operations packed into one entry (one append, one fsync, one apply) by
    /// the leader's write batcher. Results come back in the same order.
    Batch(Vec<Operation>),
    Trim {
        topic: String,
        trims: Vec<QueueTrim>,
    },
    /// Gives leases back unused: the node serving a receive did not return these messages
    /// (its response was full, or reading them failed). Each becomes visible again at once and
    /// its delivery attempt does not count. A receipt that no longer names the current lease
    /// is ignored.
    Release {
        group: String,
        topic: String,
        receipts: Vec<String>,
    },
}

impl Operation {
    /// About how many bytes the operation encodes to (a buffer of this size rarely grows).
    pub fn size_hint(&self) -> usize {
        let message = |m: &NewMessage| {
            m.body.len()
                + m.key.len()
                + m.tag.len()
                + m.properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>()
                + 16
        };
        match self {
            Operation::Publish { topic, messages } => {
                topic.len() + messages.iter().map(message).sum::<usize>() + 16
            }
            Operation::HalfMessage {
                topic,
                group,
                message: m,
                ..
            } => topic.len() + group.len() + message(m) + 64,
            Operation::Batch(ops) => ops.iter().map(Operation::size_hint).sum::<usize>() + 8,
            _ => 128,
        }
    }
}

/// Where a reset moves a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// One offset per queue (clamped to what is retained).
    Offsets(Vec<u64>),
}

/// One message to dead-letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterItem {
    pub queue: u32,
    pub offset: u64,
    pub lease_index: u64,
    pub message: crate::state::StoredMessage,
}

/// One queue's retention trim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTrim {
    pub queue: u32,
    pub new_low: u64,
    /// Body bytes of the trimmed messages (computed by the leader from the immutable rows).
    pub bytes: u64,
}

/// One leased message of a receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub queue: u32,
    pub offset: u64,
    pub attempt: u32,
    pub receipt: String,
}

/// The outcome of acknowledging one receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckOutcome {
    Acked,
    /// Already acknowledged (a repeat): nothing changes.
    AlreadyAcked,
    /// The message was delivered again since this receipt was issued; the newer delivery
    /// must be acknowledged with its own receipt.
    Stale,
    /// Not a receipt of this group and topic.
    Invalid,
}

/// The message type of a topic, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TopicKind {
    Normal,
    Transaction,
}

impl TopicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Normal => "normal",
            TopicKind::Transaction => "transaction",
        }
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic as requested by its creator (already defaulted and validated at the edge; the state
/// machine validates again because it must never store an invalid topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub kind: TopicKind,
    pub queues: u32,
    pub retention_ms: u64,
    pub retention_bytes: u64,
}

/// A message as sent by a producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub key: String,
    pub tag: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub properties: BTreeMap<String, String>,
}

/// Where a published message landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosition {
    pub message_id: String,
    pub queue: u32,
    pub offset: u64,
}

/// The committed outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Blank and membership entries.
    Nothing,
    TopicCreated(crate::state::TopicMeta),
    /// One position per message, in the order the messages were given.
    Published(Vec<MessagePosition>),
    Rejected(Rejection),
    /// A half message was stored; its message id is the transaction's (see [`TxnId`]).
    HalfAccepted {
        txn_id: TxnId,
    },
    TxnDecided(TxnOutcome),
    Batch(Vec<CommandResult>),
    Leased(Vec<Delivery>),
    Acked(Vec<AckOutcome>),
    InvisibilityChanged {
        receipt: String,
    },
    GroupChanged,
    DeadLettered(u64),
    Trimmed(u64),
    TimersApplied {
        /// (transaction id, attempt number) of each check recorded.
        checks: Vec<(String, u32)>,
        /// (transaction id, reason) of each rollback.
        rolled_back: Vec<(String, DecisionSource)>,
    },
    /// How many of a release's leases were given back.
    Released(u32),
}

/// The state of a transaction after a decision was applied. Ids stay integers here: every
/// replica computes the outcome, only the node answering the client turns it into text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    pub txn_id: TxnId,
    pub state: TxnState,
    /// Who decided (for a pending transaction: none yet).
    pub reason: Option<DecisionSource>,
    /// `(queue, offset)` of the committed message (its id is the transaction's message id).
    pub position: Option<(u32, u64)>,
    /// True when this decision repeated one already applied (idempotent success).
    pub repeated: bool,
    /// When the half message was stored (for the time-to-decision metric).
    #[serde(default)]
    pub created_ms: u64,
}

impl TxnOutcome {
    /// Where the committed message landed, with its id.
    pub fn message_position(&self) -> Option<MessagePosition> {
        self.position.map(|(queue, offset)| MessagePosition {
            message_id: self.txn_id.message_id(),
            queue,
            offset,
        })
    }
}

/// A business rejection every replica agrees on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("topic '{0}' already exists; choose another name or use the existing topic")]
    TopicExists(String),
    #[error(
        "topic '{0}' does not exist; create it first with `txmq topic create {0} --type normal` \
         (`--type transaction` for transactional messages)"
    )]
    UnknownTopic(String),
    #[error("{}", wrong_type_message(topic, *expected, *actual))]
    WrongTopicType {
        topic: String,
        expected: TopicKind,
        actual: TopicKind,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("receipt '{0}' is not a receipt handle of this group and topic")]
    InvalidReceipt(String),
    #[error(
        "receipt '{0}' is stale: the message was delivered again since; use the newest receipt"
    )]
    StaleReceipt(String),
    #[error(
        "transaction '{0}' is unknown: it never existed, or it was decided long ago and forgotten"
    )]
    UnknownTransaction(String),
    #[error(
        "transaction '{txn_id}' belongs to producer group '{owner}', not '{group}'; decide it from its own group"
    )]
    WrongGroup {
        txn_id: String,
        owner: String,
        group: String,
    },
    #[error(
        "transaction '{txn_id}' is already {existing} (by {reason}); a {requested} cannot change that"
    )]
    ConflictingDecision {
        txn_id: String,
        existing: TxnState,
        reason: String,
        requested: String,
    },
}

fn wrong_type_message(topic: &str, expected: TopicKind, actual: TopicKind) -> String {
    match (expected, actual) {
        (TopicKind::Normal, TopicKind::Transaction) => format!(
            "topic '{topic}' is a transaction topic, so plain sends are rejected; send a transactional message \
             (`txmq txn send {topic} --group G ...`) or use a normal topic"
        ),
        _ => format!(
            "topic '{topic}' is a {actual} topic, but transactional messages are accepted only on transaction \
             topics; create one with `txmq topic create NAME --type transaction`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half() -> Operation {
        Operation::HalfMessage {
            topic: "pay".into(),
            group: "shop".into(),
            message: NewMessage {
                key: "k".into(),
                tag: String::new(),
                body: vec![7; 256],
                properties: BTreeMap::from([("a".into(), "b".into())]),
            },
            timing: TxnTiming {
                first_check_delay_ms: 6_000,
                check_interval_ms: 30_000,
                max_checks: 15,
                max_lifetime_ms: 14_400_000,
            },
        }
    }

    #[test]
    fn commands_round_trip_without_field_names() {
        let command = Command::new(42, Operation::Batch(vec![half(), half()]));
        let bytes = crate::codec::encode(&command).expect("encode");
        assert_eq!(
            crate::codec::decode::<Command>(&bytes).expect("decode"),
            command
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("first_check_delay_ms") && !text.contains("properties"));
    }

    /// Entries written before the payload became positional: the command as a named map.
    #[test]
    fn commands_of_earlier_versions_still_decode() {
        #[derive(Serialize)]
        struct Earlier {
            time_ms: u64,
            op: Operation,
        }
        let bytes = crate::codec::encode(&Earlier {
            time_ms: 9,
            op: half(),
        })
        .expect("encode");
        let command: Command = crate::codec::decode(&bytes).expect("decode");
        assert_eq!(command, Command::new(9, half()));
    }

    /// A decoded command keeps the bytes it came in: encoding it again gives the same bytes as
    /// encoding a fresh copy.
    #[test]
    fn a_received_command_reencodes_to_the_same_bytes() {
        let fresh = crate::codec::encode(&Command::new(3, half())).expect("encode");
        let received: Command = crate::codec::decode(&fresh).expect("decode");
        assert!(received.0.encoded.get().is_some(), "the bytes are kept");
        assert_eq!(crate::codec::encode(&received).expect("encode"), fresh);
        assert_eq!(received.clone().into_op(), half());
    }
}

#[cfg(test)]
mod saved_bytes {
    //! Entries as bytes on disk and on the wire: an `Ack` as the code before `Release` existed
    //! wrote it, and a `Release`, so that a change breaking either fails here.
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn receipts_op(release: bool) -> Operation {
        let (group, topic, receipts) = ("g".into(), "t".into(), vec!["0-1-2".into()]);
        if release {
            Operation::Release {
                group,
                topic,
                receipts,
            }
        } else {
            Operation::Ack {
                group,
                topic,
                receipts,
            }
        }
    }

    #[test]
    fn saved_entries_decode_to_the_same_commands() {
        let cases = [
            ("c413920781a341636b93a167a17491a5302d312d32", false),
            ("c417920781a752656c6561736593a167a17491a5302d312d32", true),
        ];
        for (saved, release) in cases {
            let bytes = unhex(saved);
            let command: Command = crate::codec::decode(&bytes).expect("saved bytes decode");
            assert_eq!(command.time_ms(), 7);
            assert_eq!(command.clone().into_op(), receipts_op(release));
            let fresh =
                crate::codec::encode(&Command::new(7, receipts_op(release))).expect("encode");
            assert_eq!(fresh, bytes, "the encoding changed");
        }
    }
}
