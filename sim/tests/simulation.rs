//! The simulator's own guarantees: a seed replays exactly, seeds that once found real bugs
//! stay green, and a planted bug is caught. (The long runs — hundreds of seeds on 3 and 5
//! nodes, every planted bug — are in `scripts/sim.sh`, on a release build.)

use txmq_sim::bugs::Bug;
use txmq_sim::run::{RunConfig, run_seed};

fn config(nodes: usize, bug: Option<Bug>) -> RunConfig {
    RunConfig {
        nodes,
        bug,
        chaos_ms: 15_000,
        keep_trace: false,
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let first = run_seed(&config(3, None), 7);
    let again = run_seed(&config(3, None), 7);
    assert_eq!(first.violation, None);
    assert!(
        first.events > 100,
        "a run records its events ({})",
        first.events
    );
    assert_eq!(first.trace_hash, again.trace_hash, "seed 7 took two paths");
    assert_eq!(first.events, again.events);
    assert_eq!(first.sim_ms, again.sim_ms);
    let other = run_seed(&config(3, None), 8);
    assert_ne!(first.trace_hash, other.trace_hash, "two seeds gave one run");
}

/// Seeds that found real bugs, each with what it found. They must pass from now on. (A seed
/// stands for its fault schedule under the workload of its day: when the workload or the
/// faults change, re-find seeds that fail with the fix reverted and list them here.)
const REGRESSIONS: &[(u64, usize, &str)] = &[
    (266, 3, LEADER_RESTORE),
    (285, 3, LEADER_RESTORE),
    (655, 3, COMMITTED_PAST_LOG),
    (685, 3, COMMITTED_PAST_LOG),
    (10, 3, INSTALL_CUT_SHORT),
    (30, 3, INSTALL_CUT_SHORT),
    (323, 3, CHECKPOINT_AFTER_FAILED_APPLY),
    // Two findings no seed of today's schedule reproduces, tested on the real stores instead:
    // a segment file ending inside its last frame's header taken for damage (seed 1000002 on
    // 5 nodes, before followers served receives):
    // `raft-store/tests/log_files.rs::a_file_ending_inside_the_last_header_is_a_torn_tail`; a
    // snapshot install deleting queue files before the rows naming them (seeds 238, and 126 on
    // 5 nodes, before the next fix): `raft-store/tests/failed_writes.rs`.
];

/// Found first as seed 105, before snapshots were simulated; fixed in
/// `txmq_raft_store::with_safety_settings`.
const LEADER_RESTORE: &str = "a leader that lost unsynced entries in a power loss resumed its \
     term after restarting (openraft's enable_leader_restore) and wrote other entries under log \
     ids its followers held: replicas applied different commands at the same index";

/// Found once the real segment files ran on the simulated disk; fixed in
/// `txmq_raft_store::log::log_core::committed_within_log`.
const COMMITTED_PAST_LOG: &str = "a power loss kept a follower's saved committed index but not \
     the unsynced log entries it pointed at: the node could never start again (openraft read \
     entries that were gone)";

/// Found once the real state stores ran on the simulated disk; fixed in
/// `txmq_raft_store::machine::snapshot_install` (`keep_as_current`).
const INSTALL_CUT_SHORT: &str = "a snapshot install cut short (a failed write, a crash) left \
     the stores emptied and only the node's older manifest, whose messages it had deleted: \
     the node could never start again";

/// Found once the install was fixed; fixed in `Checkpointer::refuse_from_now`.
const CHECKPOINT_AFTER_FAILED_APPLY: &str = "an entry applied in memory whose messages could \
     not be written (ENOSPC) was checkpointed by a checkpoint already under way: the rows named \
     a message never written and the node could never start again";

#[test]
fn seeds_that_found_real_bugs_pass() {
    for (seed, nodes, found) in REGRESSIONS {
        let result = run_seed(&config(*nodes, None), *seed);
        assert_eq!(
            result.violation, None,
            "seed {seed} ({nodes} nodes) once found: {found}"
        );
    }
}

#[test]
fn a_planted_bug_is_caught_and_named() {
    let caught = (0..20)
        .map(|seed| run_seed(&config(3, Some(Bug::FlushBeforeFsync)), seed))
        .find_map(|r| r.violation);
    let violation = caught.expect("flush-before-fsync went unnoticed for 20 seeds");
    assert!(!violation.is_empty());
}
