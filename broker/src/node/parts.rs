//! The pieces a node's services and background tasks share, made from its storage before
//! Raft starts.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tonic_health::server::HealthReporter;
use txmq_raft_store::storage::StorageHandle;
use txmq_raft_store::{LogStore, SpaceGate, StateReader, Storage};

use crate::checkers::CheckerRegistry;
use crate::disk::DiskMonitor;
use crate::network::PeerRoutes;
use crate::repair::VoteGate;

/// The pieces the services and tasks share, made from storage before Raft starts.
pub(super) struct Parts {
    pub disk: Arc<DiskMonitor>,
    pub routes: Arc<PeerRoutes>,
    pub vote_gate: Arc<VoteGate>,
    pub reader: StateReader,
    pub log: LogStore,
    pub space_gate: Arc<SpaceGate>,
    pub storage: StorageHandle,
    pub metrics: Option<PrometheusHandle>,
    pub checkers: Arc<CheckerRegistry>,
    /// The other nodes' RocketMQ addresses and check-back groups.
    pub directory: Arc<crate::peer_directory::PeerDirectory>,
    pub health: HealthReporter,
    /// A repair of damaged storage is under way (see [`crate::repair`]).
    pub repairing: bool,
}

impl Parts {
    pub fn of(
        storage: &Storage,
        disk: Arc<DiskMonitor>,
        routes: Arc<PeerRoutes>,
        repairing: bool,
        check_channels: usize,
    ) -> Parts {
        Parts {
            disk,
            routes,
            vote_gate: VoteGate::new(repairing),
            reader: storage.reader.clone(),
            log: storage.log.clone(),
            space_gate: storage.log.space_gate(),
            storage: storage.handle.clone(),
            metrics: crate::telemetry::install(),
            checkers: Arc::new(CheckerRegistry::new(check_channels)),
            directory: Arc::default(),
            health: HealthReporter::new(),
            repairing,
        }
    }
}
