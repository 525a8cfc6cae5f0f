//! Applying transaction commands: half messages, decisions and the scheduler's timers.
//!
//! The rules (RocketMQ's model, minus its known traps):
//! * one message per transaction; the broker assigns the id; decisions name id *and* group;
//! * commit makes the message visible exactly once, with one offset; repeats of the same
//!   decision are idempotent and report the original outcome; a conflicting decision is
//!   rejected naming the existing outcome;
//! * `unknown` leaves the transaction pending;
//! * checks and rollbacks by the broker are validated against the entry's time here, so the
//!   outcome never depends on which leader proposed them or when.

use crate::codec::CodecError;
use crate::entry_point::EntryPoint;
use crate::limits;
use crate::message::StoredMessageRef;
use crate::transaction::{Decision, DecisionSource, TxnEventKind, TxnRecord, TxnState, TxnTiming};
use crate::txn_id::TxnId;
use crate::{BrokerState, Changes};
use crate::{CommandResult, NewMessage, Rejection, TopicKind, TxnOutcome};

impl BrokerState {
    pub(crate) fn half_message(
        &mut self,
        at: EntryPoint,
        topic: &str,
        group: &str,
        message: &NewMessage,
        timing: TxnTiming,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        if let Err(why) = limits::validate_name("producer group", group) {
            return Ok(CommandResult::Rejected(Rejection::Invalid(why)));
        }
        if timing.max_checks == 0 || timing.check_interval_ms == 0 {
            return Ok(CommandResult::Rejected(Rejection::Invalid(
                "invalid transaction timing".into(),
            )));
        }
        let Some(meta) = self.topics.get(topic) else {
            return Ok(CommandResult::Rejected(Rejection::UnknownTopic(
                topic.to_string(),
            )));
        };
        if meta.kind != TopicKind::Transaction {
            return Ok(CommandResult::Rejected(Rejection::WrongTopicType {
                topic: topic.to_string(),
                expected: TopicKind::Transaction,
                actual: meta.kind,
            }));
        }
        let id = TxnId::new(at.index, at.sub as u32);
        let record = TxnRecord::pending(id, group, topic, message.clone(), timing, at.now_ms);
        changes.txn(id);
        self.transactions.insert_pending(record);
        Ok(CommandResult::HalfAccepted { txn_id: id })
    }

    pub(crate) fn end_transaction(
        &mut self,
        at: EntryPoint,
        txn_id: &str,
        group: &str,
        decision: Decision,
        source: DecisionSource,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let unknown = || {
            Ok(CommandResult::Rejected(Rejection::UnknownTransaction(
                txn_id.to_string(),
            )))
        };
        let Some(id) = TxnId::parse(txn_id) else {
            return unknown();
        };
        let Some(record) = self.transactions.get(&id) else {
            return unknown();
        };
        if record.group != group {
            return Ok(CommandResult::Rejected(Rejection::WrongGroup {
                txn_id: txn_id.to_string(),
                owner: record.group.clone(),
                group: group.to_string(),
            }));
        }
        if record.state != TxnState::Pending {
            return Ok(repeat_or_conflict(record, decision));
        }
        match decision {
            Decision::Unknown => {
                let outcome = self.transactions.update_pending(&id, |r| {
                    r.record(at.now_ms, TxnEventKind::Answered { decision, source });
                    outcome_of(r, false)
                });
                changes.txn(id);
                match outcome {
                    Some(o) => Ok(CommandResult::TxnDecided(o)),
                    None => unknown(),
                }
            }
            Decision::Commit => self.decide(at, id, TxnState::Committed, source, changes),
            Decision::Rollback => self.decide(at, id, TxnState::RolledBack, source, changes),
        }
    }

