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

use super::message::{StoredMessage, message_id};
use super::transaction::{Decision, DecisionSource, TxnEventKind, TxnRecord, TxnState, TxnTiming};
use super::{BrokerState, WriteBatch};
use crate::codec::CodecError;
use crate::command::{
    CommandResult, MessagePosition, NewMessage, Rejection, TopicKind, TxnOutcome,
};
use crate::keys;
use crate::limits;

/// Where and when an entry applies: its log index and the leader's time stamped into it.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub index: u64,
    pub now_ms: u64,
    /// For an operation inside a batched entry: how many message ids the operations before it
    /// in the same entry took (0 otherwise).
    pub sub: u64,
}

/// A transaction id: `T` + the id of its message (unique: message ids never repeat).
pub fn txn_id(message_id: &str) -> String {
    format!("T{message_id}")
}

impl BrokerState {
    pub(super) fn half_message(
        &mut self,
        at: At,
        topic: &str,
        group: &str,
        message: &NewMessage,
        timing: TxnTiming,
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        let now_ms = at.now_ms;
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
        let mut record = TxnRecord {
            id: txn_id(&message_id(at.index, at.sub as usize)),
            group: group.to_string(),
            topic: topic.to_string(),
            message_id: message_id(at.index, at.sub as usize),
            state: TxnState::Pending,
            reason: None,
            message: Some(message.clone()),
            created_ms: now_ms,
            decided_ms: None,
            decided_index: None,
            timing,
            check_count: 0,
            next_check_ms: now_ms.saturating_add(timing.first_check_delay_ms),
            deadline_ms: now_ms.saturating_add(timing.max_lifetime_ms),
            position: None,
            history: Vec::new(),
        };
        record.record(now_ms, TxnEventKind::HalfStored);
        batch.refresh(keys::txn_key(&record.id));
        let result = CommandResult::HalfAccepted {
            txn_id: record.id.clone(),
            message_id: record.message_id.clone(),
        };
        self.transactions.insert_pending(record);
        Ok(result)
    }

    pub(super) fn end_transaction(
        &mut self,
        at: At,
        txn_id: &str,
        group: &str,
        decision: Decision,
        source: DecisionSource,
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        let now_ms = at.now_ms;
        let Some(record) = self.transactions.get(txn_id) else {
            return Ok(CommandResult::Rejected(Rejection::UnknownTransaction(
                txn_id.to_string(),
            )));
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
                self.transactions.update_pending(txn_id, |r| {
                    r.record(now_ms, TxnEventKind::Answered { decision, source })
                });
                self.write_txn(txn_id, batch);
                Ok(CommandResult::TxnDecided(self.outcome(txn_id, false)))
            }
            Decision::Commit => self.decide(at, txn_id, TxnState::Committed, source, batch),
            Decision::Rollback => self.decide(at, txn_id, TxnState::RolledBack, source, batch),
        }
    }

    /// Applies the scheduler's proposal. Each item is re-validated against `now_ms`.
    pub(super) fn txn_timers(
        &mut self,
        at: At,
        checks: &[String],
        expirations: &[String],
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        let now_ms = at.now_ms;
        let mut recorded = Vec::new();
        for id in checks {
            let attempt = self.transactions.update_pending(id, |r| {
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
                self.write_txn(id, batch);
                recorded.push((id.clone(), attempt));
            }
        }
        let mut rolled_back = Vec::new();
        for id in expirations {
            let Some(record) = self
                .transactions
                .get(id)
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
            self.decide(at, id, TxnState::RolledBack, reason, batch)?;
            rolled_back.push((id.clone(), reason));
        }
        Ok(CommandResult::TimersApplied {
            checks: recorded,
            rolled_back,
        })
    }

    fn decide(
        &mut self,
        at: At,
        txn_id: &str,
        state: TxnState,
        source: DecisionSource,
        batch: &mut WriteBatch,
    ) -> Result<CommandResult, CodecError> {
        let At {
            index: log_index,
            now_ms,
            ..
        } = at;
        let taken = self.transactions.update_pending(txn_id, |r| {
            r.state = state;
            r.reason = Some(source);
            r.decided_ms = Some(now_ms);
            r.decided_index = Some(log_index);
            r.record(now_ms, TxnEventKind::Decided { state, source });
            (r.message.take(), r.topic.clone(), r.message_id.clone())
        });
        let Some((message, topic, message_id)) = taken else {
            return Ok(CommandResult::Rejected(Rejection::UnknownTransaction(
                txn_id.to_string(),
            )));
        };
        if state == TxnState::Committed {
            let position = self.append_committed(now_ms, &topic, message_id, message, batch)?;
            self.transactions
                .update_pending(txn_id, |r| r.position = Some(position));
        }
        self.write_txn(txn_id, batch);
        if let Some(evicted) = self.transactions.mark_decided(txn_id) {
            batch.delete(keys::txn_key(&evicted));
        }
        Ok(CommandResult::TxnDecided(self.outcome(txn_id, false)))
    }

    /// Makes a committed transaction's message visible: the next offset of its queue.
    fn append_committed(
        &mut self,
        now_ms: u64,
        topic: &str,
        message_id: String,
        message: Option<NewMessage>,
        batch: &mut WriteBatch,
    ) -> Result<MessagePosition, CodecError> {
        // The topic cannot disappear (topics are never deleted) and the message is present
        // while pending (record invariant); both are asserted rather than guessed around.
        let meta = self
            .topics
            .get_mut(topic)
            .expect("transaction topic exists");
        let message = message.expect("a pending transaction holds its half message");
        let stored = StoredMessage {
            message_id: message_id.clone(),
            key: message.key,
            tag: message.tag,
            body: message.body,
            properties: message.properties,
            born_at_ms: now_ms,
        };
        let (queue, offset) = meta.append(&stored, batch)?;
        batch.refresh(keys::topic_key(topic));
        Ok(MessagePosition {
            message_id,
            queue,
            offset,
        })
    }

    /// The transaction's row follows its record (encoded at the next checkpoint; deleted if
    /// the record is gone).
    fn write_txn(&self, txn_id: &str, batch: &mut WriteBatch) {
        batch.refresh(keys::txn_key(txn_id));
    }

    fn outcome(&self, txn_id: &str, repeated: bool) -> TxnOutcome {
        let record = self.transactions.get(txn_id);
        TxnOutcome {
            txn_id: txn_id.to_string(),
            state: record.map(|r| r.state).unwrap_or(TxnState::Pending),
            reason: record.and_then(|r| r.reason),
            position: record.and_then(|r| r.position.clone()),
            repeated,
        }
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
        return CommandResult::TxnDecided(TxnOutcome {
            txn_id: record.id.clone(),
            state: record.state,
            reason: record.reason,
            position: record.position.clone(),
            repeated: true,
        });
    }
    CommandResult::Rejected(Rejection::ConflictingDecision {
        txn_id: record.id.clone(),
        existing: record.state,
        reason: record
            .reason
            .map(|r| r.as_str())
            .unwrap_or("unknown")
            .to_string(),
        requested: decision.as_str().to_string(),
    })
}
