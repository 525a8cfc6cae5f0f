//! What a node serves, built once Raft exists: the client API (with its transaction and
//! consume services), the peer API, health and metrics.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;
use txmq_raft_store::Raft;

use super::Advertised;
use super::parts::Parts;
use crate::client_service::ClientService;
use crate::config::ServeConfig;
use crate::consume_service::ConsumeService;
use crate::disk::DiskMonitor;
use crate::peer_service::PeerService;
use crate::proposer::Proposer;
use crate::txn_service::TxnService;

/// The services a node serves.
pub(super) struct Services {
    pub client: Arc<ClientService>,
    /// The RocketMQ protocol, when its listener is on.
    pub rocketmq: Option<crate::rocketmq::RocketmqService>,
    pub peer: PeerService,
    pub health: HealthServer<HealthService>,
    pub metrics: Option<PrometheusHandle>,
    pub disk: Arc<DiskMonitor>,
}

impl Services {
    pub fn build(
        config: &ServeConfig,
        raft: &Raft,
        parts: Parts,
        proposer: Proposer,
        advertised: Advertised,
    ) -> Services {
        let client = Arc::new(client_service(
            config,
            raft,
            &parts,
            proposer.clone(),
            &advertised,
        ));
        let rocketmq =
            advertised
                .rocketmq
                .clone()
                .map(|own_addr| crate::rocketmq::RocketmqService {
                    native: client.clone(),
                    directory: parts.directory.clone(),
                    own_addr,
                    telemetry: crate::rocketmq::telemetry::TelemetryContext {
                        checkers: parts.checkers.clone(),
                        max_body: config.max_message_bytes,
                    },
                });
        let peer = PeerService {
            raft: raft.clone(),
            vote_gate: parts.vote_gate.clone(),
            disk: parts.disk.clone(),
            proposer,
            incoming_dir: config.data_dir.join("snapshots").join("incoming"),
            client_addr: advertised.client,
            peer_addr: advertised.peer,
            rocketmq_addr: advertised.rocketmq.unwrap_or_default(),
            checkers: parts.checkers.clone(),
        };
        Services {
            client,
            rocketmq,
            peer,
            health: HealthServer::new(HealthService::from_health_reporter(parts.health)),
            metrics: parts.metrics,
            disk: parts.disk,
        }
    }
}

/// The client API's service with its transaction and consume halves.
fn client_service(
    config: &ServeConfig,
    raft: &Raft,
    parts: &Parts,
    proposer: Proposer,
    advertised: &Advertised,
) -> ClientService {
    let txn = TxnService {
        raft: raft.clone(),
        proposer: proposer.clone(),
        reader: parts.reader.clone(),
        checkers: parts.checkers.clone(),
        settings: config.txn,
        routes: parts.routes.clone(),
        max_message_bytes: config.max_message_bytes,
    };
    let consume = ConsumeService {
        proposer: proposer.clone(),
        reader: parts.reader.clone(),
        response_bytes: config.max_message_bytes,
        long_polls: Arc::new(tokio::sync::Semaphore::new(config.limits.long_polls)),
    };
    ClientService {
        access: crate::auth::Access::new(
            parts.reader.clone(),
            config.security.auth_admin_file.is_some(),
        ),
        routes: parts.routes.clone(),
        raft: raft.clone(),
        proposer,
        txn,
        consume,
        reader: parts.reader.clone(),
        max_message_bytes: config.max_message_bytes,
        client_addr: advertised.client.clone(),
        peer_addr: advertised.peer.clone(),
        disk: parts.disk.clone(),
    }
}
