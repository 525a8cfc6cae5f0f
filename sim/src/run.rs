//! One seed, start to end: boot a cluster, run the workload under the fault schedule, heal,
//! settle, judge. The seed decides everything; the same seed replays the same run.

use std::cell::RefCell;
use std::sync::Arc;

use crate::bugs::Bug;
use crate::cluster::Cluster;
use crate::rng::SimRng;
use crate::types::SimRuntime;
use crate::workload::Workload;
use crate::{checker, faults, node, settle};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub nodes: usize,
    pub bug: Option<Bug>,
    /// How long the faults go on, in simulated milliseconds.
    pub chaos_ms: u64,
    /// Keep the trace's lines (its hash is always computed).
    pub keep_trace: bool,
}

/// What one seed gave.
#[derive(Debug, Clone)]
pub struct SeedResult {
    pub seed: u64,
    /// The first broken rule, or a panic, if any.
    pub violation: Option<String>,
    pub sim_ms: u64,
    pub trace_hash: u64,
    pub events: u64,
    pub trace: Vec<String>,
}

thread_local! {
    /// Panics of the run on this thread (every task of a run runs on the thread that runs
    /// it); `None` outside a run.
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Makes a panic inside a run fail the seed (recorded, not printed); panics elsewhere go to
/// the hook that was there before. Installed once, by the first run.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let recorded = PANICS.with(|p| match p.borrow_mut().as_mut() {
                Some(panics) => {
                    panics.push(describe_panic(info));
                    true
                }
                None => false,
            });
            if !recorded {
                previous(info);
            }
        }));
    });
}

fn describe_panic(info: &std::panic::PanicHookInfo<'_>) -> String {
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let text = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("{text}{at}")
}

/// Runs one seed on its own single-threaded runtime with a paused clock.
pub fn run_seed(config: &RunConfig, seed: u64) -> SeedResult {
    install_panic_hook();
    PANICS.with(|p| *p.borrow_mut() = Some(Vec::new()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build();
    let mut result = match runtime {
        Ok(rt) => rt.block_on(SimRuntime::scope(seed, simulate(config.clone(), seed))),
        Err(e) => SeedResult {
            seed,
            violation: Some(format!("could not build a runtime: {e}")),
            sim_ms: 0,
            trace_hash: 0,
            events: 0,
            trace: Vec::new(),
        },
    };
    let panics = PANICS.with(|p| p.borrow_mut().take()).unwrap_or_default();
    if let Some(first) = panics.first()
        && result.violation.is_none()
    {
        result.violation = Some(format!("panic in the simulated cluster: {first}"));
    }
    result
}

async fn simulate(config: RunConfig, seed: u64) -> SeedResult {
    // Tokio's timer counts whole milliseconds from the moment its driver started, a moment
    // the paused clock does not share; the first sleep moves the clock onto that grid, so
    // every run then sees the same times.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let mut rng = SimRng::new(seed);
    let cluster = Arc::new(Cluster::new(
        config.nodes,
        &mut rng,
        config.bug,
        config.keep_trace,
    ));
    let violation = drive(&cluster, &config, &mut rng).await.err();
    SeedResult {
        seed,
        violation,
        sim_ms: cluster.elapsed_ms(),
        trace_hash: cluster.trace.hash(),
        events: cluster.trace.events(),
        trace: cluster.trace.lines(),
    }
}

async fn drive(cluster: &Arc<Cluster>, config: &RunConfig, rng: &mut SimRng) -> Result<(), String> {
    for id in cluster.initial_voters.clone() {
        node::start(cluster, id).await?;
    }
    node::initialize(cluster).await?;
    let workload = Workload::new(cluster.clone());
    workload.create_topics(rng, 20_000).await?;
    workload.spawn_all(rng);
    let until = cluster.elapsed_ms() + config.chaos_ms;
    faults::nemesis(cluster.clone(), rng.fork(), until).await;
    faults::heal_all(cluster).await;
    let replicas = settle::settle(&workload).await?;
    for id in cluster.members() {
        if let Some(disk) = cluster.disk(id) {
            let snapshot = disk.read(|i| i.snapshot.as_ref().map(|s| s.meta.last_log_id));
            let purged = crate::log_store::purged(&disk);
            cluster.event(|| {
                format!("node {id} ends with snapshot {snapshot:?}, log purged to {purged:?}")
            });
        }
    }
    let history = workload.history();
    checker::check(&history, &replicas).map_err(|v| match log_difference(cluster) {
        Some(d) => format!("{v}; {d}"),
        None => v,
    })
}

/// The first log index at which two nodes' disks hold different entries (for a failed seed).
fn log_difference(cluster: &Cluster) -> Option<String> {
    let logs: Vec<(u64, std::collections::BTreeMap<u64, String>)> = cluster
        .members()
        .iter()
        .filter_map(|id| {
            let disk = cluster.disk(*id)?;
            let log = crate::log_store::read_all(&disk)
                .ok()?
                .into_iter()
                .map(|e| (e.log_id.index, format!("{e:?}")))
                .collect();
            Some((*id, log))
        })
        .collect();
    let (first, reference) = logs.first()?;
    for (id, log) in &logs[1..] {
        let differs = log
            .iter()
            .find(|(at, e)| reference.get(at).is_some_and(|r| r != *e));
        if let Some((at, entry)) = differs {
            return Some(format!(
                "logs differ first at index {at}: node {id} has {entry:.300} / node {first} has {:.300}",
                reference[at]
            ));
        }
    }
    None
}
