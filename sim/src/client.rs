//! A simulated client: sends a request over the network to a node and waits for the answer
//! with a deadline, following "not the leader" hints like the real SDK.

use std::sync::Arc;
use std::time::Duration;

use txmq_state::Operation;

use crate::bugs::Bug;
use crate::cluster::Cluster;
use crate::gateway::{self, Reply};
use crate::net::{Endpoint, Fate};
use crate::rng::SimRng;
use crate::types::NodeId;

/// How long a client waits for an answer before it calls the outcome unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What a client learned of one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    Reply(Reply),
    /// No answer in time: the request may or may not have been applied.
    Lost,
}

/// One client endpoint.
pub struct Client {
    pub id: Endpoint,
    pub cluster: Arc<Cluster>,
    pub rng: SimRng,
    leader_hint: Option<NodeId>,
}

impl Client {
    pub fn new(id: Endpoint, cluster: Arc<Cluster>, rng: SimRng) -> Self {
        Client {
            id,
            cluster,
            rng,
            leader_hint: None,
        }
    }

    fn pick_node(&mut self) -> NodeId {
        if let Some(n) = self.leader_hint {
            return n;
        }
        let members = self.cluster.members();
        members[self.rng.below(members.len() as u64) as usize]
    }

    /// Sends `op`, following up to three leader hints. Only "not the leader" is retried: it
    /// means nothing was proposed, so a retry cannot duplicate.
    pub async fn call(&mut self, op: Operation) -> Outcome {
        for _ in 0..3 {
            let node = self.pick_node();
            match self.once(node, op.clone()).await {
                Outcome::Reply(Reply::NotLeader(hint)) => {
                    self.leader_hint = hint.filter(|h| *h != node);
                    if self.leader_hint.is_none() {
                        return Outcome::Reply(Reply::NotLeader(None));
                    }
                }
                Outcome::Reply(Reply::Done(r, m)) => return Outcome::Reply(Reply::Done(r, m)),
                Outcome::Lost if self.cluster.bug == Some(Bug::ResendAfterTimeout) => {
                    self.leader_hint = None;
                }
                other => {
                    self.leader_hint = None;
                    return other;
                }
            }
        }
        Outcome::Reply(Reply::NotLeader(None))
    }

    async fn once(&self, node: NodeId, op: Operation) -> Outcome {
        let cluster = &self.cluster;
        let exchange = async {
            if cluster.net.carry(self.id, node).await == Fate::Lost {
                return std::future::pending().await;
            }
            let reply = gateway::serve(cluster, node, op).await;
            if cluster.net.carry(node, self.id).await == Fate::Lost {
                return std::future::pending().await;
            }
            Outcome::Reply(reply)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or(Outcome::Lost)
    }
}
