//! One txmq node: storage, Raft, the client and peer gRPC servers, the HTTP endpoint and the
//! background tasks, from start to an orderly stop.
//!
//! [`Node::start`] opens everything and starts the tasks; [`Node::serve_until`] runs the
//! servers until a shutdown signal, then stops in this order (see [`Node::stop`]): step back
//! from leadership, drain the servers, stop the background tasks, stop Raft, flush storage.

mod leadership;
mod parts;
mod raft_watch;
mod services;
mod startup;
mod tasks;
mod transports;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use txmq_proto::client::txmq_server::TxmqServer;
use txmq_proto::peer::peer_server::PeerServer;
use txmq_raft_store::storage::StorageHandle;
use txmq_raft_store::{NodeInfo, Raft};

use metrics_exporter_prometheus::PrometheusHandle;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::client_service::ClientService;
use crate::config::ServeConfig;
use crate::disk::DiskMonitor;
use crate::network::{MAX_PEER_MESSAGE, PeerNetworkFactory, peer_message_limit};
use crate::peer_service::PeerService;
use services::Services;
pub use startup::{Listeners, NodeError};
use tasks::BackgroundTasks;
use transports::Transports;

/// Concurrent requests one peer connection may carry (forwarded client requests share it).
const MAX_PEER_STREAMS: u32 = 1024;
/// How long a stopping node waits for its servers' open requests and streams.
const SERVER_DRAIN: Duration = Duration::from_secs(3);
/// How long a stopping node waits for openraft to stop.
const RAFT_STOP: Duration = Duration::from_secs(5);

/// The addresses this node tells others to reach it at.
#[derive(Debug, Clone)]
struct Advertised {
    client: String,
    peer: String,
    /// The RocketMQ-protocol address, when that listener is on.
    rocketmq: Option<String>,
}

/// A started node.
pub struct Node {
    config: ServeConfig,
    raft: Raft,
    storage: StorageHandle,
    tasks: BackgroundTasks,
    services: Services,
    listeners: Listeners,
    transports: Transports,
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    Node::start(config, listeners)
        .await?
        .serve_until(shutdown)
        .await
}

impl Node {
    /// Opens storage, starts Raft and the background tasks, and builds the services (not yet
    /// serving: peers may already be asking, and are answered once [`Self::serve_until`] runs).
    pub async fn start(config: ServeConfig, listeners: Listeners) -> Result<Node, NodeError> {
        let advertised = advertised(&config, &listeners)?;
        let transports = Transports::build(&config.security, &advertised.peer)?;
        let admin = match &config.security.auth_admin_file {
            Some(path) => {
                Some(crate::auth::bootstrap::read_admin_file(path).map_err(NodeError::Security)?)
            }
            None => None,
        };
        let (storage, repairing) = startup::open_storage(&config)?;
        let disk = crate::disk::DiskMonitor::new(
            config.data_dir.clone(),
            config.disk_reserve_bytes,
            storage.log.space_gate(),
        );
        let routes = Arc::new(crate::network::PeerRoutes::new(
            config.peer_overrides.clone(),
            transports.dialer.clone(),
        ));
        let parts = parts::Parts::of(
            &storage,
            disk,
            routes.clone(),
            repairing,
            config.limits.check_channels,
        );
        let network = PeerNetworkFactory::new(routes, storage.snapshots.clone());
        let raft = Raft::new(
            config.node_id,
            startup::raft_config(&config, !repairing)?,
            network,
            storage.log,
            storage.state_machine,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let me = NodeInfo {
            peer_addr: advertised.peer.clone(),
            client_addr: advertised.client.clone(),
        };
        let tasks = BackgroundTasks::start(&config, &raft, &parts, me, admin);
        tracing::info!(node = config.node_id, client_addr = %advertised.client, peer_addr = %advertised.peer, data_dir = %config.data_dir.display(), "txmq node started");
        let services = Services::build(&config, &raft, parts, tasks.proposer.clone(), advertised);
        Ok(Node {
            config,
            raft,
            storage: storage.handle,
            tasks,
            services,
            listeners,
            transports,
        })
    }

    /// Serves until `shutdown` resolves (or a server fails), then stops the node.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let Node {
            config,
            raft,
            storage,
            tasks,
            services,
            listeners,
            transports,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let Services {
            client,
            rocketmq,
            peer,
            health,
            metrics,
            disk,
        } = services;
        let http = http_server(metrics, disk, listeners.metrics, &raft, stop_rx.clone());
        let http_task = tokio::spawn(http);
        let client_server = client_server(
            (client, health),
            &config,
            (listeners.client, transports.client_tls),
            stop_rx.clone(),
        );
        let peer_server = peer_server(
            peer,
            &config,
            (listeners.peer, transports.peer_tls),
            transports.require_secret,
            stop_rx.clone(),
        );
        let rocketmq_server = rocketmq_server(
            rocketmq,
            &config,
            (listeners.rocketmq, transports.rocketmq_tls),
            stop_rx,
        );
        let servers = async {
            tokio::try_join!(client_server, peer_server, rocketmq_server).map(|_| ((), ()))
        };
        tokio::pin!(servers);
        let result = tokio::select! {
            r = &mut servers => r.map_err(NodeError::from).map(|_| ()),
            _ = shutdown => {
                tracing::info!("shutting down");
                // Leadership first: the cluster gets a new leader while this node still
                // answers, instead of waiting an election timeout after it is gone.
                leadership::step_back(&raft).await;
                let _ = stop_tx.send(true);
                drain(&mut servers).await.map_err(NodeError::from)
            }
            reason = raft_watch::core_stopped(&raft) => {
                tracing::error!(%reason, "Raft stopped on its own; this node exits so that its supervisor restarts it from its durable state");
                let _ = stop_tx.send(true);
                let _ = drain(&mut servers).await;
                Err(NodeError::RaftStopped(reason))
            }
        };
        Self::stop(raft, storage, tasks, http_task).await;
        result
    }

