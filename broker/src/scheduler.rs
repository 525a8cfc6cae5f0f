//! The leader-only scheduler: sends due check-backs and rolls back transactions whose checks
//! are exhausted or whose lifetime is over; moves messages that used up their deliveries to
//! dead-letter topics; trims messages past their topic's retention.
//!
//! It runs while this node is the leader (started and stopped by openraft's leader-change
//! hooks). Everything it decides goes through Raft as one fenced `TxnTimers` entry per tick:
//! the entry is accepted only while the leadership it was proposed under still holds, and the
//! state machine re-validates every item against the entry's time. Check counts and next-check
//! times are replicated, so a new leader continues exactly where the old one stopped.

use std::sync::Arc;
use std::time::Duration;

use txmq_proto::client::CheckRequest;
use txmq_raft_store::StateReader;
use txmq_raft_store::types::alias::CommittedLeaderId;
use txmq_state::{CommandResult, DueAction, Operation};

use crate::checkers::CheckerRegistry;
use crate::clock::now_ms;
use crate::proposer::Proposer;

/// How often the scheduler looks for due transactions.
pub const TICK: Duration = Duration::from_millis(200);
/// The most transactions handled per tick (bounds one entry's size).
pub const MAX_PER_TICK: usize = 512;
/// Dead-lettering and retention run every this many ticks.
const HOUSEKEEPING_EVERY: u64 = 5;
/// The most messages dead-lettered per housekeeping round.
const MAX_DEAD_LETTER: usize = 256;
/// The most rows examined per queue per retention round.
const MAX_TRIM_ROWS: usize = 2048;

pub struct Scheduler {
    /// This node's data volume; the other voters report theirs in their status.
    pub disk: Arc<crate::disk::DiskMonitor>,
    pub raft: txmq_raft_store::Raft,
    pub routes: Arc<crate::network::PeerRoutes>,
    pub disk_high_water: f64,
    pub proposer: Proposer,
    pub reader: StateReader,
    pub checkers: Arc<CheckerRegistry>,
    /// Where other nodes hold check-back channels (RocketMQ producers' Telemetry streams stay
    /// on whichever node they reached).
    pub directory: Arc<crate::peer_directory::PeerDirectory>,
}

impl Scheduler {
    /// Runs until aborted (on leadership loss).
    pub async fn run(self, leader: CommittedLeaderId) {
        tracing::info!(?leader, "transaction scheduler started");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u64.. {
            tick.tick().await;
            if let Err(e) = self.tick(leader).await {
                tracing::warn!("transaction scheduler: {e}");
            }
            if round % HOUSEKEEPING_EVERY == 0 {
                if let Err(e) = self.dead_letter(leader).await {
                    tracing::warn!("dead-lettering: {e}");
                }
                if let Err(e) = self.retention(leader).await {
                    tracing::warn!("retention: {e}");
                }
                if let Err(e) = self.disk_pressure(leader).await {
                    tracing::warn!("disk high-water trim: {e}");
                }
            }
        }
    }

    async fn tick(&self, leader: CommittedLeaderId) -> Result<(), crate::op_error::OpError> {
        let now = now_ms();
        let mut checks = Vec::new();
        let mut expirations = Vec::new();
        for r in self.reader.due_transactions(now, MAX_PER_TICK) {
            if r.due_action(now) == DueAction::Expire {
                expirations.push(r.id.to_string());
            } else if self.checkers.has_instances(&r.group)
                || !self.directory.nodes_with_group(&r.group, 0).is_empty()
            {
                checks.push(r.id.to_string());
            }
            // Otherwise: no instance of the group is connected; the attempt is not used up.
        }
        if checks.is_empty() && expirations.is_empty() {
            return Ok(());
        }
        let op = Operation::TxnTimers {
            checks,
            expirations,
        };
        let CommandResult::TimersApplied {
            checks,
            rolled_back,
        } = self.proposer.write_fenced(op, leader).await?
        else {
            return Ok(());
        };
        let mut tally = crate::decision_metrics::DecisionTally::default();
        for (id, reason) in &rolled_back {
            tracing::info!(txn = %id, reason = reason.as_str(), "transaction rolled back by the broker");
            let created = self.reader.transaction(id).map(|r| r.created_ms);
            tally.add("rolled_back", reason.as_str(), created);
        }
        tally.record();
        for (id, attempt) in checks {
            self.send_check(&id, attempt);
        }
        Ok(())
    }

    /// Moves expired leases that used up their deliveries to the group's dead-letter topic.
    async fn dead_letter(&self, leader: CommittedLeaderId) -> Result<(), crate::op_error::OpError> {
        let found = self
            .reader
            .dead_letter_candidates(now_ms(), MAX_DEAD_LETTER)
            .map_err(internal)?;
        for (group, topic, items) in found {
            let op = Operation::DeadLetter {
                group: group.clone(),
                topic: topic.clone(),
                items,
                on_request: false,
            };
            if let CommandResult::DeadLettered(n) = self.proposer.write_fenced(op, leader).await?
                && n > 0
            {
                tracing::info!(%group, %topic, messages = n, "moved to the dead-letter topic");
                metrics::counter!("txmq_messages_dead_lettered_total").increment(n);
            }
        }
        Ok(())
    }

