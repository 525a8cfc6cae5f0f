//! Runs leader-only operations: locally when this node leads, otherwise forwarded to the leader
//! over the peer API. Waits through elections up to a deadline.

use openraft::async_runtime::WatchReceiver;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::errors::RaftError;
use openraft::impls::ProgressResponder;
use txmq_proto::peer::ForwardRequest;
use txmq_raft_store::types::alias::CommittedLeaderId;
use txmq_raft_store::{NodeId, Raft, StateReader};
use txmq_state::{Command, CommandResult, Operation};

use crate::clock::now_ms;
use crate::leader_op::{ForwardReply, LeaderOp, LeaderOutcome};
use crate::op_error::{OpError, write_error};
use crate::peer_dialer::PeerRpc;
use crate::peer_payload;

/// How long a request waits for a leader before it is answered `Unavailable`.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long one forwarded request may take (membership changes wait for catch-up).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Proposer {
    id: NodeId,
    raft: Raft,
    reader: StateReader,
    /// Clients of peers by address, with the TLS generation they were made with.
    peers: Arc<Mutex<HashMap<String, (u64, PeerRpc)>>>,
    routes: Arc<crate::network::PeerRoutes>,
    batcher: crate::batcher::WriteBatcher,
    /// Closed while this node's disk is nearly full: as leader it then takes no writes (its
    /// log could not hold them), so clients go elsewhere while leadership moves.
    space: Arc<txmq_raft_store::log::space_gate::SpaceGate>,
}

impl Proposer {
    pub fn new(
        id: NodeId,
        raft: Raft,
        reader: StateReader,
        routes: Arc<crate::network::PeerRoutes>,
        space: Arc<txmq_raft_store::log::space_gate::SpaceGate>,
    ) -> Self {
        Self {
            id,
            batcher: crate::batcher::WriteBatcher::start(raft.clone()),
            raft,
            reader,
            peers: Arc::default(),
            routes,
            space,
        }
    }

    /// Proposes a command and returns its committed result.
    pub async fn write(&self, op: Operation) -> Result<CommandResult, OpError> {
        Ok(self.write_indexed(op).await?.0)
    }

    /// Proposes a command; returns its committed result and its log index.
    pub async fn write_indexed(&self, op: Operation) -> Result<(CommandResult, u64), OpError> {
        let command = Command::new(0, op);
        match self.execute(LeaderOp::Write(command)).await? {
            LeaderOutcome::Written { result, index } => Ok((result, index)),
            _ => Err(OpError::Internal("unexpected outcome of a write".into())),
        }
    }

