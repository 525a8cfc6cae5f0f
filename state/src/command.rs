//! Commands proposed through Raft, and the results every replica computes identically.
//!
//! A business rejection (unknown topic, duplicate topic, wrong topic type) is *data* in the
//! committed result, not an error: every replica applies the same entry and agrees on it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::operation::Operation;

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
    /// Long by design: one arm per `Operation` variant. Never prints a password hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op() {
            Operation::CreateTopic(spec) => write!(f, "create_topic({})", spec.name),
            Operation::Publish { topic, messages } => {
                write!(f, "publish({topic}, {} messages)", messages.len())
            }
            Operation::RetireNode { id } => write!(f, "retire_node({id})"),
            Operation::PutUser { name, mode, .. } => write!(f, "put_user({name}, {mode:?})"),
            Operation::DeleteUser { name } => write!(f, "delete_user({name})"),
            Operation::Grant { user, right } => write!(f, "grant({user}, {right})"),
            Operation::Revoke { user, right } => write!(f, "revoke({user}, {right})"),
            Operation::SetAccessSecret { name, secret } => {
                let what = if secret.is_some() { "set" } else { "removed" };
                write!(f, "access_secret({name}, {what})")
            }
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
                ..
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
            Operation::DeleteTopic { name } => write!(f, "delete_topic({name})"),
            Operation::UpdateTopic { name, .. } => write!(f, "update_topic({name})"),
            Operation::DeleteGroup { group, topic } => write!(f, "delete_group({group}, {topic})"),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{NewMessage, TxnTiming};

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
