//! The simulated cluster's openraft configuration: txmq's commands and results, with a
//! runtime whose random numbers come from the seed.
//!
//! The runtime is openraft's Tokio runtime wrapped in `DeterministicRng` (election timeouts are
//! drawn from the seed), run on a single-threaded Tokio runtime whose clock is paused: time
//! moves only when every task waits, straight to the next timer. Nothing in a run reads the
//! wall clock.

pub use crate::runtime::SimRuntime;
use txmq_state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// txmq's Raft types under simulation.
    pub SimConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = txmq_raft_store::NodeInfo,
        AsyncRuntime = SimRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::alias::LogIdOf<SimConfig>;
pub type Vote = openraft::alias::VoteOf<SimConfig>;
pub type Entry = openraft::alias::EntryOf<SimConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<SimConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<SimConfig>;
pub type CommittedLeaderId = openraft::alias::CommittedLeaderIdOf<SimConfig>;
pub use txmq_raft_store::NodeInfo;

/// A simulated node's membership record (addresses name the node; the network is simulated).
pub fn node_info(id: NodeId) -> NodeInfo {
    NodeInfo {
        peer_addr: format!("node-{id}"),
        client_addr: format!("node-{id}"),
    }
}

/// Spawns a task of the run (through the runtime, so its random numbers derive from the seed).
pub fn spawn<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use openraft::rt::AsyncRuntime;
    drop(SimRuntime::spawn(future));
}
