//! What a node does before it serves: binding its ports, opening (or setting aside and
//! rebuilding) its storage, and openraft's settings.

use std::sync::Arc;

use tokio::net::TcpListener;
use txmq_raft_store::{Storage, StorageConfig};

use crate::config::ServeConfig;

/// Starting or running a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] txmq_raft_store::StorageError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("invalid Raft settings: {0}")]
    RaftConfig(String),
    #[error("raft failed: {0}")]
    Raft(String),
    #[error("Raft stopped on its own ({0}); restart the node: it resumes from its data directory")]
    RaftStopped(String),
    #[error("cannot set the damaged storage in {path} aside: {source}")]
    Repair {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Security(String),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Listeners bound before the node starts, so callers (tests, `txmq dev`) can use port 0.
pub struct Listeners {
    pub client: TcpListener,
    pub peer: TcpListener,
    pub metrics: TcpListener,
    /// The RocketMQ-protocol port, when `--rocketmq-addr` is set.
    pub rocketmq: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &ServeConfig) -> Result<Listeners, NodeError> {
        let bind = |addr: String, what| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| NodeError::Bind { addr, what, source })
        };
        Ok(Listeners {
            client: bind(config.client_addr.clone(), "client API").await?,
            peer: bind(config.peer_addr.clone(), "peer API").await?,
            metrics: bind(config.metrics_addr.clone(), "metrics/health HTTP").await?,
            rocketmq: match &config.rocketmq_addr {
                Some(addr) => Some(bind(addr.clone(), "RocketMQ protocol").await?),
                None => None,
            },
        })
    }
}

/// Opens the node's storage; with `--repair-damaged-storage`, damaged storage is set aside and
/// the node starts empty to be rebuilt (`true`: a repair is under way, see [`crate::repair`]).
pub(super) fn open_storage(config: &ServeConfig) -> Result<(Storage, bool), NodeError> {
    let mut storage_config = StorageConfig::new(&config.data_dir);
    storage_config.cache_bytes = config.cache_bytes;
    match Storage::open(&storage_config) {
        Ok(storage) => Ok((storage, crate::repair::in_progress(&config.data_dir))),
        Err(e) if e.is_damage() && config.repair_damaged_storage => {
            let aside =
                crate::repair::set_aside(&config.data_dir).map_err(|source| NodeError::Repair {
                    path: config.data_dir.clone(),
                    source,
                })?;
            tracing::warn!(
                damage = %e,
                moved_to = %aside.display(),
                "storage is damaged: set aside; rebuilding this node from the cluster (it does \
                 not vote until it holds the leader's log)"
            );
            Ok((Storage::open(&storage_config)?, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// openraft's settings; `elect`: whether this node may stand for election (not while it is
/// rebuilding damaged storage).
pub(super) fn raft_config(
    config: &ServeConfig,
    elect: bool,
) -> Result<Arc<openraft::Config>, NodeError> {
    let election_ms = config.election_timeout.as_millis() as u64;
    let raft = txmq_raft_store::with_safety_settings(openraft::Config {
        cluster_name: "txmq".into(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: config.logs_to_keep,
        // Big snapshots stream for a while; give them time.
        install_snapshot_timeout: 600_000,
        max_payload_entries: 256,
        enable_elect: elect,
        ..Default::default()
    });
    raft.validate()
        .map(Arc::new)
        .map_err(|e| NodeError::RaftConfig(e.to_string()))
}
