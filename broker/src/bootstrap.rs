//! How a node with an empty data dir becomes part of a cluster.
//!
//! `--initial-cluster` lists the voters a brand-new cluster starts with. Before doing anything a
//! fresh node asks every other listed node what it is:
//!
//! * one of them belongs to a cluster already: this node **joins** it. It asks the leader to add
//!   it (a learner that catches up, then a voter). A StatefulSet scale-up, a node whose volume
//!   was lost and a bootstrap voter that started late all get in this way.
//! * every one of them answered and none belongs to a cluster: a brand-new cluster. The node
//!   **initializes** it with the listed voters; all of them do so with the same membership, so
//!   the first entry is identical everywhere.
//! * someone has not answered yet: ask again shortly. Initializing without hearing from everyone
//!   could found a second cluster beside a running one (split brain), so a node never guesses.
//!   Like `bootstrap-expect` elsewhere, a new cluster therefore forms once all its initial
//!   voters run.

use std::collections::BTreeMap;
use std::time::Duration;

use txmq_proto::peer::{ForwardRequest, NodeStatusRequest, NodeStatusResponse};
use txmq_raft_store::{NodeId, NodeInfo, Raft};

use crate::leader_op::{ForwardReply, LeaderOp};
use crate::network::PeerRoutes;
use crate::peer_dialer::PeerRpc;
use crate::peer_payload;

const PROBE_INTERVAL: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A join waits for the learner to catch up, which takes a while on a big state.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a node that keeps waiting says why (in probe rounds).
const REPORT_EVERY: u32 = 20;

/// What a fresh node should do, given what the other initial voters answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Initialize a brand-new cluster with the initial voters.
    Initialize,
    /// A cluster exists; ask the node at this address (its leader) to add us.
    Join { leader: NodeId, addr: String },
    /// Not enough is known yet; the reason says what is missing.
    Wait(String),
}

/// Decides from the answers of the other initial voters (`None`: did not answer). Pure, so the
/// safety rule above is tested directly.
pub fn plan(answers: &BTreeMap<NodeId, (String, Option<NodeStatusResponse>)>) -> Plan {
    let members: Vec<&NodeStatusResponse> = answers
        .values()
        .filter_map(|(_, status)| status.as_ref())
        .filter(|s| s.initialized)
        .collect();
    if !members.is_empty() {
        if let Some((id, (addr, _))) = answers
            .iter()
            .find(|(_, (_, s))| s.as_ref().is_some_and(|s| s.role == "leader"))
        {
            return Plan::Join {
                leader: *id,
                addr: addr.clone(),
            };
        }
        // The leader may be a node outside the initial list; the members know its id.
        let leader = members.iter().map(|s| s.leader_id).find(|l| *l != 0);
        if let Some((id, (addr, _))) = leader.and_then(|l| answers.get_key_value(&l)) {
            return Plan::Join {
                leader: *id,
                addr: addr.clone(),
            };
        }
        return Plan::Wait(
            "a cluster exists but no leader of it is reachable yet; will join once there is one"
                .into(),
        );
    }
    let silent: Vec<String> = answers
        .iter()
        .filter(|(_, (_, s))| s.is_none())
        .map(|(id, (addr, _))| format!("{id} ({addr})"))
        .collect();
    if silent.is_empty() {
        Plan::Initialize
    } else {
        Plan::Wait(format!(
            "waiting for initial voters {} to answer before bootstrapping a new cluster",
            silent.join(", ")
        ))
    }
}

/// Makes a fresh node a member: initializes a new cluster or joins the existing one.
pub struct Bootstrap {
    pub raft: Raft,
    pub node_id: NodeId,
    pub initial_cluster: BTreeMap<NodeId, String>,
    pub routes: std::sync::Arc<PeerRoutes>,
    /// This node's advertised addresses, as the membership should record them.
    pub me: NodeInfo,
    /// This node is rebuilding damaged storage: it rejoins its cluster and never founds a new
    /// one (a cluster whose every node is being repaired would otherwise start over empty).
    pub repairing: bool,
}

