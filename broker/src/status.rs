//! Node and cluster status, as shown by `txmq cluster status`.

use openraft::async_runtime::WatchReceiver;
use std::time::Duration;

use openraft::ServerState;
use txmq_proto::client::{ClusterStatusResponse, NodeStatus};
use txmq_proto::peer::{NodeStatusRequest, NodeStatusResponse};
use txmq_raft_store::Raft;

use crate::disk::{DiskMonitor, DiskSpace};
use crate::network::PeerRoutes;

fn role_name(state: ServerState, is_voter: bool) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner if is_voter => "follower",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// This node's own view.
pub fn local_status(
    raft: &Raft,
    disk: &DiskMonitor,
    client_addr: &str,
    peer_addr: &str,
) -> NodeStatusResponse {
    let space = disk.latest();
    let m = raft.metrics().borrow_watched().clone();
    let is_voter = m.membership_config.voter_ids().any(|v| v == m.id);
    NodeStatusResponse {
        id: m.id,
        role: role_name(m.state, is_voter).to_string(),
        client_addr: client_addr.to_string(),
        peer_addr: peer_addr.to_string(),
        term: m.current_term,
        commit_index: m.local_committed.map(|c| c.index).unwrap_or(0),
        applied_index: m.last_applied.map(|c| c.index).unwrap_or(0),
        leader_id: m.current_leader.unwrap_or(0),
        initialized: m.membership_config.voter_ids().next().is_some(),
        last_log_index: m.last_log_index.unwrap_or(0),
        disk_total_bytes: space.map_or(0, |d| d.total_bytes),
        disk_free_bytes: space.map_or(0, |d| d.free_bytes),
        pid: std::process::id(),
        // The peer service fills these in (only it holds them).
        rocketmq_addr: String::new(),
        checker_groups: Vec::new(),
    }
}

/// Asks every member for its status (in parallel, with a short timeout each).
pub async fn cluster_status(
    raft: &Raft,
    routes: &PeerRoutes,
    disk: &DiskMonitor,
    client_addr: &str,
    peer_addr: &str,
) -> ClusterStatusResponse {
    let me = local_status(raft, disk, client_addr, peer_addr);
    let m = raft.metrics().borrow_watched().clone();
    let voters: Vec<u64> = m.membership_config.voter_ids().collect();
    let members: Vec<(u64, txmq_raft_store::NodeInfo)> = m
        .membership_config
        .nodes()
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    let asks = members.into_iter().map(|(id, info)| {
        let me = me.clone();
        let voter = voters.contains(&id);
        async move {
            let status = if id == me.id {
                Some(me)
            } else {
                ask_peer(routes, &routes.resolve(id, &info.peer_addr)).await
            };
            match status {
                Some(s) => NodeStatus {
                    id,
                    role: s.role,
                    client_addr: s.client_addr,
                    peer_addr: s.peer_addr,
                    term: s.term,
                    commit_index: s.commit_index,
                    applied_index: s.applied_index,
                    voter,
                    disk_total_bytes: s.disk_total_bytes,
                    disk_free_bytes: s.disk_free_bytes,
                    pid: s.pid,
                },
                None => NodeStatus {
                    id,
                    role: "unreachable".into(),
                    client_addr: info.client_addr,
                    peer_addr: info.peer_addr,
                    voter,
                    ..Default::default()
                },
            }
        }
    });
    let nodes = futures::future::join_all(asks).await;
    ClusterStatusResponse {
        leader_id: me.leader_id,
        term: me.term,
        nodes,
        answered_by: me.id,
    }
}

/// Every voter's data volume as it reports it (this node's from `disk`); a voter that does not
/// answer, or knows no figures, is left out.
pub async fn voter_disks(
    raft: &Raft,
    routes: &PeerRoutes,
    disk: &DiskMonitor,
) -> Vec<(u64, DiskSpace)> {
    let m = raft.metrics().borrow_watched().clone();
    let voters: Vec<(u64, String)> = m
        .membership_config
        .voter_ids()
        .filter_map(|id| {
            let node = m.membership_config.membership().get_node(&id)?;
            Some((id, routes.resolve(id, &node.peer_addr)))
        })
        .collect();
    let asks = voters.into_iter().map(|(id, addr)| async move {
        if id == m.id {
            return disk.latest().map(|d| (id, d));
        }
        let s = ask_peer(routes, &addr).await?;
        (s.disk_total_bytes > 0).then_some((
            id,
            DiskSpace {
                total_bytes: s.disk_total_bytes,
                free_bytes: s.disk_free_bytes,
            },
        ))
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub(crate) async fn ask_peer(routes: &PeerRoutes, addr: &str) -> Option<NodeStatusResponse> {
    let mut client = routes.client(addr).ok()?;
    let mut req = tonic::Request::new(NodeStatusRequest {});
    req.set_timeout(Duration::from_millis(1500));
    client.node_status(req).await.ok().map(|r| r.into_inner())
}

/// The leader's advertised client address, asking it over the peer API.
pub async fn leader_client_addr(raft: &Raft, routes: &PeerRoutes) -> Option<String> {
    let m = raft.metrics().borrow_watched().clone();
    let leader = m.current_leader?;
    let node = m.membership_config.membership().get_node(&leader)?.clone();
    if !node.client_addr.is_empty() {
        return Some(node.client_addr);
    }
    ask_peer(routes, &routes.resolve(leader, &node.peer_addr))
        .await
        .map(|s| s.client_addr)
}
