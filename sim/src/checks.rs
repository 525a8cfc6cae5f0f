//! Check-backs under simulation: which client endpoints answer checks for each producer group.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::net::Endpoint;

/// One check-back: the transaction and its business key (what a checker looks up).
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub txn_id: String,
    pub key: String,
    pub attempt: u32,
}

/// Checks a checker may have queued (as the real broker's 256 per instance).
pub const CHECK_QUEUE: usize = 256;

/// A connected checker: its endpoint and its queue of checks.
pub type Checker = (Endpoint, mpsc::Sender<CheckRequest>);

/// The checkers connected for each producer group.
#[derive(Default)]
pub struct CheckRouter {
    groups: Mutex<BTreeMap<String, Vec<Checker>>>,
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

    pub fn checkers_of(&self, group: &str) -> Vec<Checker> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.get(group).cloned().unwrap_or_default()
    }
}
