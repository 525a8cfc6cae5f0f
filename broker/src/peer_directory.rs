//! What this node knows of the other nodes beyond the Raft membership: the address RocketMQ
//! clients reach each at, and the producer groups with a check-back channel on each.
//!
//! Why: RocketMQ clients keep their Telemetry stream (their check-back channel) on whichever
//! node their connection picked, not on the leader, and routes must list every node's RocketMQ
//! address. Each node asks the others for their status every [`REFRESH`]; what it learns is
//! trusted for [`FRESH`] (a node that stops answering drops out of routes and check delivery).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use txmq_raft_store::Raft;

use crate::network::PeerRoutes;

/// How often the other nodes are asked.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long an answer counts.
const FRESH: Duration = Duration::from_secs(4);

/// One other node, as it last answered.
#[derive(Debug, Clone)]
struct PeerFacts {
    peer_addr: String,
    rocketmq_addr: String,
    checker_groups: Vec<String>,
    seen: Instant,
}

#[derive(Default)]
pub struct PeerDirectory {
    nodes: Mutex<BTreeMap<u64, PeerFacts>>,
}

impl PeerDirectory {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, PeerFacts>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks every other member for its status (in parallel, each bounded by the status
    /// request's timeout) and keeps the answers.
    pub async fn refresh(&self, raft: &Raft, routes: &PeerRoutes) {
        let m = raft.metrics().borrow_watched().clone();
        let others: Vec<(u64, String)> = m
            .membership_config
            .nodes()
            .filter(|(id, _)| **id != m.id)
            .map(|(id, n)| (*id, routes.resolve(*id, &n.peer_addr)))
            .collect();
        let asks = others.into_iter().map(|(id, addr)| async move {
            let status = crate::status::ask_peer(routes, &addr).await?;
            Some((id, addr, status))
        });
        let answers = futures::future::join_all(asks).await;
        let mut nodes = self.lock();
        for (id, peer_addr, status) in answers.into_iter().flatten() {
            nodes.insert(
                id,
                PeerFacts {
                    peer_addr,
                    rocketmq_addr: status.rocketmq_addr,
                    checker_groups: status.checker_groups,
                    seen: Instant::now(),
                },
            );
        }
        nodes.retain(|_, facts| facts.seen.elapsed() < FRESH * 4);
    }

    /// The RocketMQ addresses of the other nodes that answered lately.
    pub fn rocketmq_addrs(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter(|f| f.seen.elapsed() < FRESH && !f.rocketmq_addr.is_empty())
            .map(|f| f.rocketmq_addr.clone())
            .collect()
    }

    /// The peer addresses of the other nodes holding a check-back channel of `group`,
    /// starting at a different node each call so checks spread over them.
    pub fn nodes_with_group(&self, group: &str, turn: usize) -> Vec<String> {
        let mut found: Vec<String> = self
            .lock()
            .values()
            .filter(|f| f.seen.elapsed() < FRESH && f.checker_groups.iter().any(|g| g == group))
            .map(|f| f.peer_addr.clone())
            .collect();
        if !found.is_empty() {
            let n = found.len();
            found.rotate_left(turn % n);
        }
        found
    }

    /// Keeps the directory fresh until the task is aborted.
    pub async fn run(self: std::sync::Arc<Self>, raft: Raft, routes: std::sync::Arc<PeerRoutes>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh(&raft, &routes).await;
        }
    }
}
