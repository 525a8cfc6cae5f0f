//! Operations that must run on the leader, and how their outcome travels back when a follower
//! forwarded them over the peer API.

use serde::{Deserialize, Serialize};
use txmq_raft_store::{NodeId, NodeInfo};
use txmq_state::{Command, CommandResult};

use crate::op_error::OpError;

/// An operation that only the leader can carry out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOp {
    /// Propose a command through Raft.
    Write(Command),
    /// Propose several operations together (the items of one batched client request).
    WriteMany(Vec<txmq_state::Operation>),
    /// Add a node as a learner, wait until it caught up, then (unless `learner_only`) promote it.
    AddNode {
        id: NodeId,
        info: NodeInfo,
        learner_only: bool,
        /// Sent by a node joining on its own with an empty data dir (see `bootstrap.rs`): it
        /// may take a retired id (nothing stale can come back under it) and an id that is a
        /// voter already at the same address is success, so the join can be retried.
        #[serde(default)]
        fresh: bool,
    },
    /// Remove a node from the voters and from the membership; retire its id.
    RemoveNode { id: NodeId },
}

/// The outcome of a [`LeaderOp`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOutcome {
    /// The committed result and the log index of its entry (a follower waits until it has
    /// applied that index before reading what the entry made visible).
    Written {
        result: CommandResult,
        index: u64,
    },
    /// The results of a [`LeaderOp::WriteMany`], in order, and the index of the last entry.
    WrittenMany {
        results: Vec<CommandResult>,
        index: u64,
    },
    MembershipChanged,
}

/// The reply of a forwarded operation.
pub type ForwardReply = Result<LeaderOutcome, OpError>;
