//! Prometheus metrics: the recorder, every metric's description, and the background tasks that
//! keep the gauges current. Names are `txmq_*`, in base units, counters end in `_total`,
//! histograms have explicit buckets, and labels are bounded (methods, codes, outcomes, peers,
//! and at most [`MAX_GROUP_SERIES`] consumer groups).

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use txmq_raft_store::{Raft, StateReader};

use crate::checkers::CheckerRegistry;

/// Latency buckets (seconds) for request and decision timings.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for fsync and append durations (fast disks to slow ones).
const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5,
];
/// Buckets for the time from half message to decision (seconds to hours).
const DECISION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];
/// Buckets for the number of operations per batched entry.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// At most this many (group, topic) series for the consumer gauges.
pub const MAX_GROUP_SERIES: usize = 1000;

/// Installs the global recorder. Returns `None` if one is installed already (tests in one
/// process), in which case the existing one keeps recording.
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Suffix("fsync_duration_seconds".into()),
                FSYNC_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Suffix("append_duration_seconds".into()),
                FSYNC_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("txmq_txn_time_to_decision_seconds".into()),
                DECISION_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("txmq_batch_operations".into()), BATCH_BUCKETS)
        })
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    describe();
    gauge!("txmq_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

/// Every metric txmq exports, with its help text. Long by design: a table, one entry per
/// metric, that an operator reads top to bottom.
fn describe() {
    describe_gauge!(
        "txmq_build_info",
        "Build information; the value is always 1."
    );
    // Raft.
    describe_histogram!(
        "txmq_write_queue_seconds",
        Unit::Seconds,
        "Time a client write waited in the leader's batcher for a free entry slot."
    );
    describe_histogram!(
        "txmq_write_commit_seconds",
        Unit::Seconds,
        "Time from proposing a batched entry to its result on the leader (replicated to a quorum, fsynced, applied)."
    );
    describe_histogram!(
        "txmq_batch_operations",
        "Client operations packed into one Raft entry by the leader's batcher."
    );
    describe_gauge!("txmq_raft_has_leader", "1 when this node knows a leader.");
    describe_gauge!("txmq_raft_is_leader", "1 when this node is the leader.");
    describe_gauge!("txmq_raft_term", "The current Raft term.");
    describe_gauge!(
        "txmq_peer_reachable",
        "1 while this node reaches the peer (label peer: its node id), 0 while attempts to reach it fail."
    );
    describe_gauge!(
        "txmq_raft_commit_index",
        "The highest log index this node knows committed."
    );
    describe_gauge!(
        "txmq_raft_applied_index",
        "The highest log index applied to this node's state."
    );
    describe_gauge!(
        "txmq_raft_last_log_index",
        "The highest log index in this node's log."
    );
    describe_gauge!("txmq_raft_voters", "Voters in the current membership.");
    describe_counter!(
        "txmq_raft_leader_changes_total",
        "Times this node saw the leader change."
    );
    describe_counter!(
        "txmq_raft_proposals_total",
        "Proposals made by this node, by outcome (committed, failed)."
    );
    describe_counter!(
        "txmq_raft_log_entries_appended_total",
        "Entries appended to this node's log."
    );
    describe_histogram!(
        "txmq_raft_log_append_duration_seconds",
        Unit::Seconds,
        "From writing one log append to its fsync completing (group commit: waits for the fsync in progress, then its own)."
    );
    describe_histogram!(
        "txmq_state_checkpoint_duration_seconds",
        Unit::Seconds,
        "Time of one state checkpoint: sync of the queue files, then the batch of rows written to sled."
    );
    describe_histogram!(
        "txmq_state_checkpoint_rows",
        "Rows one state checkpoint wrote to sled (changes coalesced since the previous one)."
    );
    describe_histogram!(
        "txmq_raft_log_appends_per_fsync",
        "Log appends made durable by one fsync (group commit)."
    );
    describe_histogram!(
        "txmq_raft_log_fsync_duration_seconds",
        Unit::Seconds,
        "Time of one fsync of the log's active segment file."
    );
    describe_histogram!(
        "txmq_raft_log_purge_duration_seconds",
        Unit::Seconds,
        "Time one purge of the log took before returning (openraft waits for it): the state checkpoint and the database flush that must precede it."
    );
    describe_counter!(
        "txmq_raft_snapshots_built_total",
        "Snapshots this node built."
    );
    describe_histogram!(
        "txmq_raft_snapshot_build_duration_seconds",
        Unit::Seconds,
        "Time to build a snapshot."
    );
    describe_counter!(
        "txmq_raft_snapshots_installed_total",
        "Snapshots this node installed from the leader."
    );
    describe_gauge!(
        "txmq_raft_peer_lag_entries",
        "On the leader: log entries each peer is behind the leader's last log index."
    );
    // Transactions.
    describe_counter!(
        "txmq_txn_half_messages_total",
        "Half messages stored through this node."
    );
    describe_counter!(
        "txmq_txn_decisions_total",
        "Transaction decisions applied through this node, by outcome and source."
    );
    describe_counter!(
        "txmq_txn_checks_sent_total",
        "Check-backs sent by this node (as leader)."
    );
    describe_counter!(
        "txmq_txn_checks_answered_total",
        "Check-back answers received by this node, by answer."
    );
    describe_counter!(
        "txmq_rocketmq_requests_total",
        "RocketMQ-protocol requests answered by this node, by RPC and RocketMQ status code."
    );
    describe_gauge!(
        "txmq_rocketmq_telemetry_streams",
        "Open RocketMQ Telemetry streams (about one per client and node)."
    );
    describe_counter!(
        "txmq_rocketmq_checks_pushed_total",
        "Check-backs pushed to RocketMQ producers over their Telemetry streams."
    );
    describe_counter!(
        "txmq_txn_checks_undeliverable_total",
        "Checks recorded but not handed to any instance (all queues full or gone)."
    );
    describe_gauge!(
        "txmq_long_polls_held",
        "Receives waiting for messages on this node (bounded by --max-long-polls)."
    );
    describe_counter!(
        "txmq_limit_refusals_total",
        "Requests refused because a bound was reached, by limit."
    );
    describe_gauge!("txmq_txn_pending", "Pending (undecided) transactions.");
    describe_gauge!(
        "txmq_txn_oldest_pending_age_seconds",
        "Age of the oldest pending transaction."
    );
    describe_histogram!(
        "txmq_txn_time_to_decision_seconds",
        Unit::Seconds,
        "Time from half message to commit or rollback."
    );
    describe_gauge!(
        "txmq_txn_checkers_connected",
        "Producer instances connected for check-backs (on the leader)."
    );
    // Messages.
    describe_counter!(
        "txmq_messages_produced_total",
        "Messages made visible through this node, by type (normal, transaction)."
    );
    describe_counter!(
        "txmq_messages_produced_bytes_total",
        "Body bytes of the messages produced through this node."
    );
    describe_counter!(
        "txmq_messages_delivered_total",
        "Messages delivered to consumer groups by this node."
    );
    describe_counter!(
        "txmq_messages_delivered_bytes_total",
        "Body bytes delivered to consumer groups by this node."
    );
    describe_counter!(
        "txmq_messages_redelivered_total",
        "Deliveries with an attempt above 1, by this node."
    );
    describe_counter!(
        "txmq_messages_released_total",
        "Leased messages this node gave back unreturned (its response was full, or it could not \
         serve them): visible again at once, their delivery attempt not counted."
    );
    describe_counter!(
        "txmq_messages_acked_total",
        "Messages acknowledged through this node."
    );
    describe_counter!(
        "txmq_messages_dead_lettered_total",
        "Messages moved to dead-letter topics (by this node as leader)."
    );
    describe_gauge!(
        "txmq_consumer_lag_messages",
        "Messages not yet acknowledged, per consumer group and topic."
    );
    describe_gauge!(
        "txmq_consumer_in_flight_messages",
        "Messages leased and not yet acknowledged, per consumer group and topic."
    );
    // gRPC and storage.
    describe_counter!(
        "txmq_grpc_requests_total",
        "Client API requests, by method and gRPC code."
    );
    describe_histogram!(
        "txmq_grpc_request_duration_seconds",
        Unit::Seconds,
        "Client API request latency, by method."
    );
    describe_gauge!(
        "txmq_storage_size_bytes",
        Unit::Bytes,
        "Disk space used by this node's database."
    );
    describe_gauge!(
        "txmq_storage_log_entries",
        "Entries held in this node's Raft log."
    );
    describe_counter!(
        "txmq_storage_high_water_trims_total",
        "Trims of the oldest messages because a voter's disk passed the high-water mark (leader)."
    );
    describe_counter!(
        "txmq_storage_high_water_trimmed_bytes_total",
        Unit::Bytes,
        "Body bytes of the messages deleted because a voter's disk passed the high-water mark (leader)."
    );
    describe_gauge!(
        "txmq_storage_full",
        "1 while free space on the data volume is below the reserve: the node takes no new log entries."
    );
    describe_gauge!(
        "txmq_raft_stopped",
        "1 once Raft stopped after a fatal error (storage, usually): only a restart helps."
    );
    describe_gauge!(
        "txmq_disk_free_bytes",
        Unit::Bytes,
        "Free bytes on the data volume (available to the node)."
    );
    describe_gauge!(
        "txmq_disk_total_bytes",
        Unit::Bytes,
        "Size of the data volume."
    );
    describe_counter!(
        "txmq_accept_errors_total",
        "Failed accepts of a connection by port (client, peer), e.g. out of descriptors; each is followed by a pause."
    );
}

/// Follows Raft's metrics: gauges, leader changes (counted and logged), peer lag.
pub async fn track_raft(raft: Raft) {
    let mut watch = raft.metrics();
    let mut last_leader = None;
    loop {
        let m = watch.borrow_watched().clone();
        gauge!("txmq_raft_has_leader").set(if m.current_leader.is_some() { 1.0 } else { 0.0 });
        gauge!("txmq_raft_is_leader").set(if m.state == ServerState::Leader {
            1.0
        } else {
            0.0
        });
        gauge!("txmq_raft_term").set(m.current_term as f64);
        gauge!("txmq_raft_commit_index")
            .set(m.local_committed.map(|c| c.index).unwrap_or(0) as f64);
        gauge!("txmq_raft_applied_index").set(m.last_applied.map(|c| c.index).unwrap_or(0) as f64);
        gauge!("txmq_raft_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
        gauge!("txmq_raft_voters").set(m.membership_config.voter_ids().count() as f64);
        if m.current_leader != last_leader {
            if last_leader.is_some() || m.current_leader.is_some() {
                counter!("txmq_raft_leader_changes_total").increment(1);
            }
            tracing::info!(leader = ?m.current_leader, term = m.current_term, "leader changed");
            last_leader = m.current_leader;
        }
        if let Some(replication) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            for (peer, matched) in replication.iter() {
                let matched = matched.as_ref().map(|l| l.index).unwrap_or(0);
                gauge!("txmq_raft_peer_lag_entries", "peer" => peer.to_string())
                    .set(last.saturating_sub(matched) as f64);
            }
        }
        // At most ten updates a second: the metrics change with every commit, and copying
        // them and setting every gauge each time cost the leader a few percent of its CPU.
        // Changes meanwhile are not lost: `changed` then returns at once with the latest.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Every few seconds: exporter upkeep and the gauges computed from state.
pub async fn refresh_periodically(
    handle: Option<PrometheusHandle>,
    reader: StateReader,
    size: txmq_raft_store::storage::StorageHandle,
    log: txmq_raft_store::LogStore,
    checkers: std::sync::Arc<CheckerRegistry>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        if let Some(h) = &handle {
            h.run_upkeep();
        }
        let now = crate::clock::now_ms();
        gauge!("txmq_txn_pending").set(reader.pending_transaction_count() as f64);
        let oldest = reader
            .pending_transactions(None, 1)
            .first()
            .map(|t| now.saturating_sub(t.created_ms))
            .unwrap_or(0);
        gauge!("txmq_txn_oldest_pending_age_seconds").set(oldest as f64 / 1000.0);
        gauge!("txmq_txn_checkers_connected").set(checkers.instance_count() as f64);
        for g in reader.groups().into_iter().take(MAX_GROUP_SERIES) {
            let Some(topic) = reader.topic(&g.topic) else {
                continue;
            };
            let lag: u64 = g
                .queues
                .iter()
                .enumerate()
                .map(|(q, p)| p.lag(topic.next_offsets[q]))
                .sum();
            let labels = [("group", g.group.clone()), ("topic", g.topic.clone())];
            gauge!("txmq_consumer_lag_messages", &labels).set(lag as f64);
            gauge!("txmq_consumer_in_flight_messages", &labels).set(g.in_flight() as f64);
        }
        if let Ok(total) = size.total_bytes() {
            gauge!("txmq_storage_size_bytes").set(total as f64);
        }
        gauge!("txmq_storage_log_entries").set(log.entry_count() as f64);
    }
}
