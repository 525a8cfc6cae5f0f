//! One txmq node: storage, Raft, the client and peer gRPC servers, until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use txmq_proto::client::txmq_server::TxmqServer;
use txmq_proto::peer::peer_server::PeerServer;
use txmq_raft_store::{NodeInfo, Raft, Storage, StorageConfig};

use crate::checkers::CheckerRegistry;
use crate::client_service::ClientService;
use crate::config::ServeConfig;
use crate::consume_service::ConsumeService;
use crate::network::{MAX_PEER_MESSAGE, PeerNetworkFactory, peer_message_limit};
use crate::peer_service::PeerService;
use crate::proposer::Proposer;
use crate::scheduler::Scheduler;
use crate::txn_service::TxnService;

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
    #[error("cannot set the damaged storage in {path} aside: {source}")]
    Repair {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Listeners bound before the node starts, so callers (tests, `txmq dev`) can use port 0.
pub struct Listeners {
    pub client: TcpListener,
    pub peer: TcpListener,
    pub metrics: TcpListener,
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
        })
    }
}

/// Opens the node's storage; with `--repair-damaged-storage`, damaged storage is set aside and
/// the node starts empty to be rebuilt (`true`: a repair is under way, see [`crate::repair`]).
fn open_storage(config: &ServeConfig) -> Result<(Storage, bool), NodeError> {
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
fn raft_config(config: &ServeConfig, elect: bool) -> Result<Arc<openraft::Config>, NodeError> {
    let election_ms = config.election_timeout.as_millis() as u64;
    let raft = openraft::Config {
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
    };
    raft.validate()
        .map(Arc::new)
        .map_err(|e| NodeError::RaftConfig(e.to_string()))
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let client_addr =
        config.advertised_client_addr(listeners.client.local_addr().map_err(|source| {
            NodeError::Bind {
                addr: config.client_addr.clone(),
                what: "client API",
                source,
            }
        })?);
    let peer_addr = config.advertised_peer_addr(listeners.peer.local_addr().map_err(|source| {
        NodeError::Bind {
            addr: config.peer_addr.clone(),
            what: "peer API",
            source,
        }
    })?);
    let (storage, repairing) = open_storage(&config)?;
    let space_gate = storage.log.space_gate();
    let disk = crate::disk::DiskMonitor::new(
        config.data_dir.clone(),
        config.disk_reserve_bytes,
        space_gate.clone(),
    );
    let vote_gate = crate::repair::VoteGate::new(repairing);
    let metrics_handle = crate::telemetry::install();
    let storage_handle = storage.handle.clone();
    let log_for_metrics = storage.log.clone();
    let reader = storage.reader.clone();
    let routes = Arc::new(crate::network::PeerRoutes::new(
        config.peer_overrides.clone(),
    ));
    let network = PeerNetworkFactory::new(routes.clone(), storage.snapshots.clone());
    let raft = Raft::new(
        config.node_id,
        raft_config(&config, !repairing)?,
        network,
        storage.log,
        storage.state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    // Runs beside the servers: a fresh node learns from its peers' answers whether to found a
    // cluster or join one, and those peers must be able to ask it the same.
    let bootstrap_task = tokio::spawn(
        crate::bootstrap::Bootstrap {
            raft: raft.clone(),
            node_id: config.node_id,
            initial_cluster: config.initial_cluster.clone(),
            routes: routes.clone(),
            me: NodeInfo {
                peer_addr: peer_addr.clone(),
                client_addr: client_addr.clone(),
            },
            repairing,
        }
        .run(),
    );
    let repair_task = repairing.then(|| {
        tokio::spawn(crate::repair::finish_when_caught_up(
            raft.clone(),
            vote_gate.clone(),
            config.data_dir.clone(),
            routes.clone(),
        ))
    });
    tracing::info!(node = config.node_id, %client_addr, %peer_addr, data_dir = %config.data_dir.display(), "txmq node started");

    let proposer = Proposer::new(
        config.node_id,
        raft.clone(),
        reader.clone(),
        routes.clone(),
        space_gate,
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(crate::health::track_readiness(
        raft.clone(),
        disk.clone(),
        health_reporter,
    ));
    let disk_task = tokio::spawn(disk.clone().run());
    let disk_full_task = tokio::spawn(stand_aside_while_disk_full(
        raft.clone(),
        disk.subscribe(),
        vote_gate.clone(),
    ));
    let checkers = Arc::new(CheckerRegistry::default());
    let raft_metrics_task = tokio::spawn(crate::telemetry::track_raft(raft.clone()));
    let snapshot_task = tokio::spawn(crate::snapshot_trigger::run(
        raft.clone(),
        log_for_metrics.clone(),
        config.snapshot_log_bytes,
    ));
    let refresh_task = tokio::spawn(crate::telemetry::refresh_periodically(
        metrics_handle.clone(),
        reader.clone(),
        storage_handle.clone(),
        log_for_metrics,
        checkers.clone(),
    ));
    let make_scheduler = {
        let (disk, raft, routes) = (disk.clone(), raft.clone(), routes.clone());
        let (proposer, reader, checkers) = (proposer.clone(), reader.clone(), checkers.clone());
        let disk_high_water = config.disk_high_water;
        move || Scheduler {
            disk: disk.clone(),
            raft: raft.clone(),
            routes: routes.clone(),
            disk_high_water,
            proposer: proposer.clone(),
            reader: reader.clone(),
            checkers: checkers.clone(),
        }
    };
    let _leader_watch = start_scheduler_on_leadership(&raft, make_scheduler, &checkers);
    let txn = TxnService {
        raft: raft.clone(),
        proposer: proposer.clone(),
        reader: reader.clone(),
        checkers,
        settings: config.txn,
        routes: routes.clone(),
        max_message_bytes: config.max_message_bytes,
    };
    let consume = ConsumeService {
        proposer: proposer.clone(),
        reader: reader.clone(),
        response_bytes: config.max_message_bytes,
    };
    let client_service = ClientService {
        routes,
        raft: raft.clone(),
        proposer: proposer.clone(),
        txn,
        consume,
        reader,
        max_message_bytes: config.max_message_bytes,
        client_addr: client_addr.clone(),
        peer_addr: peer_addr.clone(),
        disk: disk.clone(),
    };
    let peer_service = PeerService::new(
        raft.clone(),
        vote_gate,
        disk.clone(),
        proposer,
        config.data_dir.join("snapshots").join("incoming"),
        client_addr,
        peer_addr,
    );
    let open_files = crate::listener::raise_open_file_limit();
    let client_connections =
        crate::listener::client_connection_bound(open_files, config.max_connections);
    tracing::info!(open_files, client_connections, "connection bounds");
    // Room for the largest body plus the envelope of the request.
    let max_client_message = config.max_message_bytes + 1024 * 1024;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http_server = crate::http::serve(
        listeners.metrics,
        metrics_handle,
        raft.clone(),
        disk.clone(),
        stopped(stop_rx.clone()),
    );
    let http_task = tokio::spawn(async move {
        if let Err(e) = http_server.await {
            tracing::error!("metrics/health HTTP server failed: {e}");
        }
    });
    let client_server = tonic::transport::Server::builder()
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
        .add_service(health_service)
        .add_service(
            TxmqServer::new(client_service)
                .max_decoding_message_size(max_client_message)
                .max_encoding_message_size(max_client_message),
        )
        .serve_with_incoming_shutdown(
            crate::listener::bounded(listeners.client, client_connections, "client"),
            stopped(stop_rx.clone()),
        );
    let peer_server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_PEER_STREAMS)
        .add_service(
            PeerServer::new(peer_service)
                .max_decoding_message_size(peer_message_limit(config.max_message_bytes))
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        )
        .serve_with_incoming_shutdown(
            crate::listener::bounded(listeners.peer, crate::listener::PEER_CONNECTIONS, "peer"),
            stopped(stop_rx),
        );
    let servers = async { tokio::try_join!(client_server, peer_server) };
    tokio::pin!(servers);
    let result = tokio::select! {
        r = &mut servers => r.map(|_| ()),
        _ = shutdown => {
            tracing::info!("shutting down");
            step_back(&raft).await;
            let _ = stop_tx.send(true);
            // Graceful shutdown waits for every open stream, and a leader's replication stream
            // never ends by itself: bound the wait, then drop what is left.
            match tokio::time::timeout(SERVER_DRAIN, &mut servers).await {
                Ok(r) => r.map(|_| ()),
                Err(_) => {
                    tracing::info!("open streams did not end within {SERVER_DRAIN:?}; closing them");
                    Ok(())
                }
            }
        }
    };
    bootstrap_task.abort();
    if let Some(task) = repair_task {
        task.abort();
    }
    health_task.abort();
    disk_task.abort();
    disk_full_task.abort();
    raft_metrics_task.abort();
    snapshot_task.abort();
    refresh_task.abort();
    let _ = tokio::time::timeout(SERVER_DRAIN, http_task).await;
    match tokio::time::timeout(RAFT_STOP, raft.shutdown()).await {
        Ok(Err(e)) => tracing::warn!("raft shutdown: {e}"),
        Err(_) => tracing::warn!("raft did not stop within {RAFT_STOP:?}; exiting anyway"),
        Ok(Ok(())) => {}
    }
    if let Err(e) = storage_handle.flush().await {
        tracing::warn!("final flush: {e}");
    }
    result.map_err(NodeError::from)
}

/// Concurrent requests one peer connection may carry (forwarded client requests share it).
const MAX_PEER_STREAMS: u32 = 1024;

/// How long a stopping node waits for its servers' open requests and streams.
const SERVER_DRAIN: Duration = Duration::from_secs(3);
/// How long a stopping node waits for openraft to stop.
const RAFT_STOP: Duration = Duration::from_secs(5);
/// How long a stopping leader waits for another voter to take over.
const HANDOVER: Duration = Duration::from_secs(3);

/// The first steps of a shutdown: this node starts no election from now on (a stopping node
/// that campaigns only pushes the term up), and a leader hands leadership to the most caught-up
/// voter, so the cluster does not wait an election timeout for a new one.
async fn step_back(raft: &Raft) {
    raft.runtime_config().elect(false);
    hand_over_leadership(raft).await;
}

/// If this node leads, hands leadership to the most caught-up other voter and waits (a while)
/// for it to take over.
async fn hand_over_leadership(raft: &Raft) {
    use openraft::async_runtime::WatchReceiver;
    let metrics = raft.metrics().borrow_watched().clone();
    if metrics.current_leader != Some(metrics.id) {
        return;
    }
    let successor = metrics.replication.as_ref().and_then(|progress| {
        progress
            .iter()
            .filter(|(id, _)| **id != metrics.id)
            .filter(|(id, _)| metrics.membership_config.voter_ids().any(|v| v == **id))
            .max_by_key(|(_, matched)| matched.map(|m| m.index))
            .map(|(id, _)| *id)
    });
    let Some(successor) = successor else {
        return;
    };
    tracing::info!(successor, "handing leadership over");
    if let Err(e) = raft.trigger().transfer_leader(successor).await {
        tracing::warn!("leadership handover to {successor} failed: {e}");
        return;
    }
    let handed_over = raft
        .wait(Some(HANDOVER))
        .metrics(|m| m.current_leader != Some(m.id), "another leader")
        .await;
    if handed_over.is_err() {
        tracing::warn!("no other leader within {HANDOVER:?}; stopping anyway");
    }
}

/// While the data volume is nearly full this node takes no new log entries, so it must not
/// lead: it stands for no election, and a leader stops heartbeating and hands leadership over.
/// (Its own appends wait at the space gate, which may hold up openraft's core and with it the
/// handover; without heartbeats the followers elect a new leader after their timeout anyway.)
/// Once space is back it heartbeats and may stand again (unless a repair still keeps it out).
async fn stand_aside_while_disk_full(
    raft: Raft,
    mut full: tokio::sync::watch::Receiver<bool>,
    vote_gate: Arc<crate::repair::VoteGate>,
) {
    loop {
        let is_full = *full.borrow_and_update();
        if is_full {
            raft.runtime_config().elect(false);
            raft.runtime_config().heartbeat(false);
            hand_over_leadership(&raft).await;
        } else {
            raft.runtime_config().heartbeat(true);
            if !vote_gate.refusing() {
                raft.runtime_config().elect(true);
            }
        }
        if full.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the transaction scheduler exactly while this node is the leader: started by openraft's
/// leader-change hook with the leadership to fence its proposals to, aborted when it ends (and
/// the checker registrations, which only the leader holds, are dropped so clients reconnect).
fn start_scheduler_on_leadership(
    raft: &Raft,
    scheduler: impl Fn() -> Scheduler + Send + Sync + 'static,
    checkers: &Arc<CheckerRegistry>,
) -> openraft::WatchChangeHandle<txmq_raft_store::TypeConfig> {
    use openraft::vote::RaftLeaderId;
    let task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let (start_task, stop_task) = (task.clone(), task);
    let stop_checkers = checkers.clone();
    raft.on_leader_change(
        move |leader_id| {
            let handle = tokio::spawn(scheduler().run(leader_id.to_committed()));
            let previous = start_task
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(handle);
            if let Some(previous) = previous {
                previous.abort();
            }
            async {}
        },
        move |leader_id| {
            if let Some(handle) = stop_task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                handle.abort();
            }
            stop_checkers.clear();
            tracing::info!(?leader_id, "leadership lost: transaction scheduler stopped");
            async {}
        },
    )
}
