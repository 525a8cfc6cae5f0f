//! Snapshots when the Raft log grows large on disk, not only after a number of entries.
//!
//! A snapshot lets the log before it be purged; building one encodes every metadata row (with a
//! full decided window of transactions, ~15 MB) on every node. Counted in entries alone, the
//! rule was wrong both ways: under a moderate load of small entries (a batch of a few
//! operations each) 5,000 entries were a few megabytes of log, yet every node rebuilt its
//! snapshot every three seconds — the tail latency of a steady transactional load at half the
//! maximum rate came from those builds — while 5,000 entries of large messages could be
//! gigabytes. So openraft counts entries up to a high bound (`--snapshot-logs`) and this task
//! asks for a snapshot once the log's files pass `--snapshot-log-bytes`.

use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use txmq_raft_store::{LogStore, Raft};

/// How often the log's size is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a snapshot asked for may take to show up before it is asked for again (openraft
/// ignores a request while it builds another snapshot, and a build can fail).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Entries applied since the last snapshot below which a new one is not asked for: the purge
/// that follows a snapshot would free too little (the log may be over the size because of the
/// entries kept after a snapshot, `--logs-to-keep`, alone).
pub const MIN_NEW_ENTRIES: u64 = 1_000;

/// Whether the log's size calls for a snapshot.
pub fn snapshot_due(
    log_bytes: u64,
    max_log_bytes: u64,
    applied_index: u64,
    snapshot_index: Option<u64>,
) -> bool {
    let since_snapshot = applied_index.saturating_sub(snapshot_index.unwrap_or(0));
    log_bytes > max_log_bytes && since_snapshot >= MIN_NEW_ENTRIES
}

/// Asks openraft for a snapshot whenever [`snapshot_due`]; runs until the node stops.
pub async fn run(raft: Raft, log: LogStore, max_log_bytes: u64) {
    // The applied index when a snapshot was last asked for, and when.
    let mut asked: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let (applied, snapshot) = {
            let m = raft.metrics().borrow_watched().clone();
            (
                m.last_applied.map(|l| l.index).unwrap_or(0),
                m.snapshot.map(|l| l.index),
            )
        };
        // Ask once per snapshot: until the one asked for is built (and the log purged after
        // it), the log stays large, and asking again would only queue another build.
        let waiting = asked.is_some_and(|(at, when)| {
            snapshot.is_none_or(|s| s < at) && when.elapsed() < ASK_AGAIN_AFTER
        });
        if waiting || !snapshot_due(log.disk_bytes(), max_log_bytes, applied, snapshot) {
            continue;
        }
        tracing::debug!(
            applied,
            ?snapshot,
            "the raft log passed its size limit: snapshot"
        );
        if raft.trigger().snapshot().await.is_err() {
            return; // the Raft core has stopped: so does the node
        }
        asked = Some((applied, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_log_over_its_size_with_enough_new_entries_is_due() {
        assert!(snapshot_due(300 * MIB, 256 * MIB, 12_000, Some(5_000)));
        assert!(snapshot_due(300 * MIB, 256 * MIB, MIN_NEW_ENTRIES, None));
    }

    #[test]
    fn a_small_log_is_not_due() {
        assert!(!snapshot_due(100 * MIB, 256 * MIB, 1_000_000, Some(5_000)));
    }

    #[test]
    fn a_large_log_with_few_entries_since_the_last_snapshot_is_not_due() {
        // Big entries kept after the last snapshot: a new one would purge almost nothing.
        assert!(!snapshot_due(
            300 * MIB,
            256 * MIB,
            5_000 + MIN_NEW_ENTRIES - 1,
            Some(5_000)
        ));
    }
}
