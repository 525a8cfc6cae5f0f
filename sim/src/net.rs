//! The simulated network: every message between two endpoints (nodes and clients) crosses it,
//! with a random latency, and may be dropped or duplicated or blocked by a partition (one-way
//! partitions included). Independent latencies reorder messages across connections.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use crate::rng::SimRng;

/// An endpoint: a node id, or a client's id (clients are numbered from [`CLIENT_BASE`]).
pub type Endpoint = u64;

/// Client endpoints start here, so they never collide with node ids.
pub const CLIENT_BASE: Endpoint = 1000;

/// What the fault schedule can set on the network.
#[derive(Debug, Clone, Default)]
pub struct NetFaults {
    /// Directed links that carry nothing: `(from, to)`.
    pub blocked: BTreeSet<(Endpoint, Endpoint)>,
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    /// Extra latency on every message, in microseconds (a slow network).
    pub extra_latency_us: u64,
}

/// How one message fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    /// Delivered twice (only requests that are safe to repeat are duplicated by the caller).
    Duplicated,
    Lost,
}

#[derive(Debug)]
struct NetInner {
    faults: NetFaults,
    rng: SimRng,
}

/// The network of one run.
#[derive(Debug)]
pub struct SimNet {
    inner: Mutex<NetInner>,
}

impl SimNet {
    pub fn new(rng: SimRng) -> Self {
        SimNet {
            inner: Mutex::new(NetInner {
                faults: NetFaults::default(),
                rng,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn faults(&self) -> NetFaults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: NetFaults) {
        self.lock().faults = faults;
    }

    /// Carries one message: waits its latency and says whether it arrived. A link blocked when
    /// the message is sent or when it would arrive loses it.
    pub async fn carry(&self, from: Endpoint, to: Endpoint) -> Fate {
        let (fate, latency) = {
            let mut n = self.lock();
            let blocked = n.faults.blocked.contains(&(from, to));
            let (drop_rate, dup_rate) = (n.faults.drop_rate, n.faults.duplicate_rate);
            let latency = n.rng.between(50, 1_500) + n.faults.extra_latency_us;
            let fate = if blocked || (drop_rate > 0.0 && n.rng.chance(drop_rate)) {
                Fate::Lost
            } else if dup_rate > 0.0 && n.rng.chance(dup_rate) {
                Fate::Duplicated
            } else {
                Fate::Delivered
            };
            (fate, Duration::from_micros(latency))
        };
        tokio::time::sleep(latency).await;
        if fate != Fate::Lost && self.lock().faults.blocked.contains(&(from, to)) {
            return Fate::Lost;
        }
        fate
    }
}