    /// Trims messages past their topic's retention time or size.
    async fn retention(&self, leader: CommittedLeaderId) -> Result<(), crate::op_error::OpError> {
        let trims = self
            .reader
            .retention_trims(now_ms(), MAX_TRIM_ROWS)
            .map_err(internal)?;
        for (topic, trims) in trims {
            let op = Operation::Trim {
                topic: topic.clone(),
                trims,
            };
            if let CommandResult::Trimmed(n) = self.proposer.write_fenced(op, leader).await? {
                tracing::debug!(%topic, messages = n, "retention trimmed");
            }
        }
        Ok(())
    }

    /// When any voter's volume is above the disk high-water mark, trims the oldest messages
    /// across topics (up to [`MAX_TRIM_ROWS`] per round) rather than letting that voter's
    /// writes fail: the fullest voter decides, so a follower with a small disk is protected
    /// too. Every trim is logged with how much and why, and counted.
    async fn disk_pressure(
        &self,
        leader: CommittedLeaderId,
    ) -> Result<(), crate::op_error::OpError> {
        let disks = crate::status::voter_disks(&self.raft, &self.routes, &self.disk).await;
        let Some((node, used)) = fullest_voter(&disks) else {
            return Ok(());
        };
        if used <= self.disk_high_water {
            return Ok(());
        }
        let Some((topic, trim)) = self
            .reader
            .oldest_first_trim(MAX_TRIM_ROWS as u64)
            .map_err(internal)?
        else {
            return Ok(());
        };
        tracing::warn!(
            node,
            used,
            high_water = self.disk_high_water,
            %topic,
            queue = trim.queue,
            up_to = trim.new_low,
            bytes = trim.bytes,
            "a voter's disk is above the high-water mark: deleting the oldest messages"
        );
        metrics::counter!("txmq_storage_high_water_trims_total").increment(1);
        metrics::counter!("txmq_storage_high_water_trimmed_bytes_total").increment(trim.bytes);
        self.proposer
            .write_fenced(
                Operation::Trim {
                    topic,
                    trims: vec![trim],
                },
                leader,
            )
            .await?;
        Ok(())
    }

    fn send_check(&self, id: &str, attempt: u32) {
        let Some(record) = self.reader.transaction(id) else {
            return;
        };
        let message_id = record.message_id();
        let Some(message) = record.message else {
            return;
        };
        let request = CheckRequest {
            transaction_id: record.id.to_string(),
            message_id,
            group: record.group.clone(),
            topic: record.topic,
            body: message.body.into(),
            key: message.key,
            tag: message.tag,
            properties: message.properties.into_iter().collect(),
            attempt,
        };
        if self.checkers.send(request.clone()) {
            count_check(true);
            tracing::info!(txn = %id, group = %record.group, attempt, "check-back sent");
            return;
        }
        let nodes = self
            .directory
            .nodes_with_group(&record.group, attempt as usize);
        let routes = self.routes.clone();
        // Off the tick: another node's answer must not hold up the timers.
        tokio::spawn(async move {
            let delivered_by = deliver_elsewhere(&routes, &nodes, &request).await;
            count_check(delivered_by.is_some());
            tracing::info!(txn = %request.transaction_id, group = %request.group, attempt, via = delivered_by.as_deref().unwrap_or("nowhere"), "check-back sent through another node");
        });
    }
}

fn count_check(delivered: bool) {
    if delivered {
        metrics::counter!("txmq_txn_checks_sent_total").increment(1);
    } else {
        metrics::counter!("txmq_txn_checks_undeliverable_total").increment(1);
    }
}

/// Hands a check to the first of `nodes` (peer addresses) whose channel takes it; the node
/// that did.
async fn deliver_elsewhere(
    routes: &crate::network::PeerRoutes,
    nodes: &[String],
    check: &CheckRequest,
) -> Option<String> {
    let encoded = prost::Message::encode_to_vec(check);
    for addr in nodes {
        let Ok(mut client) = routes.client(addr) else {
            continue;
        };
        let mut request = tonic::Request::new(txmq_proto::peer::DeliverCheckRequest {
            check: encoded.clone().into(),
        });
        request.set_timeout(Duration::from_secs(2));
        if let Ok(answer) = client.deliver_check(request).await
            && answer.into_inner().delivered
        {
            return Some(addr.clone());
        }
    }
    None
}

fn internal(e: impl std::fmt::Display) -> crate::op_error::OpError {
    crate::op_error::OpError::Internal(e.to_string())
}

/// The voter whose volume is fullest, and its used fraction.
pub fn fullest_voter(disks: &[(u64, crate::disk::DiskSpace)]) -> Option<(u64, f64)> {
    disks
        .iter()
        .map(|(id, d)| (*id, d.used_fraction()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskSpace;

    #[test]
    fn the_fullest_voter_decides() {
        let disk = |total, free| DiskSpace {
            total_bytes: total,
            free_bytes: free,
        };
        let disks = [
            (1, disk(1000, 500)),
            (2, disk(100, 5)),
            (3, disk(10_000, 9_000)),
        ];
        assert_eq!(fullest_voter(&disks), Some((2, 0.95)));
        assert_eq!(fullest_voter(&[]), None);
    }
}
