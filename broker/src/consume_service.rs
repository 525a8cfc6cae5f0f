//! The consumer-group part of the client service: receive (with long polling), ack, change
//! invisibility, reset, configure, list and describe. Thin: validate, propose or read, convert.
//!
//! A receive is one Raft entry that leases the offsets (so each message goes to one consumer of
//! the group at a time, cluster-wide); the payloads are then read from *this* node's applied
//! rows once it has applied that entry, so followers carry the read load.

use std::time::Duration;

use tonic::Status;
use txmq_proto::client as pb;
use txmq_raft_store::StateReader;
use txmq_state::{AckOutcome, ResetTarget};
use txmq_state::{CommandResult, Operation, limits};
use txmq_state::{GroupState, TopicMeta};

use crate::clock::now_ms;
use crate::convert;
use crate::long_poll::LongPoll;
use crate::proposer::Proposer;

/// Defaults and bounds of a receive.
pub const DEFAULT_MAX: u32 = 32;
pub const DEFAULT_INVISIBLE: Duration = Duration::from_secs(30);
pub const MAX_INVISIBLE: Duration = Duration::from_secs(12 * 3600);
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long a follower waits to apply the entry of its own receive before giving up.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// What one receive returns, and the receipts of the leases it had no room for.
struct Served {
    messages: Vec<pb::Message>,
    unreturned: Vec<String>,
}

