//! Applying consumer-group commands: receive (lease), ack, change invisibility, reset,
//! configure, dead-letter, and retention trims.
//!
//! Exclusivity within a group comes from the lease being a Raft entry: every replica agrees
//! which receive got which offset. Payloads are not in the entry; the serving node reads them
//! from its own applied rows.

use crate::codec::CodecError;
use crate::entry_point::EntryPoint;
use crate::group::{
    DEFAULT_MAX_DELIVERY_ATTEMPTS, GroupState, Lease, MAX_DELIVERY_ATTEMPTS,
    MAX_IN_FLIGHT_PER_QUEUE, QueueProgress,
};
use crate::limits;
use crate::{
    AckOutcome, CommandResult, DeadLetterItem, Delivery, QueueTrim, Rejection, ResetTarget,
    TopicKind,
};
use crate::{BrokerState, Changes, StoredMessage, TopicMeta};

/// The most messages one receive may lease.
pub const MAX_RECEIVE: u32 = 1000;

/// A receipt handle: queue, offset and the lease's log index.
pub fn receipt(queue: u32, offset: u64, lease_index: u64) -> String {
    format!("{queue}-{offset}-{lease_index}")
}

/// Parses a receipt handle; `None` when it is not one.
pub fn parse_receipt(receipt: &str) -> Option<(u32, u64, u64)> {
    let mut parts = receipt.split('-');
    let q = parts.next()?.parse().ok()?;
    let o = parts.next()?.parse().ok()?;
    let i = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((q, o, i))
}

fn new_group(
    at: EntryPoint,
    group: &str,
    meta: &TopicMeta,
    max_delivery_attempts: u32,
) -> GroupState {
    GroupState {
        group: group.to_string(),
        topic: meta.name.clone(),
        max_delivery_attempts,
        // A new group starts at the oldest retained message: every group gets every message.
        queues: meta
            .low_offsets
            .iter()
            .map(|low| QueueProgress {
                ack_offset: *low,
                next_offset: *low,
                ..Default::default()
            })
            .collect(),
        cursor: 0,
        skipped_by_retention: 0,
        dead_lettered: 0,
        created_ms: at.now_ms,
    }
}

/// Moves a queue's progress past offsets retention removed; returns how many were never seen.
fn catch_up_with_retention(p: &mut QueueProgress, low: u64) -> u64 {
    if p.ack_offset >= low {
        return 0;
    }
    let acked_below = p.acked.range(..low).count() as u64;
    let skipped = (low - p.ack_offset).saturating_sub(acked_below);
    p.leases.retain(|o, _| *o >= low);
    p.acked.retain(|o| *o >= low);
    p.ack_offset = low;
    p.next_offset = p.next_offset.max(low);
    p.advance();
    skipped
}

impl BrokerState {
    fn validate_group(&self, group: &str, topic: &str) -> Result<(), Rejection> {
        limits::validate_name("consumer group", group).map_err(Rejection::Invalid)?;
        if !self.topics.contains_key(topic) {
            return Err(Rejection::UnknownTopic(topic.to_string()));
        }
        Ok(())
    }

    /// The group's row follows its state (encoded at the next checkpoint).
    fn write_group(&self, group: &str, topic: &str, changes: &mut Changes) {
        changes.group(group, topic);
    }

    /// The group's state, created on first use.
    fn group_mut(&mut self, at: EntryPoint, group: &str, topic: &str) -> &mut GroupState {
        let meta = &self.topics[topic];
        self.groups
            .entry((group.to_string(), topic.to_string()))
            .or_insert_with(|| new_group(at, group, meta, DEFAULT_MAX_DELIVERY_ATTEMPTS))
    }