impl Bootstrap {
    /// Runs until this node belongs to a cluster (at once when its data dir holds one).
    pub async fn run(self) {
        if self.initial_cluster.is_empty() {
            return; // Joins only when an operator runs `txmq cluster add-node`.
        }
        let mut clients: BTreeMap<NodeId, PeerRpc> = BTreeMap::new();
        let mut round = 0u32;
        loop {
            if self.raft.is_initialized().await.unwrap_or(false) {
                return;
            }
            let answers = self.probe(&mut clients).await;
            let waiting = match plan(&answers) {
                Plan::Initialize if self.repairing => "this node is rebuilding damaged \
                    storage and never founds a new cluster; waiting for a member of its cluster \
                    to answer"
                    .to_string(),
                Plan::Initialize => match self.initialize().await {
                    Ok(()) => return,
                    Err(reason) => reason,
                },
                Plan::Join { leader, addr } => match self.join(leader, &addr).await {
                    Ok(()) => return,
                    Err(reason) => reason,
                },
                Plan::Wait(reason) => reason,
            };
            if round.is_multiple_of(REPORT_EVERY) {
                tracing::info!(node = self.node_id, "not a cluster member yet: {waiting}");
            }
            round += 1;
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Asks every other initial voter for its status, in parallel.
    async fn probe(
        &self,
        clients: &mut BTreeMap<NodeId, PeerRpc>,
    ) -> BTreeMap<NodeId, (String, Option<NodeStatusResponse>)> {
        let mut asks = Vec::new();
        for (id, addr) in self
            .initial_cluster
            .iter()
            .filter(|(id, _)| **id != self.node_id)
        {
            let addr = self.routes.resolve(*id, addr);
            let client = match clients.get(id) {
                Some(c) => Some(c.clone()),
                None => self.routes.client(&addr).ok(),
            };
            if let Some(c) = &client {
                clients.insert(*id, c.clone());
            }
            asks.push(async move {
                let status = match client {
                    Some(mut c) => {
                        let mut request = tonic::Request::new(NodeStatusRequest {});
                        request.set_timeout(PROBE_TIMEOUT);
                        c.node_status(request).await.ok().map(|r| r.into_inner())
                    }
                    None => None,
                };
                (*id, (addr, status))
            });
        }
        futures::future::join_all(asks).await.into_iter().collect()
    }

    async fn initialize(&self) -> Result<(), String> {
        let members: BTreeMap<NodeId, NodeInfo> = self
            .initial_cluster
            .iter()
            .map(|(id, addr)| {
                let info = if *id == self.node_id {
                    self.me.clone()
                } else {
                    NodeInfo {
                        peer_addr: addr.clone(),
                        client_addr: String::new(),
                    }
                };
                (*id, info)
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(voters = ?self.initial_cluster.keys().collect::<Vec<_>>(), "bootstrapped a new cluster");
                Ok(())
            }
            // Another initial voter's leader reached us first: the cluster exists already.
            Err(e) => {
                tracing::info!("not bootstrapping: {e}");
                Ok(())
            }
        }
    }

    /// Asks the leader to add this node (learner, catch up, voter); success once it did.
    async fn join(&self, leader: NodeId, addr: &str) -> Result<(), String> {
        let op = LeaderOp::AddNode {
            id: self.node_id,
            info: self.me.clone(),
            learner_only: false,
            fresh: true,
        };
        let bytes = peer_payload::encode(&op).map_err(|e| e.to_string())?;
        let mut client = self.routes.client(addr).map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(ForwardRequest { op: bytes.into() });
        request.set_timeout(JOIN_TIMEOUT);
        tracing::info!(node = self.node_id, leader, %addr, "joining the existing cluster");
        let response = client
            .forward(request)
            .await
            .map_err(|s| format!("asking leader {leader} at {addr} to add us: {s}"))?;
        let reply: ForwardReply =
            peer_payload::decode(&response.into_inner().result).map_err(|e| e.to_string())?;
        match reply {
            Ok(_) => {
                tracing::info!(node = self.node_id, "joined the cluster as a voter");
                Ok(())
            }
            Err(e) => Err(format!("leader {leader} did not add us: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(initialized: bool, role: &str, leader_id: u64) -> Option<NodeStatusResponse> {
        Some(NodeStatusResponse {
            initialized,
            role: role.into(),
            leader_id,
            ..Default::default()
        })
    }

    fn answers(
        list: Vec<(u64, Option<NodeStatusResponse>)>,
    ) -> BTreeMap<NodeId, (String, Option<NodeStatusResponse>)> {
        list.into_iter()
            .map(|(id, s)| (id, (format!("n{id}:7001"), s)))
            .collect()
    }

    #[test]
    fn initializes_only_when_every_other_voter_answered_fresh() {
        let all_fresh = answers(vec![
            (2, status(false, "learner", 0)),
            (3, status(false, "learner", 0)),
        ]);
        assert_eq!(plan(&all_fresh), Plan::Initialize);
        let one_silent = answers(vec![(2, status(false, "learner", 0)), (3, None)]);
        assert!(matches!(plan(&one_silent), Plan::Wait(r) if r.contains("3 (n3:7001)")));
        assert_eq!(plan(&answers(vec![])), Plan::Initialize);
    }

    #[test]
    fn joins_the_leader_when_any_voter_belongs_to_a_cluster() {
        let scale_up = answers(vec![
            (1, status(true, "follower", 2)),
            (2, status(true, "leader", 2)),
            (3, None),
            (5, status(false, "learner", 0)),
        ]);
        assert_eq!(
            plan(&scale_up),
            Plan::Join {
                leader: 2,
                addr: "n2:7001".into()
            }
        );
        // The leader did not answer, but a follower names it.
        let via_follower = answers(vec![(1, status(true, "follower", 3)), (3, None)]);
        assert_eq!(
            plan(&via_follower),
            Plan::Join {
                leader: 3,
                addr: "n3:7001".into()
            }
        );
        // A member exists but knows no leader: never initialize beside it.
        let leaderless = answers(vec![
            (1, status(true, "candidate", 0)),
            (2, status(false, "learner", 0)),
        ]);
        assert!(matches!(plan(&leaderless), Plan::Wait(_)));
    }
}
