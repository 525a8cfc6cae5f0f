//! openraft's transport under simulation: an RPC crosses [`SimNet`](crate::net::SimNet) to the
//! target's current incarnation and its answer crosses back. A lost message surfaces as a
//! timeout, a node that is down as unreachable, as over TCP.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::OptionalSend;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};

use crate::cluster::Cluster;
use crate::cluster::Raft;
use crate::net::Fate;
use crate::types::{NodeId, SimConfig, Vote};
use txmq_raft_store::snapshot::expand::expand_snapshot;

type RpcErr = RPCError<SimConfig>;

/// How long a snapshot transfer may take before it counts as lost.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// Makes connections from one node.
pub struct SimNetworkFactory {
    pub cluster: Arc<Cluster>,
    pub from: NodeId,
}

impl RaftNetworkFactory<SimConfig> for SimNetworkFactory {
    type Network = SimConnection;

    async fn new_client(
        &mut self,
        target: NodeId,
        _node: &crate::types::NodeInfo,
    ) -> SimConnection {
        SimConnection {
            cluster: self.cluster.clone(),
            from: self.from,
            target,
        }
    }
}

/// A connection from one node to another.
pub struct SimConnection {
    cluster: Arc<Cluster>,
    from: NodeId,
    target: NodeId,
}

fn lost() -> RpcErr {
    RPCError::Network(NetworkError::new(&io::Error::new(
        io::ErrorKind::TimedOut,
        "the message or its answer was lost",
    )))
}

fn down(target: NodeId) -> RpcErr {
    RPCError::Unreachable(Unreachable::new(&io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("node {target} is down"),
    )))
}

impl SimConnection {
    /// The full snapshot a manifest of the sending node stands for, its messages read from
    /// that node's queue files now.
    fn expand(&self, manifest: &[u8]) -> io::Result<Vec<u8>> {
        let running = self
            .cluster
            .running(self.from)
            .ok_or_else(|| io::Error::other("the sender is down"))?;
        let replica = running.replica();
        let queues = &replica.stores.queues;
        expand_snapshot(io::Cursor::new(manifest), queues, Vec::new(), false)
    }

    /// One request and its answer; `repeatable` requests may be delivered twice.
    async fn call<Resp, F, Fut, E>(
        &self,
        ttl: Duration,
        repeatable: bool,
        f: F,
    ) -> Result<Resp, RpcErr>
    where
        F: Fn(Raft) -> Fut,
        Fut: Future<Output = Result<Resp, E>>,
        E: std::error::Error + 'static,
    {
        let attempt = async {
            let fate = self.cluster.net.carry(self.from, self.target).await;
            if fate == Fate::Lost {
                return std::future::pending().await;
            }
            let raft = self
                .cluster
                .running(self.target)
                .ok_or_else(|| down(self.target))?
                .raft;
            if fate == Fate::Duplicated && repeatable {
                let _ = f(raft.clone()).await;
            }
            let resp = f(raft)
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            match self.cluster.net.carry(self.target, self.from).await {
                Fate::Lost => std::future::pending().await,
                _ => Ok(resp),
            }
        };
        tokio::time::timeout(ttl, attempt)
            .await
            .unwrap_or_else(|_| Err(lost()))
    }
}

impl RaftNetworkV2<SimConfig> for SimConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<SimConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<SimConfig>, RpcErr> {
        self.call(option.soft_ttl(), true, |raft| {
            let rpc = rpc.clone();
            async move { raft.append_entries(rpc).await }
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<SimConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<SimConfig>, RpcErr> {
        self.call(option.soft_ttl(), true, |raft| {
            let rpc = rpc.clone();
            async move { raft.vote(rpc).await }
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        mut snapshot: openraft::alias::SnapshotOf<SimConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<SimConfig>, StreamingError<SimConfig>> {
        let (from, to, upto) = (self.from, self.target, snapshot.meta.last_log_id);
        self.cluster
            .event(|| format!("node {from} sends node {to} a snapshot up to {upto:?}"));
        // As the node: the manifest is expanded with the messages it covers as it is sent.
        snapshot.snapshot = self.expand(&snapshot.snapshot).map_err(|e| {
            StreamingError::Network(NetworkError::new(&io::Error::other(format!(
                "node {from} could not expand its snapshot: {e}"
            ))))
        })?;
        let installed = self
            .call(SNAPSHOT_WAIT, false, |raft| {
                let snapshot = snapshot.clone();
                async move { raft.install_full_snapshot(vote, snapshot).await }
            })
            .await;
        if let Err(e) = &installed {
            self.cluster
                .event(|| format!("node {to} did not install node {from}'s snapshot: {e}"));
        }
        installed.map_err(|e| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::new(&other)),
        })
    }
}