    /// Proposes several operations together (the items of a batched request) and returns
    /// their committed results in order. Batchable operations travel as one submission: one
    /// forward to the leader, one slot in its batcher, one entry.
    pub async fn write_many(&self, ops: Vec<Operation>) -> Result<Vec<CommandResult>, OpError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self.execute(LeaderOp::WriteMany(ops)).await? {
            LeaderOutcome::WrittenMany { results, .. } => Ok(results),
            _ => Err(OpError::Internal("unexpected outcome of a write".into())),
        }
    }

    /// Proposes `op` on this node only if it still leads under `leader` (the scheduler's
    /// fencing: a deposed leader's proposal is refused before it is appended).
    pub async fn write_fenced(
        &self,
        op: Operation,
        leader: CommittedLeaderId,
    ) -> Result<CommandResult, OpError> {
        let command = Command::new(now_ms(), op);
        let (responder, rx) = ProgressResponder::complete_only();
        self.raft
            .write(command)
            .with_leader(leader)
            .responder(responder)
            .await
            .map_err(|f| OpError::Unavailable(format!("this node's Raft stopped: {f}")))?;
        let result = rx
            .await
            .map_err(|_| OpError::Unavailable("the proposal was dropped".into()))?;
        result
            .map(|r| r.data)
            .map_err(|e| write_error(RaftError::APIError(e)))
    }

    /// Runs `op` on the leader, wherever it is.
    pub async fn execute(&self, op: LeaderOp) -> Result<LeaderOutcome, OpError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut metrics = self.raft.metrics();
        loop {
            let (leader, leader_addr) = {
                let m = metrics.borrow_and_update();
                let addr = m.current_leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| self.routes.resolve(l, &n.peer_addr))
                });
                (m.current_leader, addr)
            };
            let attempt = match (leader, leader_addr) {
                (Some(l), _) if l == self.id => self.execute_local(op.clone()).await,
                (Some(l), Some(addr)) => self.forward(l, addr.as_str(), &op).await,
                _ => Err(OpError::NotLeader { leader: None }),
            };
            match attempt {
                Err(OpError::NotLeader { .. }) => {}
                other => return other,
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(OpError::Unavailable(format!(
                    "no leader could take the request within {}s; is a majority of the nodes running and connected?",
                    LEADER_WAIT.as_secs()
                )));
            }
            // Wake on any Raft state change, or poll again shortly.
            let _ = tokio::time::timeout(
                Duration::from_millis(100).min(deadline - now),
                metrics.changed(),
            )
            .await;
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        op: &LeaderOp,
    ) -> Result<LeaderOutcome, OpError> {
        let mut client = self.peer(addr)?;
        let bytes = peer_payload::encode(op).map_err(|e| OpError::Internal(e.to_string()))?;
        let mut request = tonic::Request::new(ForwardRequest { op: bytes.into() });
        request.set_timeout(FORWARD_TIMEOUT);
        match client.forward(request).await {
            Ok(resp) => {
                let reply: ForwardReply = peer_payload::decode(&resp.into_inner().result)
                    .map_err(|e| OpError::Internal(e.to_string()))?;
                reply
            }
            Err(status) => {
                tracing::debug!(leader, %addr, "forward failed: {status}");
                self.peers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(addr);
                // Treated as "not reachable, try again": the election or reconnect resolves it.
                Err(OpError::NotLeader { leader: None })
            }
        }
    }

    fn peer(&self, addr: &str) -> Result<PeerRpc, OpError> {
        let generation = self.routes.generation();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made_with, c)) = peers.get(addr)
            && *made_with == generation
        {
            return Ok(c.clone());
        }
        let client = self
            .routes
            .client(addr)
            .map_err(|e| OpError::Internal(format!("bad peer address {addr}: {e}")))?;
        peers.insert(addr.to_string(), (generation, client.clone()));
        Ok(client)
    }

    /// Runs `op` on this node, which must be the leader.
    pub async fn execute_local(&self, op: LeaderOp) -> Result<LeaderOutcome, OpError> {
        if self.space.is_closed() {
            return Err(OpError::Unavailable(
                "the leader's disk is nearly full and it is handing leadership over; retry shortly"
                    .into(),
            ));
        }
        match op {
            LeaderOp::Write(command) => self.write_local(command.into_op()).await,
            LeaderOp::WriteMany(ops) => self.write_many_local(ops).await,
            LeaderOp::AddNode {
                id,
                info,
                learner_only,
                fresh,
            } => self.add_node(id, info, learner_only, fresh).await,
            LeaderOp::RemoveNode { id } => self.remove_node(id).await,
        }
    }

    /// Proposes `op` with this leader's clock (through the batcher if it can share an entry).
    async fn write_local(&self, op: Operation) -> Result<LeaderOutcome, OpError> {
        if crate::batcher::batchable(&op) {
            let (results, index) = self.batcher.submit(vec![op]).await?;
            let result = results.into_iter().next().ok_or_else(|| {
                OpError::Internal("the batcher returned no result for an operation".into())
            })?;
            return Ok(LeaderOutcome::Written { result, index });
        }
        let command = Command::new(now_ms(), op);
        let resp = self.raft.client_write(command).await.map_err(write_error);
        count_proposal(resp.is_ok());
        let resp = resp?;
        Ok(LeaderOutcome::Written {
            result: resp.data,
            index: resp.log_id.index,
        })
    }

    async fn write_many_local(&self, ops: Vec<Operation>) -> Result<LeaderOutcome, OpError> {
        if ops.iter().all(crate::batcher::batchable) {
            let (results, index) = self.batcher.submit(ops).await?;
            return Ok(LeaderOutcome::WrittenMany { results, index });
        }
        // Not expected from the services (they only send batchable items); kept correct anyway.
        let (mut results, mut index) = (Vec::with_capacity(ops.len()), 0);
        for op in ops {
            match self.write_local(op).await? {
                LeaderOutcome::Written { result, index: i } => {
                    results.push(result);
                    index = i;
                }
                _ => return Err(OpError::Internal("unexpected outcome of a write".into())),
            }
        }
        Ok(LeaderOutcome::WrittenMany { results, index })
    }

    async fn add_node(
        &self,
        id: NodeId,
        info: txmq_raft_store::NodeInfo,
        learner_only: bool,
        fresh: bool,
    ) -> Result<LeaderOutcome, OpError> {
        if id == 0 {
            return Err(OpError::InvalidArgument(
                "node id 0 is reserved; use 1 or more".into(),
            ));
        }
        if !fresh && self.reader.is_retired(id) {
            return Err(OpError::FailedPrecondition(format!(
                "node id {id} was removed from this cluster before and is retired; give the new node a new id"
            )));
        }
        let membership = self.membership();
        let same_address = membership
            .get_node(&id)
            .is_some_and(|n| n.peer_addr == info.peer_addr);
        if fresh && same_address && membership.voter_ids().any(|v| v == id) {
            return Ok(LeaderOutcome::MembershipChanged);
        }
        if membership.voter_ids().any(|v| v == id) {
            return Err(OpError::FailedPrecondition(format!(
                "node {id} is already a voter"
            )));
        }
        if let Some(existing) = membership.get_node(&id)
            && existing.peer_addr != info.peer_addr
        {
            return Err(OpError::FailedPrecondition(format!(
                "node {id} is already a member at {}; remove it first",
                existing.peer_addr
            )));
        }
        tracing::info!(node = id, peer = %info.peer_addr, "adding node as learner");
        // Blocking: returns once the learner has caught up with the log, so promotion is safe.
        self.raft
            .add_learner(id, info, true)
            .await
            .map_err(write_error)?;
        if !learner_only {
            tracing::info!(node = id, "promoting caught-up learner to voter");
            let add: BTreeSet<NodeId> = [id].into();
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(add), true)
                .await
                .map_err(write_error)?;
        }
        Ok(LeaderOutcome::MembershipChanged)
    }

    /// This node's view of the current membership.
    fn membership(&self) -> Arc<txmq_raft_store::types::alias::StoredMembership> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone()
    }

    async fn remove_node(&self, id: NodeId) -> Result<LeaderOutcome, OpError> {
        let membership = self.membership();
        if membership.get_node(&id).is_none() {
            return Err(OpError::FailedPrecondition(format!(
                "node {id} is not a member of this cluster"
            )));
        }
        let ids: BTreeSet<NodeId> = [id].into();
        if membership.voter_ids().any(|v| v == id) {
            if membership.voter_ids().count() <= 1 {
                return Err(OpError::FailedPrecondition(
                    "cannot remove the last voter".into(),
                ));
            }
            tracing::info!(node = id, "removing voter");
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(ids.clone()), true)
                .await
                .map_err(write_error)?;
        }
        tracing::info!(node = id, "removing node from membership");
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(write_error)?;
        self.write_local(Operation::RetireNode { id }).await?;
        Ok(LeaderOutcome::MembershipChanged)
    }
}

fn count_proposal(committed: bool) {
    let outcome = if committed { "committed" } else { "failed" };
    metrics::counter!("txmq_raft_proposals_total", "outcome" => outcome).increment(1);
}