    /// The rest of a stop, once the servers are drained: the background tasks (they only
    /// propose or observe; nothing durable waits on them), the HTTP endpoint (it answered
    /// health checks during the drain), Raft (bounded: a stuck peer must not keep a node from
    /// exiting), and last sled's pending writes (the log and queue files are durable already).
    async fn stop(
        raft: Raft,
        storage: StorageHandle,
        tasks: BackgroundTasks,
        http_task: tokio::task::JoinHandle<()>,
    ) {
        tasks.stop();
        let _ = tokio::time::timeout(SERVER_DRAIN, http_task).await;
        match tokio::time::timeout(RAFT_STOP, raft.shutdown()).await {
            Ok(Err(e)) => tracing::warn!("raft shutdown: {e}"),
            Err(_) => tracing::warn!("raft did not stop within {RAFT_STOP:?}; exiting anyway"),
            Ok(Ok(())) => {}
        }
        if let Err(e) = storage.flush().await {
            tracing::warn!("final flush: {e}");
        }
    }
}

/// Waits for the servers to finish their open requests. Graceful shutdown waits for every open
/// stream, and a leader's replication stream never ends by itself: bounded, then what is left
/// is dropped.
async fn drain<F>(servers: &mut std::pin::Pin<&mut F>) -> Result<(), tonic::transport::Error>
where
    F: Future<Output = Result<((), ()), tonic::transport::Error>>,
{
    match tokio::time::timeout(SERVER_DRAIN, servers.as_mut()).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => {
            tracing::info!("open streams did not end within {SERVER_DRAIN:?}; closing them");
            Ok(())
        }
    }
}

/// The client and peer addresses to advertise, from the configuration and the bound ports.
fn advertised(config: &ServeConfig, listeners: &Listeners) -> Result<Advertised, NodeError> {
    let bound = |listener: &tokio::net::TcpListener, addr: &String, what| {
        listener.local_addr().map_err(|source| NodeError::Bind {
            addr: addr.clone(),
            what,
            source,
        })
    };
    Ok(Advertised {
        client: config.advertised_client_addr(bound(
            &listeners.client,
            &config.client_addr,
            "client API",
        )?),
        peer: config.advertised_peer_addr(bound(&listeners.peer, &config.peer_addr, "peer API")?),
        rocketmq: match (&listeners.rocketmq, &config.rocketmq_addr) {
            (Some(listener), Some(addr)) => {
                Some(config.advertised_rocketmq_addr(bound(listener, addr, "RocketMQ protocol")?))
            }
            _ => None,
        },
    })
}

