//! The simulated cluster: its nodes (each a disk and, while up, a running incarnation), the
//! network between them, and the clock every part reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::async_runtime::WatchReceiver;

use crate::bugs::Bug;
use crate::checks::CheckRouter;
use crate::disk::SimDisk;
use crate::net::SimNet;
use crate::replica::Replica;
use crate::rng::SimRng;
use crate::trace::Trace;
use crate::types::NodeId;

/// openraft over the simulated stores.
pub type Raft = openraft::Raft<crate::types::SimConfig, crate::state_machine::SimStateMachine>;

/// The simulated time at which a run starts, in Unix milliseconds (so times look real).
pub const EPOCH_MS: u64 = 1_800_000_000_000;

/// A node while it runs.
#[derive(Clone)]
pub struct Running {
    pub raft: Raft,
    pub replica: Arc<Mutex<Replica>>,
    pub incarnation: u64,
}

impl Running {
    pub fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A node: its disk survives crashes; `running` is its current incarnation, if up.
pub struct NodeSlot {
    pub disk: Arc<SimDisk>,
    pub running: Option<Running>,
    pub incarnations: u64,
}

/// Everything a run shares.
pub struct Cluster {
    pub net: SimNet,
    pub bug: Option<Bug>,
    pub trace: Trace,
    /// The voters the cluster was founded with.
    pub initial_voters: Vec<NodeId>,
    pub checkers: CheckRouter,
    /// A membership change is under way (one at a time).
    pub changing_membership: AtomicBool,
    start: tokio::time::Instant,
    nodes: Mutex<BTreeMap<NodeId, NodeSlot>>,
    /// Nodes taken out of the membership: stopped for good, their ids never reused.
    retired: Mutex<BTreeSet<NodeId>>,
    /// How far each node's wall clock is off, in milliseconds (a clock-skew fault).
    skews: Mutex<BTreeMap<NodeId, i64>>,
    rng: Mutex<SimRng>,
}

impl Cluster {
    pub fn new(nodes: usize, rng: &mut SimRng, bug: Option<Bug>, keep_trace: bool) -> Self {
        let voters: Vec<NodeId> = (1..=nodes as NodeId).collect();
        let slots = voters
            .iter()
            .map(|id| {
                let slot = NodeSlot {
                    disk: Arc::new(SimDisk::new(rng.fork())),
                    running: None,
                    incarnations: 0,
                };
                (*id, slot)
            })
            .collect();
        Cluster {
            net: SimNet::new(rng.fork()),
            bug,
            trace: Trace::new(keep_trace),
            initial_voters: voters,
            checkers: CheckRouter::default(),
            changing_membership: AtomicBool::new(false),
            start: tokio::time::Instant::now(),
            nodes: Mutex::new(slots),
            retired: Mutex::new(BTreeSet::new()),
            skews: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(rng.fork()),
        }
    }

    /// Simulated milliseconds since the run started.
    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The simulated wall clock, as a leader stamps it into a command.
    pub fn now_ms(&self) -> u64 {
        EPOCH_MS + self.elapsed_ms()
    }

    /// Node `id`'s wall clock: the simulated clock plus its skew. A leader stamps this into
    /// the commands it proposes, as a real leader stamps its own clock.
    pub fn node_now_ms(&self, id: NodeId) -> u64 {
        let skew = self
            .skews
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        self.now_ms().saturating_add_signed(skew.unwrap_or(0))
    }

    /// Sets node `id`'s clock skew (0: accurate).
    pub fn set_skew(&self, id: NodeId, skew_ms: i64) {
        self.skews
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, skew_ms);
    }

    pub fn rng(&self) -> MutexGuard<'_, SimRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn nodes(&self) -> MutexGuard<'_, BTreeMap<NodeId, NodeSlot>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn running(&self, id: NodeId) -> Option<Running> {
        self.nodes().get(&id).and_then(|s| s.running.clone())
    }

    pub fn disk(&self, id: NodeId) -> Option<Arc<SimDisk>> {
        self.nodes().get(&id).map(|s| s.disk.clone())
    }

    /// Every node that has a disk and is not retired (voters, learners, nodes being added).
    pub fn members(&self) -> Vec<NodeId> {
        let retired = self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.nodes()
            .keys()
            .copied()
            .filter(|id| !retired.contains(id))
            .collect()
    }

    /// The voters as the leader knows them (the founding voters while there is no leader).
    pub fn voters(&self) -> Vec<NodeId> {
        match self.leader() {
            Some(l) => l
                .raft
                .metrics()
                .borrow_watched()
                .membership_config
                .voter_ids()
                .collect(),
            None => self.initial_voters.clone(),
        }
    }

    /// Gives a new node its (empty) disk; its id is one never used before.
    pub fn add_node(&self) -> NodeId {
        let disk = Arc::new(SimDisk::new(self.rng().fork()));
        let mut nodes = self.nodes();
        let id = nodes.keys().next_back().map_or(1, |last| last + 1);
        let slot = NodeSlot {
            disk,
            running: None,
            incarnations: 0,
        };
        nodes.insert(id, slot);
        id
    }

    /// Takes a removed node out for good.
    pub fn retire(&self, id: NodeId) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    pub fn is_retired(&self, id: NodeId) -> bool {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    /// The node that leads now (by its own metrics), if it runs.
    pub fn leader(&self) -> Option<Running> {
        let up: Vec<Running> = self
            .nodes()
            .values()
            .filter_map(|s| s.running.clone())
            .collect();
        up.into_iter().find(|r| {
            let m = r.raft.metrics().borrow_watched().clone();
            m.current_leader == Some(m.id) && m.state.is_leader()
        })
    }

    /// Reads the leader's applied state (`None` without a leader).
    pub fn leader_state<T>(&self, f: impl FnOnce(&Replica) -> T) -> Option<T> {
        self.leader().map(|r| f(&r.replica()))
    }

    /// Records an event in the trace (hashed always, kept with `--trace`).
    pub fn event(&self, text: impl FnOnce() -> String) {
        self.trace.record(self.elapsed_ms(), text);
    }
}