    pub(crate) fn receive(
        &mut self,
        at: EntryPoint,
        group: &str,
        topic: &str,
        max: u32,
        invisible_ms: u64,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        if let Err(r) = self.validate_group(group, topic) {
            return Ok(CommandResult::Rejected(r));
        }
        let meta = self.topics[topic].clone();
        let g = self.group_mut(at, group, topic);
        let mut deliveries = Vec::new();
        let want = max.clamp(1, MAX_RECEIVE) as usize;
        let n = meta.queues;
        for step in 0..n {
            let q = (g.cursor + step) % n;
            let p = &mut g.queues[q as usize];
            g.skipped_by_retention += catch_up_with_retention(p, meta.low_offsets[q as usize]);
            lease_queue(
                p,
                q,
                meta.next_offsets[q as usize],
                g.max_delivery_attempts,
                at,
                invisible_ms,
                want,
                &mut deliveries,
            );
            if deliveries.len() == want {
                break;
            }
        }
        g.cursor = (g.cursor + 1) % n;
        self.write_group(group, topic, changes);
        Ok(CommandResult::Leased(deliveries))
    }

    pub(crate) fn ack(
        &mut self,
        group: &str,
        topic: &str,
        receipts: &[String],
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let key = (group.to_string(), topic.to_string());
        let Some(g) = self.groups.get_mut(&key) else {
            return Ok(CommandResult::Acked(vec![
                AckOutcome::Invalid;
                receipts.len()
            ]));
        };
        let outcomes = receipts.iter().map(|r| ack_one(g, r)).collect();
        self.write_group(group, topic, changes);
        Ok(CommandResult::Acked(outcomes))
    }

    /// Gives unreturned leases back (see [`Operation::Release`]): visible at once, the attempt
    /// not counted, the receipt no longer valid.
    ///
    /// [`Operation::Release`]: crate::Operation::Release
    pub(crate) fn release(
        &mut self,
        at: EntryPoint,
        group: &str,
        topic: &str,
        receipts: &[String],
        changes: &mut Changes,
    ) -> CommandResult {
        let key = (group.to_string(), topic.to_string());
        let Some(g) = self.groups.get_mut(&key) else {
            return CommandResult::Released(0);
        };
        let mut released = 0;
        for (q, o, i) in receipts.iter().filter_map(|r| parse_receipt(r)) {
            let Some(lease) = g
                .queues
                .get_mut(q as usize)
                .and_then(|p| p.leases.get_mut(&o))
                .filter(|l| l.lease_index == i)
            else {
                continue;
            };
            lease.attempt = lease.attempt.saturating_sub(1);
            lease.visible_at_ms = at.now_ms;
            lease.lease_index = at.index;
            released += 1;
        }
        if released > 0 {
            self.write_group(group, topic, changes);
        }
        CommandResult::Released(released)
    }

    pub(crate) fn change_invisible(
        &mut self,
        at: EntryPoint,
        group: &str,
        topic: &str,
        receipt_handle: &str,
        invisible_ms: u64,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let key = (group.to_string(), topic.to_string());
        let lease = parse_receipt(receipt_handle).and_then(|(q, o, i)| {
            let g = self.groups.get_mut(&key)?;
            let lease = g.queues.get_mut(q as usize)?.leases.get_mut(&o)?;
            Some((q, o, i, lease))
        });
        let Some((q, o, i, lease)) = lease else {
            return Ok(CommandResult::Rejected(Rejection::InvalidReceipt(
                receipt_handle.to_string(),
            )));
        };
        if lease.lease_index != i {
            return Ok(CommandResult::Rejected(Rejection::StaleReceipt(
                receipt_handle.to_string(),
            )));
        }
        lease.visible_at_ms = at.now_ms.saturating_add(invisible_ms);
        lease.lease_index = at.index;
        self.write_group(group, topic, changes);
        Ok(CommandResult::InvisibilityChanged {
            receipt: receipt(q, o, at.index),
        })
    }