/// A future that resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The client API server: health, and the `txmq.v1.Txmq` service, over bounded connections.
/// The RocketMQ-protocol server, when its listener is on (TLS like the client port's), over
/// bounded connections with the client port's limits.
fn rocketmq_server(
    service: Option<crate::rocketmq::RocketmqService>,
    config: &ServeConfig,
    (listener, tls): (Option<tokio::net::TcpListener>, crate::listener::PortTls),
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + use<> {
    use txmq_proto::rocketmq::messaging_service_server::MessagingServiceServer;
    let served = service.zip(listener).map(|(service, listener)| {
        let max_message = config.max_message_bytes + 1024 * 1024;
        let limits = config.limits;
        let plaintext_too = config.rocketmq_allow_plaintext;
        let connections = crate::listener::client_connection_bound(
            crate::listener::raise_open_file_limit(),
            config.max_connections,
        );
        tonic::transport::Server::builder()
            .max_concurrent_streams(limits.streams_per_connection)
            .concurrency_limit_per_connection(limits.requests_per_connection)
            .load_shed(true)
            .add_service(
                MessagingServiceServer::new(service)
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(max_message),
            )
            .serve_with_incoming_shutdown(
                crate::listener::bounded_with(
                    listener,
                    connections,
                    "rocketmq",
                    (tls, plaintext_too),
                    limits.idle_connection_timeout,
                ),
                stopped(stop),
            )
    });
    async move {
        match served {
            Some(server) => server.await,
            None => Ok(()),
        }
    }
}

fn client_server(
    services: (Arc<ClientService>, HealthServer<HealthService>),
    config: &ServeConfig,
    (listener, tls): (tokio::net::TcpListener, crate::listener::PortTls),
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + use<> {
    let (client, health) = services;
    let open_files = crate::listener::raise_open_file_limit();
    let connections = crate::listener::client_connection_bound(open_files, config.max_connections);
    tracing::info!(
        open_files,
        client_connections = connections,
        "connection bounds"
    );
    // Room for the largest body plus the envelope of the request.
    let max_message = config.max_message_bytes + 1024 * 1024;
    let layers = tower::ServiceBuilder::new()
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
        .layer(client.access.layer());
    let limits = config.limits;
    tonic::transport::Server::builder()
        // Past the stream bound a client waits (HTTP/2 flow control); past the request bound a
        // request is answered RESOURCE_EXHAUSTED at once instead of queueing.
        .max_concurrent_streams(limits.streams_per_connection)
        .concurrency_limit_per_connection(limits.requests_per_connection)
        .load_shed(true)
        .layer(layers)
        .add_service(health)
        .add_service(
            TxmqServer::from_arc(client)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        .serve_with_incoming_shutdown(
            crate::listener::bounded(
                listener,
                connections,
                "client",
                tls,
                limits.idle_connection_timeout,
            ),
            stopped(stop),
        )
}

/// The peer API server (Raft and forwarding), over bounded connections.
fn peer_server(
    peer: PeerService,
    config: &ServeConfig,
    (listener, tls): (tokio::net::TcpListener, crate::listener::PortTls),
    require_secret: crate::cluster_secret::RequireSecret,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + use<> {
    let service = PeerServer::new(peer)
        .max_decoding_message_size(peer_message_limit(config.max_message_bytes))
        .max_encoding_message_size(MAX_PEER_MESSAGE);
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_PEER_STREAMS)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            service,
            require_secret,
        ))
        .serve_with_incoming_shutdown(
            crate::listener::bounded(
                listener,
                crate::listener::PEER_CONNECTIONS,
                "peer",
                tls,
                config.limits.idle_connection_timeout,
            ),
            stopped(stop),
        )
}

/// The metrics and health HTTP endpoint.
fn http_server(
    metrics: Option<PrometheusHandle>,
    disk: Arc<DiskMonitor>,
    listener: tokio::net::TcpListener,
    raft: &Raft,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let server = crate::http::serve(listener, metrics, raft.clone(), disk, stopped(stop));
    async move {
        if let Err(e) = server.await {
            tracing::error!("metrics/health HTTP server failed: {e}");
        }
    }
}
