//! Noticing that Raft stopped on its own.
//!
//! openraft's core task ends by itself on a storage error, or when one of its internal
//! assertions panics (one such race, a state-machine apply queued behind a snapshot install's
//! log purge, is openraft issue #2116, open for the version we pin). A node whose Raft stopped
//! can neither replicate nor serve, yet its process would stay up and look alive: it answers
//! every peer with "panicked" and the cluster waits on it forever. Crash-only instead: the node
//! logs why and exits non-zero, and its supervisor (Kubernetes, systemd, `txmq dev`) starts it
//! again from its durable state, which a panic in memory does not damage.

use openraft::async_runtime::WatchReceiver;
use txmq_raft_store::Raft;

/// Resolves when Raft's core task has ended, with the reason it gives. Never resolves while
/// Raft runs: the core owns the sender of its metrics channel, which closes when it ends.
pub(super) async fn core_stopped(raft: &Raft) -> String {
    let mut metrics = raft.metrics();
    while metrics.changed().await.is_ok() {}
    match raft.with_raft_state(|_| ()).await {
        Err(fatal) => fatal.to_string(),
        Ok(()) => "its metrics channel closed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::ServeArgs;
    use crate::node::{Listeners, Node, NodeError};

    #[tokio::test]
    async fn a_node_whose_raft_stops_by_itself_stops_with_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let any_port = || Some("127.0.0.1:0".to_string());
        let config = ServeArgs {
            node_id: Some(1),
            data_dir: Some(dir.path().to_path_buf()),
            client_addr: any_port(),
            peer_addr: any_port(),
            metrics_addr: any_port(),
            ..Default::default()
        }
        .resolve()
        .expect("config");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let node = Node::start(config, listeners).await.expect("start");
        let raft = node.raft.clone();
        let serving = tokio::spawn(node.serve_until(std::future::pending()));
        // Raft's core ends without the node asking, as it does after a panic in openraft or
        // a storage error; the node must not stay up as a process that serves nothing.
        raft.shutdown().await.expect("raft stops");
        let result = tokio::time::timeout(Duration::from_secs(30), serving)
            .await
            .expect("the node stops by itself")
            .expect("the node's task");
        assert!(
            matches!(result, Err(NodeError::RaftStopped(_))),
            "{result:?}"
        );
    }
}