    pub(crate) fn reset_group(
        &mut self,
        at: EntryPoint,
        group: &str,
        topic: &str,
        to: &ResetTarget,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        if let Err(r) = self.validate_group(group, topic) {
            return Ok(CommandResult::Rejected(r));
        }
        let meta = self.topics[topic].clone();
        if let ResetTarget::Offsets(offsets) = to
            && offsets.len() != meta.queues as usize
        {
            let why = format!(
                "a reset needs one offset per queue ({}), got {}",
                meta.queues,
                offsets.len()
            );
            return Ok(CommandResult::Rejected(Rejection::Invalid(why)));
        }
        let g = self.group_mut(at, group, topic);
        for (q, p) in g.queues.iter_mut().enumerate() {
            let (low, end) = (meta.low_offsets[q], meta.next_offsets[q]);
            let target = match to {
                ResetTarget::Earliest => low,
                ResetTarget::Latest => end,
                ResetTarget::Offsets(offsets) => offsets[q].clamp(low, end),
            };
            p.jump_to(target);
        }
        self.write_group(group, topic, changes);
        Ok(CommandResult::GroupChanged)
    }

    pub(crate) fn configure_group(
        &mut self,
        at: EntryPoint,
        group: &str,
        topic: &str,
        max_delivery_attempts: u32,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        if let Err(r) = self.validate_group(group, topic) {
            return Ok(CommandResult::Rejected(r));
        }
        if !(1..=MAX_DELIVERY_ATTEMPTS).contains(&max_delivery_attempts) {
            let why = format!(
                "max delivery attempts must be 1 to {MAX_DELIVERY_ATTEMPTS}, not {max_delivery_attempts}"
            );
            return Ok(CommandResult::Rejected(Rejection::Invalid(why)));
        }
        self.group_mut(at, group, topic).max_delivery_attempts = max_delivery_attempts;
        self.write_group(group, topic, changes);
        Ok(CommandResult::GroupChanged)
    }

    pub(crate) fn dead_letter(
        &mut self,
        at: EntryPoint,
        (group, topic): (&str, &str),
        items: &[DeadLetterItem],
        on_request: bool,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let key = (group.to_string(), topic.to_string());
        let Some(g) = self.groups.get_mut(&key) else {
            return Ok(CommandResult::DeadLettered(0));
        };
        let mut moved = Vec::new();
        for item in items {
            let Some(p) = g.queues.get_mut(item.queue as usize) else {
                continue;
            };
            // The lease named must still be the current one: a consumer whose lease expired and
            // was given to another cannot move the message away from that other.
            let due = p.leases.get(&item.offset).is_some_and(|l| {
                l.lease_index == item.lease_index
                    && match on_request {
                        true => l.visible_at_ms > at.now_ms,
                        false => {
                            l.visible_at_ms <= at.now_ms && l.attempt >= g.max_delivery_attempts
                        }
                    }
            });
            if due {
                let attempts = p
                    .leases
                    .remove(&item.offset)
                    .map(|l| l.attempt)
                    .unwrap_or(0);
                p.acked.insert(item.offset);
                p.advance();
                g.dead_lettered += 1;
                moved.push((item, attempts));
            }
        }
        let count = moved.len() as u64;
        if count > 0 {
            let dlq = self.dlq_topic(at, group, topic, changes)?;
            for (item, attempts) in moved {
                let mut message: StoredMessage = item.message.clone();
                message
                    .properties
                    .insert("dlq.origin_topic".into(), topic.to_string());
                message
                    .properties
                    .insert("dlq.origin_queue".into(), item.queue.to_string());
                message
                    .properties
                    .insert("dlq.origin_offset".into(), item.offset.to_string());
                message
                    .properties
                    .insert("dlq.attempts".into(), attempts.to_string());
                message.born_at_ms = at.now_ms;
                dlq.append(&message.as_ref(), changes)?;
            }
            changes.topic(&GroupState::dlq_topic(group));
            self.write_group(group, topic, changes);
        }
        Ok(CommandResult::DeadLettered(count))
    }