#[derive(Clone)]
pub struct ConsumeService {
    pub proposer: Proposer,
    pub reader: StateReader,
    /// What the messages of one receive or read may take (beyond it a response carries one
    /// message only): the largest message, so any message fits the response limit.
    pub response_bytes: usize,
    /// One permit per receive waiting for messages (`--max-long-polls`).
    pub long_polls: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A receive's place among the node's waiting receives, counted in `txmq_long_polls_held` for
/// as long as it is held (operators see how close the node is to `--max-long-polls`).
struct LongPollSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl LongPollSlot {
    fn held(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!("txmq_long_polls_held").increment(1.0);
        LongPollSlot { _permit: permit }
    }
}

impl Drop for LongPollSlot {
    fn drop(&mut self) {
        metrics::gauge!("txmq_long_polls_held").decrement(1.0);
    }
}

fn validate(group: &str, topic: &str) -> Result<(), Status> {
    limits::validate_name("consumer group", group).map_err(Status::invalid_argument)?;
    limits::validate_name("topic", topic).map_err(Status::invalid_argument)
}

fn invisible(ms: u64) -> Result<u64, Status> {
    let d = if ms == 0 {
        DEFAULT_INVISIBLE
    } else {
        Duration::from_millis(ms)
    };
    if d > MAX_INVISIBLE {
        return Err(Status::invalid_argument(format!(
            "invisible duration may be at most {}h",
            MAX_INVISIBLE.as_secs() / 3600
        )));
    }
    Ok(d.as_millis() as u64)
}

pub fn group_info(g: &GroupState, meta: Option<&TopicMeta>) -> pb::GroupInfo {
    let queues: Vec<pb::GroupQueueInfo> = g
        .queues
        .iter()
        .enumerate()
        .map(|(q, p)| {
            let (low, end) = meta
                .map(|m| (m.low_offsets[q], m.next_offsets[q]))
                .unwrap_or((0, 0));
            pb::GroupQueueInfo {
                queue: q as u32,
                ack_offset: p.ack_offset,
                next_offset: p.next_offset,
                low_offset: low,
                end_offset: end,
                lag: p.lag(end),
                in_flight: p.leases.len() as u64,
                behind_retention: low.saturating_sub(p.ack_offset),
            }
        })
        .collect();
    pb::GroupInfo {
        group: g.group.clone(),
        topic: g.topic.clone(),
        max_delivery_attempts: g.max_delivery_attempts,
        lag: queues.iter().map(|q| q.lag).sum(),
        in_flight: queues.iter().map(|q| q.in_flight).sum(),
        queues,
        skipped_by_retention: g.skipped_by_retention,
        dead_lettered: g.dead_lettered,
        dead_letter_topic: GroupState::dlq_topic(&g.group),
    }
}

impl ConsumeService {
    /// A slot for a receive that may wait (none needed without a wait); past the node's bound
    /// the receive is refused rather than queued, so waiting clients cannot pile up.
    fn long_poll_slot(&self, wait_ms: u64) -> Result<Option<LongPollSlot>, Status> {
        if wait_ms == 0 {
            return Ok(None);
        }
        match self.long_polls.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(LongPollSlot::held(permit))),
            Err(_) => {
                metrics::counter!("txmq_limit_refusals_total", "limit" => "long_polls")
                    .increment(1);
                Err(Status::resource_exhausted(
                    "this node holds as many waiting receives as it allows (--max-long-polls); \
                     retry later, without a wait, or on another node",
                ))
            }
        }
    }

    pub async fn receive(&self, req: pb::ReceiveRequest) -> Result<pb::ReceiveResponse, Status> {
        validate(&req.group, &req.topic)?;
        let max = if req.max == 0 {
            DEFAULT_MAX
        } else {
            req.max.min(1000)
        };
        let invisible_ms = invisible(req.invisible_ms)?;
        let _slot = self.long_poll_slot(req.wait_ms)?;
        let mut poll = LongPoll::new(
            &self.reader,
            Duration::from_millis(req.wait_ms).min(MAX_WAIT),
        );
        loop {
            let (work, wake_at) = self.reader.group_work(&req.group, &req.topic, now_ms());
            // Propose a lease only when this node's applied state shows something to lease (a
            // lagging node sees it as soon as it applies it), or when it does not know the topic
            // (the leader then answers, e.g. with "unknown topic"). Idle long polls cost no entry.
            let unknown_topic = self.reader.topic(&req.topic).is_none();
            if work || unknown_topic {
                let op = Operation::Receive {
                    group: req.group.clone(),
                    topic: req.topic.clone(),
                    max,
                    invisible_ms,
                };
                let (result, index) = self.proposer.write_indexed(op).await?;
                let deliveries = match result {
                    CommandResult::Leased(d) => d,
                    other => return Err(convert::unexpected(other)),
                };
                if !deliveries.is_empty() {
                    return self.read_leased(&req, deliveries, index).await;
                }
            }
            if !poll.wait(wake_at).await {
                return Ok(pb::ReceiveResponse {
                    messages: Vec::new(),
                });
            }
        }
    }

    /// Waits until this node applied the lease entry, then reads the leased payloads locally,
    /// as many as fit in one response. Leases it does not return — the response was full, or
    /// this node could not serve them — are given back at once without using up a delivery
    /// attempt, so a message is never leased to a consumer that cannot see it.
    async fn read_leased(
        &self,
        req: &pb::ReceiveRequest,
        deliveries: Vec<txmq_state::Delivery>,
        index: u64,
    ) -> Result<pb::ReceiveResponse, Status> {
        let mut applied = self.reader.watch_applied_index();
        let caught_up = matches!(
            tokio::time::timeout(APPLY_WAIT, applied.wait_for(|i| *i >= index)).await,
            Ok(Ok(_))
        );
        if !caught_up {
            self.release(req, deliveries.into_iter().map(|d| d.receipt).collect())
                .await;
            return Err(Status::unavailable(
                "this node is too far behind to serve the received messages; they were given back to the group",
            ));
        }
        let all: Vec<String> = deliveries.iter().map(|d| d.receipt.clone()).collect();
        let served = match self.read_deliveries(&req.topic, deliveries) {
            Ok(served) => served,
            Err(status) => {
                self.release(req, all).await;
                return Err(status);
            }
        };
        if !served.unreturned.is_empty() {
            self.release(req, served.unreturned).await;
        }
        Ok(pb::ReceiveResponse {
            messages: served.messages,
        })
    }

    /// The leased messages that fit in one response, and the receipts of those that did not.
    fn read_deliveries(
        &self,
        topic: &str,
        deliveries: Vec<txmq_state::Delivery>,
    ) -> Result<Served, Status> {
        let mut messages = Vec::with_capacity(deliveries.len());
        let mut unreturned = Vec::new();
        let (mut bytes, mut delivered_bytes, mut redelivered) = (0usize, 0u64, 0u64);
        for d in deliveries {
            if !unreturned.is_empty() {
                unreturned.push(d.receipt);
                continue;
            }
            // A message retention removed in between is skipped (the group moves past it).
            let m = match self.reader.message_at(topic, d.queue, d.offset) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => return Err(convert::read_status(e)),
            };
            let size = m.message.response_size();
            if !messages.is_empty() && bytes + size > self.response_bytes {
                unreturned.push(d.receipt);
                continue;
            }
            bytes += size;
            delivered_bytes += m.message.body.len() as u64;
            redelivered += u64::from(d.attempt > 1);
            let mut pb = convert::message_to_pb(m);
            pb.delivery_attempt = d.attempt;
            pb.receipt_handle = d.receipt;
            messages.push(pb);
        }
        // Counted once per receive, not per message (each counter lookup costs).
        metrics::counter!("txmq_messages_delivered_total").increment(messages.len() as u64);
        metrics::counter!("txmq_messages_delivered_bytes_total").increment(delivered_bytes);
        if redelivered > 0 {
            metrics::counter!("txmq_messages_redelivered_total").increment(redelivered);
        }
        Ok(Served {
            messages,
            unreturned,
        })
    }

    /// Gives leases back (best effort: one that is not given back becomes visible again after
    /// its invisible duration, with its attempt counted).
    async fn release(&self, req: &pb::ReceiveRequest, receipts: Vec<String>) {
        let count = receipts.len();
        let op = Operation::Release {
            group: req.group.clone(),
            topic: req.topic.clone(),
            receipts,
        };
        match self.proposer.write(op).await {
            Ok(_) => metrics::counter!("txmq_messages_released_total").increment(count as u64),
            Err(e) => tracing::warn!(
                group = %req.group,
                topic = %req.topic,
                count,
                "could not give unreturned leases back; they return after their invisible duration: {e}"
            ),
        }
    }

    pub async fn ack(&self, req: pb::AckRequest) -> Result<pb::AckResponse, Status> {
        validate(&req.group, &req.topic)?;
        if req.receipt_handles.is_empty() || req.receipt_handles.len() > 1000 {
            return Err(Status::invalid_argument(
                "ack 1 to 1000 receipt handles at a time",
            ));
        }
        let op = Operation::Ack {
            group: req.group,
            topic: req.topic,
            receipts: req.receipt_handles.clone(),
        };
        let outcomes = match self.proposer.write(op).await? {
            CommandResult::Acked(o) => o,
            other => return Err(convert::unexpected(other)),
        };
        let acked = outcomes.iter().filter(|o| **o == AckOutcome::Acked).count() as u64;
        metrics::counter!("txmq_messages_acked_total").increment(acked);
        let results = req
            .receipt_handles
            .into_iter()
            .zip(outcomes)
            .map(|(receipt_handle, o)| pb::AckResult {
                receipt_handle,
                outcome: match o {
                    AckOutcome::Acked => "acked",
                    AckOutcome::AlreadyAcked => "already_acked",
                    AckOutcome::Stale => "stale",
                    AckOutcome::Invalid => "invalid",
                }
                .into(),
            })
            .collect();
        Ok(pb::AckResponse { results })
    }

    pub async fn change_invisible(
        &self,
        req: pb::ChangeInvisibleDurationRequest,
    ) -> Result<pb::ChangeInvisibleDurationResponse, Status> {
        validate(&req.group, &req.topic)?;
        let invisible_ms = invisible(req.invisible_ms)?;
        let op = Operation::ChangeInvisible {
            group: req.group,
            topic: req.topic,
            receipt: req.receipt_handle,
            invisible_ms,
        };
        match self.proposer.write(op).await? {
            CommandResult::InvisibilityChanged { receipt } => {
                Ok(pb::ChangeInvisibleDurationResponse {
                    receipt_handle: receipt,
                })
            }
            other => Err(convert::unexpected(other)),
        }
    }

    pub async fn reset(&self, req: pb::ResetGroupRequest) -> Result<pb::GroupInfo, Status> {
        validate(&req.group, &req.topic)?;
        use pb::reset_group_request::To;
        let to = match req.to {
            Some(To::Earliest(_)) => ResetTarget::Earliest,
            Some(To::Latest(_)) => ResetTarget::Latest,
            Some(To::Offset(o)) => {
                let meta = self.topic(&req.topic)?;
                ResetTarget::Offsets(vec![o; meta.queues as usize])
            }
            Some(To::TimestampMs(t)) => ResetTarget::Offsets(
                self.reader
                    .offsets_at_time(&req.topic, t)
                    .map_err(convert::read_status)?,
            ),
            None => {
                return Err(Status::invalid_argument(
                    "say where to reset to: earliest, latest, an offset or a time",
                ));
            }
        };
        self.change_group(
            Operation::ResetGroup {
                group: req.group.clone(),
                topic: req.topic.clone(),
                to,
            },
            &req.group,
            &req.topic,
        )
        .await
    }

    pub async fn configure(&self, req: pb::ConfigureGroupRequest) -> Result<pb::GroupInfo, Status> {
        validate(&req.group, &req.topic)?;
        let op = Operation::ConfigureGroup {
            group: req.group.clone(),
            topic: req.topic.clone(),
            max_delivery_attempts: req.max_delivery_attempts,
        };
        self.change_group(op, &req.group, &req.topic).await
    }

    async fn change_group(
        &self,
        op: Operation,
        group: &str,
        topic: &str,
    ) -> Result<pb::GroupInfo, Status> {
        let (result, index) = self.proposer.write_indexed(op).await?;
        if !matches!(result, CommandResult::GroupChanged) {
            return Err(convert::unexpected(result));
        }
        let mut applied = self.reader.watch_applied_index();
        let _ = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|i| *i >= index)).await;
        self.describe(group, topic)
    }

    pub fn describe(&self, group: &str, topic: &str) -> Result<pb::GroupInfo, Status> {
        let g = self.reader.group(group, topic).ok_or_else(|| {
            Status::not_found(format!(
                "consumer group '{group}' has not consumed topic '{topic}' (on this node)"
            ))
        })?;
        Ok(group_info(&g, self.reader.topic(topic).as_ref()))
    }

    pub fn list(&self) -> pb::ListGroupsResponse {
        let groups = self
            .reader
            .groups()
            .iter()
            .map(|g| group_info(g, self.reader.topic(&g.topic).as_ref()))
            .collect();
        pb::ListGroupsResponse { groups }
    }

    fn topic(&self, topic: &str) -> Result<TopicMeta, Status> {
        self.reader
            .topic(topic)
            .ok_or_else(|| Status::not_found(format!("topic '{topic}' does not exist")))
    }
}