    /// Applies the scheduler's proposal. Each item is re-validated against `now_ms`.
    pub(crate) fn txn_timers(
        &mut self,
        at: EntryPoint,
        checks: &[String],
        expirations: &[String],
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let now_ms = at.now_ms;
        let mut recorded = Vec::new();
        for name in checks {
            let Some(id) = TxnId::parse(name) else {
                continue;
            };
            let attempt = self.transactions.update_pending(&id, |r| {
                let due = r.next_check_ms <= now_ms
                    && r.check_count < r.timing.max_checks
                    && now_ms < r.deadline_ms;
                if !due {
                    return None;
                }
                r.check_count += 1;
                r.next_check_ms = now_ms.saturating_add(r.timing.check_interval_ms);
                r.record(
                    now_ms,
                    TxnEventKind::CheckSent {
                        attempt: r.check_count,
                    },
                );
                Some(r.check_count)
            });
            if let Some(Some(attempt)) = attempt {
                changes.txn(id);
                recorded.push((name.clone(), attempt));
            }
        }
        let mut rolled_back = Vec::new();
        for name in expirations {
            let Some(record) = TxnId::parse(name)
                .and_then(|id| self.transactions.get(&id))
                .filter(|r| r.state == TxnState::Pending)
            else {
                continue;
            };
            let reason = if now_ms >= record.deadline_ms {
                DecisionSource::Timeout
            } else if record.check_count >= record.timing.max_checks
                && now_ms >= record.next_check_ms
            {
                DecisionSource::CheckExhausted
            } else {
                continue; // not expired at this entry's time: a stale proposal does nothing
            };
            self.decide(at, record.id, TxnState::RolledBack, reason, changes)?;
            rolled_back.push((name.clone(), reason));
        }
        Ok(CommandResult::TimersApplied {
            checks: recorded,
            rolled_back,
        })
    }

    /// Decides a pending transaction: a commit appends its message to the topic, a rollback
    /// drops it; the record moves to the decided window.
    fn decide(
        &mut self,
        at: EntryPoint,
        id: TxnId,
        state: TxnState,
        source: DecisionSource,
        changes: &mut Changes,
    ) -> Result<CommandResult, CodecError> {
        let Some(mut record) = self.transactions.take_pending(&id) else {
            return Ok(CommandResult::Rejected(Rejection::UnknownTransaction(
                id.to_string(),
            )));
        };
        record.state = state;
        record.reason = Some(source);
        record.decided_ms = Some(at.now_ms);
        record.decided_index = Some(at.index);
        record.decided_seq = Some(self.transactions.next_decision());
        let message = record.message.take();
        if state == TxnState::Committed {
            record.position = Some(self.append_committed(at.now_ms, &record, message, changes)?);
        }
        let outcome = outcome_of(&record, false);
        changes.txn(id);
        if let Some(evicted) = self.transactions.insert_decided(record) {
            changes.txn(evicted);
        }
        Ok(CommandResult::TxnDecided(outcome))
    }

    /// Makes a committed transaction's message visible: the next offset of its queue.
    fn append_committed(
        &mut self,
        now_ms: u64,
        record: &TxnRecord,
        message: Option<NewMessage>,
        changes: &mut Changes,
    ) -> Result<(u32, u64), CodecError> {
        // The topic cannot disappear (topics are never deleted) and the message is present
        // while pending (record invariant); both are asserted rather than guessed around.
        let meta = self
            .topics
            .get_mut(&record.topic)
            .expect("transaction topic exists");
        let message = message.expect("a pending transaction holds its half message");
        let message_id = record.message_id();
        let stored = StoredMessageRef {
            message_id: &message_id,
            key: &message.key,
            tag: &message.tag,
            body: &message.body,
            properties: &message.properties,
            born_at_ms: now_ms,
        };
        let position = meta.append(&stored, changes)?;
        changes.topic(&record.topic);
        Ok(position)
    }
}

/// The outcome a decision reports for `record`.
fn outcome_of(record: &TxnRecord, repeated: bool) -> TxnOutcome {
    TxnOutcome {
        txn_id: record.id,
        state: record.state,
        reason: record.reason,
        position: record.position,
        repeated,
        created_ms: record.created_ms,
    }
}

/// A decision for an already decided transaction: the same outcome again is an idempotent
/// success reporting the original; anything else is a conflict naming what happened.
fn repeat_or_conflict(record: &TxnRecord, decision: Decision) -> CommandResult {
    let same = matches!(
        (record.state, decision),
        (TxnState::Committed, Decision::Commit) | (TxnState::RolledBack, Decision::Rollback)
    );
    if same {
        return CommandResult::TxnDecided(outcome_of(record, true));
    }
    CommandResult::Rejected(Rejection::ConflictingDecision {
        txn_id: record.id.to_string(),
        existing: record.state,
        reason: record
            .reason
            .map(|r| r.as_str())
            .unwrap_or("unknown")
            .to_string(),
        requested: decision.as_str().to_string(),
    })
}
