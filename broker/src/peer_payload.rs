//! The peer API's payloads: MessagePack inside the `bytes` fields of its protobuf messages.
//!
//! The protobuf envelope (`proto/peer.proto`) is stable and small; what travels inside it is
//! openraft's own messages and txmq's forwarding messages, encoded with [`txmq_state::codec`].
//! Every type that may travel is listed here as a [`PeerPayload`], and the peer code encodes
//! and decodes only through [`encode`] and [`decode`]: the peer protocol's contents are this
//! list, and a change to any of these types is a change of the wire format between nodes of
//! different versions (tested by saved bytes below).

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use txmq_raft_store::TypeConfig;
use txmq_raft_store::types::alias::{SnapshotMeta, Vote};
use txmq_state::codec::{self, CodecError};

use crate::leader_op::{ForwardReply, LeaderOp};

/// A type that travels between peers as MessagePack.
pub trait PeerPayload: Serialize + DeserializeOwned {}

/// Raft replication (`AppendEntries`, and each item of `StreamAppend`).
impl PeerPayload for AppendEntriesRequest<TypeConfig> {}
impl PeerPayload for AppendEntriesResponse<TypeConfig> {}
impl PeerPayload for StreamAppendResult<TypeConfig> {}
/// Elections (`Vote`).
impl PeerPayload for VoteRequest<TypeConfig> {}
impl PeerPayload for VoteResponse<TypeConfig> {}
/// The first chunk of `InstallSnapshot`: the sender's vote and the snapshot's meta.
impl PeerPayload for (Vote, SnapshotMeta) {}
impl PeerPayload for SnapshotResponse<TypeConfig> {}
/// Forwarding (`Forward`): an operation only the leader can carry out, and its outcome.
impl PeerPayload for LeaderOp {}
impl PeerPayload for ForwardReply {}

pub fn encode<T: PeerPayload>(value: &T) -> Result<Vec<u8>, CodecError> {
    codec::encode(value)
}

pub fn decode<T: PeerPayload>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode(bytes)
}

#[cfg(test)]
mod saved_bytes {
    //! Each payload as a node of an earlier version sent it, saved in `broker/tests/saved/`:
    //! today's code must read it as the same value and write the same bytes, or nodes of two
    //! versions could not form one cluster during a rolling upgrade. Formats are append-only;
    //! a missing file is written only with `TXMQ_SAVE_NEW_FORMATS=1` (never overwritten).

    use std::collections::BTreeMap;
    use std::fmt::Debug;
    use std::path::PathBuf;

    use openraft::entry::RaftEntry;
    use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
    use openraft::{EntryPayload, Vote};
    use txmq_raft_store::types::alias::Entry;
    use txmq_raft_store::{NodeInfo, TypeConfig};
    use txmq_state::{Command, CommandResult, MessagePosition, NewMessage, Operation};

    use super::*;
    use crate::leader_op::LeaderOutcome;
    use crate::op_error::OpError;

    /// Checks `value` against its saved bytes. Compared through the debug form: openraft's
    /// and the forwarding types do not all implement `PartialEq`, and the form shows every field.
    fn pinned<T: PeerPayload + Debug>(name: &str, value: &T) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/saved")
            .join(format!("peer_{name}.bin"));
        let fresh = encode(value).expect("encode");
        if !path.exists() {
            assert!(
                std::env::var_os("TXMQ_SAVE_NEW_FORMATS").is_some(),
                "{} is missing; new formats are saved with TXMQ_SAVE_NEW_FORMATS=1",
                path.display()
            );
            std::fs::write(&path, &fresh).expect("save");
        }
        let saved = std::fs::read(&path).expect("read the saved payload");
        let decoded: T = decode(&saved).unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(
            format!("{decoded:?}"),
            format!("{value:?}"),
            "{name} decodes to another value"
        );
        assert_eq!(fresh, saved, "{name}: the encoding changed");
    }

    fn log_id(index: u64) -> txmq_raft_store::types::alias::LogId {
        openraft::testing::log_id::<TypeConfig>(2, 1, index)
    }

    fn publish() -> Operation {
        Operation::Publish {
            topic: "orders".into(),
            messages: vec![NewMessage {
                key: "k".into(),
                tag: String::new(),
                body: b"hello".to_vec(),
                properties: BTreeMap::new(),
            }],
        }
    }

    #[test]
    fn raft_payloads_as_saved() {
        let vote = Vote::new_committed(2, 1);
        pinned(
            "vote_request",
            &VoteRequest::<TypeConfig>::new(vote, Some(log_id(41))),
        );
        pinned(
            "vote_response",
            &VoteResponse::<TypeConfig>::new(vote, Some(log_id(41)), true),
        );
        let append = AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(log_id(41)),
            entries: vec![
                Entry::new(log_id(42), EntryPayload::Blank),
                Entry::new(
                    log_id(43),
                    EntryPayload::Normal(Command::new(1_700_000_000_000, publish())),
                ),
            ],
            leader_commit: Some(log_id(41)),
        };
        pinned("append_entries", &append);
    }

    #[test]
    fn forwarding_payloads_as_saved() {
        pinned(
            "forward_write",
            &LeaderOp::Write(Command::new(1_700_000_000_000, publish())),
        );
        pinned(
            "forward_write_many",
            &LeaderOp::WriteMany(vec![publish(), publish()]),
        );
        pinned(
            "forward_add_node",
            &LeaderOp::AddNode {
                id: 4,
                info: NodeInfo {
                    peer_addr: "10.0.0.4:9871".into(),
                    client_addr: "10.0.0.4:9870".into(),
                },
                learner_only: false,
                fresh: true,
            },
        );
        pinned("forward_remove_node", &LeaderOp::RemoveNode { id: 4 });
        let written: ForwardReply = Ok(LeaderOutcome::Written {
            result: CommandResult::Published(vec![MessagePosition {
                message_id: "0000000000000000002b00000000".into(),
                queue: 1,
                offset: 7,
            }]),
            index: 43,
        });
        pinned("forward_reply_written", &written);
        let refused: ForwardReply = Err(OpError::NotLeader { leader: Some(2) });
        pinned("forward_reply_not_leader", &refused);
    }
}
