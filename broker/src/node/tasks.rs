//! A node's background tasks, each named, started together and stopped together.
//!
//! None of them holds data that must survive a stop: they observe (metrics, health, disk),
//! propose (the scheduler, snapshots, bootstrap, the first administrator, repair) or steer Raft (disk full). Aborting
//! one mid-way loses at most a proposal that was not acknowledged to anyone.

use tokio::task::JoinHandle;
use txmq_raft_store::{NodeInfo, Raft};

use super::leadership;
use super::parts::Parts;
use crate::auth::bootstrap::{BootstrapAdmin, propose_admin};
use crate::config::ServeConfig;
use crate::proposer::Proposer;
use crate::scheduler::Scheduler;

/// The running background tasks of a node.
pub(super) struct BackgroundTasks {
    /// Runs leader-only operations (shared with the services).
    pub proposer: Proposer,
    /// Founds or joins the cluster (a fresh node learns from its peers which).
    bootstrap: JoinHandle<()>,
    /// Lets a node rebuilding damaged storage vote again once it holds the leader's log.
    repair: Option<JoinHandle<()>>,
    /// Proposes the bootstrap administrator until the cluster has it.
    admin: Option<JoinHandle<()>>,
    /// Tells gRPC health whether this node can serve.
    health: JoinHandle<()>,
    /// Watches the data volume's free space.
    disk: JoinHandle<()>,
    /// Keeps a node with a full disk out of leadership.
    disk_full: JoinHandle<()>,
    /// Raft's state as metrics.
    raft_metrics: JoinHandle<()>,
    /// Triggers snapshots when the log grows past its byte bound.
    snapshots: JoinHandle<()>,
    /// Gauges computed from the state every few seconds.
    refresh: JoinHandle<()>,
    /// Asks the other nodes for their RocketMQ addresses and check-back groups.
    directory: JoinHandle<()>,
    /// Starts the transaction scheduler while this node leads (dropped: unregistered).
    _leader_watch: openraft::WatchChangeHandle<txmq_raft_store::TypeConfig>,
}

impl BackgroundTasks {
    pub fn start(
        config: &ServeConfig,
        raft: &Raft,
        parts: &Parts,
        me: NodeInfo,
        admin: Option<BootstrapAdmin>,
    ) -> Self {
        let proposer = Proposer::new(
            config.node_id,
            raft.clone(),
            parts.reader.clone(),
            parts.routes.clone(),
            parts.space_gate.clone(),
        );
        // Runs beside the servers: a fresh node learns from its peers' answers whether to found
        // a cluster or join one, and those peers must be able to ask it the same.
        let bootstrap = tokio::spawn(
            crate::bootstrap::Bootstrap {
                raft: raft.clone(),
                node_id: config.node_id,
                initial_cluster: config.initial_cluster.clone(),
                routes: parts.routes.clone(),
                me,
                repairing: parts.repairing,
            }
            .run(),
        );
        let repair = parts.repairing.then(|| {
            tokio::spawn(crate::repair::finish_when_caught_up(
                raft.clone(),
                parts.vote_gate.clone(),
                config.data_dir.clone(),
                parts.routes.clone(),
            ))
        });
        let leader_watch = leadership::start_scheduler_on_leadership(
            raft,
            scheduler_factory(config, raft, parts, &proposer),
            &parts.checkers,
        );
        let admin = admin.map(|a| tokio::spawn(propose_admin(proposer.clone(), a)));
        let mut tasks = Self::observers(config, raft, parts, proposer, bootstrap, leader_watch);
        tasks.repair = repair;
        tasks.admin = admin;
        tasks
    }

    /// The tasks that watch the node (health, disk, metrics, snapshots).
    fn observers(
        config: &ServeConfig,
        raft: &Raft,
        parts: &Parts,
        proposer: Proposer,
        bootstrap: JoinHandle<()>,
        leader_watch: openraft::WatchChangeHandle<txmq_raft_store::TypeConfig>,
    ) -> Self {
        let disk = &parts.disk;
        BackgroundTasks {
            proposer,
            bootstrap,
            repair: None,
            admin: None,
            health: tokio::spawn(crate::health::track_readiness(
                raft.clone(),
                disk.clone(),
                parts.health.clone(),
            )),
            disk: tokio::spawn(disk.clone().run()),
            disk_full: tokio::spawn(leadership::stand_aside_while_disk_full(
                raft.clone(),
                disk.subscribe(),
                parts.vote_gate.clone(),
            )),
            raft_metrics: tokio::spawn(crate::telemetry::track_raft(raft.clone())),
            snapshots: tokio::spawn(crate::snapshot_trigger::run(
                raft.clone(),
                parts.log.clone(),
                config.snapshot_log_bytes,
            )),
            refresh: tokio::spawn(crate::telemetry::refresh_periodically(
                parts.metrics.clone(),
                parts.reader.clone(),
                parts.storage.clone(),
                parts.log.clone(),
                parts.checkers.clone(),
            )),
            directory: tokio::spawn(
                parts
                    .directory
                    .clone()
                    .run(raft.clone(), parts.routes.clone()),
            ),
            _leader_watch: leader_watch,
        }
    }

    /// Stops every task (see the module comment for why aborting is safe).
    pub fn stop(self) {
        let tasks = [
            Some(self.bootstrap),
            self.repair,
            self.admin,
            Some(self.health),
            Some(self.disk),
            Some(self.disk_full),
            Some(self.raft_metrics),
            Some(self.snapshots),
            Some(self.refresh),
            Some(self.directory),
        ];
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
    }
}

/// Makes the transaction scheduler for each leadership term.
fn scheduler_factory(
    config: &ServeConfig,
    raft: &Raft,
    parts: &Parts,
    proposer: &Proposer,
) -> impl Fn() -> Scheduler + Send + Sync + 'static {
    let (disk, raft, routes) = (parts.disk.clone(), raft.clone(), parts.routes.clone());
    let (proposer, reader, checkers, directory) = (
        proposer.clone(),
        parts.reader.clone(),
        parts.checkers.clone(),
        parts.directory.clone(),
    );
    let disk_high_water = config.disk_high_water;
    move || Scheduler {
        disk: disk.clone(),
        raft: raft.clone(),
        routes: routes.clone(),
        disk_high_water,
        proposer: proposer.clone(),
        reader: reader.clone(),
        checkers: checkers.clone(),
        directory: directory.clone(),
    }
}