    /// The group's dead-letter topic, created (normal, one queue) on first use.
    fn dlq_topic(
        &mut self,
        at: EntryPoint,
        group: &str,
        origin: &str,
        changes: &mut Changes,
    ) -> Result<&mut TopicMeta, CodecError> {
        let name = GroupState::dlq_topic(group);
        if !self.topics.contains_key(&name) {
            let retention_ms = self
                .topics
                .get(origin)
                .map(|t| t.retention_ms)
                .unwrap_or(limits::DEFAULT_RETENTION_MS);
            let meta = TopicMeta {
                name: name.clone(),
                id: at.index,
                kind: TopicKind::Normal,
                queues: 1,
                retention_ms,
                retention_bytes: 0,
                created_at_ms: at.now_ms,
                round_robin: 0,
                next_offsets: vec![0],
                low_offsets: vec![0],
                retained_bytes: vec![0],
            };
            changes.topic(&name);
            self.topics.insert(name.clone(), meta);
        }
        Ok(self.topics.get_mut(&name).expect("just ensured"))
    }

    pub(crate) fn trim(
        &mut self,
        topic: &str,
        trims: &[QueueTrim],
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let Some(meta) = self.topics.get_mut(topic) else {
            return Ok(CommandResult::Trimmed(0));
        };
        let mut removed = 0;
        let queues = meta.queues;
        for t in trims.iter().filter(|t| t.queue < queues) {
            removed += meta.trim(t.queue, t.new_low, t.bytes, changes);
        }
        changes.topic(topic);
        Ok(CommandResult::Trimmed(removed))
    }
}

/// Leases redeliveries (expired leases under the attempt limit) first, then new offsets.
#[allow(clippy::too_many_arguments)]
fn lease_queue(
    p: &mut QueueProgress,
    q: u32,
    end: u64,
    max_attempts: u32,
    at: EntryPoint,
    invisible_ms: u64,
    want: usize,
    out: &mut Vec<Delivery>,
) {
    let visible_at_ms = at.now_ms.saturating_add(invisible_ms);
    for (offset, lease) in p.leases.iter_mut() {
        if out.len() == want {
            return;
        }
        if lease.visible_at_ms <= at.now_ms && lease.attempt < max_attempts {
            lease.attempt += 1;
            lease.visible_at_ms = visible_at_ms;
            lease.lease_index = at.index;
            out.push(Delivery {
                queue: q,
                offset: *offset,
                attempt: lease.attempt,
                receipt: receipt(q, *offset, at.index),
            });
        }
    }
    while out.len() < want && p.next_offset < end && p.leases.len() < MAX_IN_FLIGHT_PER_QUEUE {
        let offset = p.next_offset;
        p.next_offset += 1;
        p.leases.insert(
            offset,
            Lease {
                attempt: 1,
                visible_at_ms,
                lease_index: at.index,
            },
        );
        out.push(Delivery {
            queue: q,
            offset,
            attempt: 1,
            receipt: receipt(q, offset, at.index),
        });
    }
}

fn ack_one(g: &mut GroupState, receipt_handle: &str) -> AckOutcome {
    let Some((q, o, i)) = parse_receipt(receipt_handle) else {
        return AckOutcome::Invalid;
    };
    let Some(p) = g.queues.get_mut(q as usize) else {
        return AckOutcome::Invalid;
    };
    match p.leases.get(&o) {
        Some(lease) if lease.lease_index == i => {
            p.leases.remove(&o);
            p.acked.insert(o);
            p.advance();
            AckOutcome::Acked
        }
        Some(_) => AckOutcome::Stale,
        None if o < p.ack_offset || p.acked.contains(&o) => AckOutcome::AlreadyAcked,
        None => AckOutcome::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_reject_garbage() {
        assert_eq!(parse_receipt(&receipt(3, 17, 99)), Some((3, 17, 99)));
        assert_eq!(parse_receipt("3-17"), None);
        assert_eq!(parse_receipt("3-17-99-1"), None);
        assert_eq!(parse_receipt("a-b-c"), None);
    }

    #[test]
    fn ack_offset_advances_over_contiguous_acks_only() {
        let mut p = QueueProgress {
            ack_offset: 0,
            next_offset: 4,
            ..Default::default()
        };
        p.acked.extend([1, 2]);
        p.advance();
        assert_eq!(p.ack_offset, 0);
        p.acked.insert(0);
        p.advance();
        assert_eq!(p.ack_offset, 3);
        assert!(p.acked.is_empty());
    }
}
