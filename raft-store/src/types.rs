//! The openraft type configuration of txmq.

use std::fmt;

use serde::{Deserialize, Serialize};

use txmq_state::{Command, CommandResult};

/// A node id. Never reuse one: a removed node's id stays retired.
pub type NodeId = u64;

/// What the cluster membership records about a node: where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The peer API address (Raft and forwarding).
    pub peer_addr: String,
    /// The client API address advertised to clients; may be empty for bootstrap members, whose
    /// client address is learned by asking them.
    pub client_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer_addr, self.client_addr)
    }
}

openraft::declare_raft_types!(
    /// The type configuration of txmq's Raft group.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeInfo,
);

/// Aliases used across crates.
pub mod alias {
    use super::TypeConfig;
    pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
    pub type CommittedLeaderId = openraft::alias::CommittedLeaderIdOf<TypeConfig>;
    pub type Vote = openraft::alias::VoteOf<TypeConfig>;
    pub type Entry = openraft::alias::EntryOf<TypeConfig>;
    pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
    pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
    pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, tokio::fs::File>;
}
