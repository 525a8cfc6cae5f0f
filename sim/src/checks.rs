//! Check-backs under simulation: which client endpoints answer checks for a producer group,
//! and carrying one check from the leader to one of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::cluster::{Cluster, Running};
use crate::net::{Endpoint, Fate};
use crate::types::{NodeId, spawn};

/// One check-back: the transaction and its business key (what a checker looks up).
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub txn_id: String,
    pub key: String,
    pub attempt: u32,
}

/// Checks a checker may have queued (as the real broker's 256 per instance).
pub const CHECK_QUEUE: usize = 256;

/// The checkers connected for each producer group.
#[derive(Default)]
pub struct CheckRouter {
    groups: Mutex<BTreeMap<String, Vec<(Endpoint, mpsc::Sender<CheckRequest>)>>>,
}

impl CheckRouter {
    pub fn register(&self, group: &str, endpoint: Endpoint) -> mpsc::Receiver<CheckRequest> {
        let (tx, rx) = mpsc::channel(CHECK_QUEUE);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .entry(group.to_string())
            .or_default()
            .push((endpoint, tx));
        rx
    }

    fn checkers_of(&self, group: &str) -> Vec<(Endpoint, mpsc::Sender<CheckRequest>)> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.get(group).cloned().unwrap_or_default()
    }
}

/// Sends the check the state machine recorded for `txn` to one checker of its group, across
/// the network from node `from`. A lost check is what the next attempt is for.
pub fn send(cluster: &Arc<Cluster>, from: NodeId, running: &Running, txn: &str, attempt: u32) {
    let Some((group, key)) = ({
        let replica = running.replica();
        replica
            .state
            .transactions()
            .get_by_name(txn)
            .and_then(|r| r.message.as_ref().map(|m| (r.group.clone(), m.key.clone())))
    }) else {
        return;
    };
    let checkers = cluster.checkers.checkers_of(&group);
    if checkers.is_empty() {
        return;
    }
    let pick = cluster.rng().below(checkers.len() as u64) as usize;
    let (endpoint, tx) = checkers[pick].clone();
    let request = CheckRequest {
        txn_id: txn.to_string(),
        key,
        attempt,
    };
    let cluster = cluster.clone();
    spawn(async move {
        if cluster.net.carry(from, endpoint).await != Fate::Lost {
            let _ = tx.try_send(request);
        }
    });
}
