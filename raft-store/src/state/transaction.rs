//! A transaction's replicated record: one half message, its checks and its decision.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::txn_id::TxnId;
use crate::command::{MessagePosition, NewMessage};

/// The most history events kept per transaction (the record stays bounded whatever happens).
pub const MAX_HISTORY: usize = 64;

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Pending,
    Committed,
    RolledBack,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Pending => "pending",
            TxnState::Committed => "committed",
            TxnState::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A producer's (or checker's, or operator's) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Commit,
    Rollback,
    Unknown,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Commit => "commit",
            Decision::Rollback => "rollback",
            Decision::Unknown => "unknown",
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionSource {
    /// The producer, right after its local transaction.
    Producer,
    /// A producer instance answering a check-back.
    Check,
    /// The broker, after the last check went unanswered or answered unknown.
    CheckExhausted,
    /// The broker, at the transaction's maximum lifetime.
    Timeout,
    /// An operator forcing a decision.
    Operator,
}

impl DecisionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionSource::Producer => "producer",
            DecisionSource::Check => "check",
            DecisionSource::CheckExhausted => "check_exhausted",
            DecisionSource::Timeout => "timeout",
            DecisionSource::Operator => "operator",
        }
    }
}

/// Per-transaction timing, fixed when the half message is stored (so a new leader with other
/// settings continues each transaction exactly as it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnTiming {
    pub first_check_delay_ms: u64,
    pub check_interval_ms: u64,
    pub max_checks: u32,
    pub max_lifetime_ms: u64,
}

/// Something that happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnEventKind {
    HalfStored,
    CheckSent {
        attempt: u32,
    },
    Answered {
        decision: Decision,
        source: DecisionSource,
    },
    Decided {
        state: TxnState,
        source: DecisionSource,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEvent {
    pub at_ms: u64,
    pub kind: TxnEventKind,
}

impl TxnEvent {
    /// A short machine-friendly name of the event.
    pub fn name(&self) -> &'static str {
        match self.kind {
            TxnEventKind::HalfStored => "half_stored",
            TxnEventKind::CheckSent { .. } => "check_sent",
            TxnEventKind::Answered { .. } => "answered",
            TxnEventKind::Decided { .. } => "decided",
        }
    }

    /// A human description.
    pub fn describe(&self) -> String {
        match &self.kind {
            TxnEventKind::HalfStored => "half message stored".into(),
            TxnEventKind::CheckSent { attempt } => format!("check {attempt} sent"),
            TxnEventKind::Answered { decision, source } => {
                format!("{} answered {}", source.as_str(), decision.as_str())
            }
            TxnEventKind::Decided { state, source } => {
                format!("{} by {}", state.as_str(), source.as_str())
            }
        }
    }
}

/// The most events kept besides the half message and the decision, which are implied by the
/// record's own fields.
pub const MAX_EVENTS: usize = MAX_HISTORY - 2;

/// The replicated record of one transaction.
///
/// Its derived serde form (positional, see [`crate::codec::encode_compact`]) is the transaction
/// journal's: every field as in memory. Snapshot rows use [`TxnRow`] instead
/// ([`TxnRecord::encode_row`], [`TxnRecord::decode_row`]), the layout rows had before ids became
/// integers, so nodes of different versions exchange snapshots and old rows still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub id: TxnId,
    pub group: String,
    pub topic: String,
    pub state: TxnState,
    /// Who decided (set once decided).
    pub reason: Option<DecisionSource>,
    /// The half message; dropped once decided (committed messages live in their queue).
    pub message: Option<NewMessage>,
    pub created_ms: u64,
    pub decided_ms: Option<u64>,
    /// The log index of the decision.
    pub decided_index: Option<u64>,
    /// The decision's place among all decisions ever applied (replicated): orders the decided
    /// window identically on every replica, including one that rebuilt it after a restart —
    /// one entry can decide many transactions, so the log index alone does not.
    pub decided_seq: Option<u64>,
    pub timing: TxnTiming,
    /// Checks sent so far (replicated: a new leader continues the count).
    pub check_count: u32,
    /// When the next check is due; after the last check, when the check window closes.
    pub next_check_ms: u64,
    /// When the transaction is rolled back for timeout.
    pub deadline_ms: u64,
    /// `(queue, offset)` of the committed message (its message id is the transaction's).
    pub position: Option<(u32, u64)>,
    /// What happened between the half message and the decision (checks sent, `unknown`
    /// answers), oldest first, at most [`MAX_EVENTS`].
    pub events: Vec<TxnEvent>,
}

impl TxnRecord {
    /// A new pending transaction for `message`, stored at `now_ms`.
    pub fn pending(
        id: TxnId,
        group: &str,
        topic: &str,
        message: NewMessage,
        timing: TxnTiming,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            group: group.to_string(),
            topic: topic.to_string(),
            state: TxnState::Pending,
            reason: None,
            message: Some(message),
            created_ms: now_ms,
            decided_ms: None,
            decided_index: None,
            decided_seq: None,
            timing,
            check_count: 0,
            next_check_ms: now_ms.saturating_add(timing.first_check_delay_ms),
            deadline_ms: now_ms.saturating_add(timing.max_lifetime_ms),
            position: None,
            events: Vec::new(),
        }
    }

    /// The time the scheduler must next look at this transaction.
    pub fn due_ms(&self) -> u64 {
        self.next_check_ms.min(self.deadline_ms)
    }

    pub fn message_id(&self) -> String {
        self.id.message_id()
    }

    /// Where the committed message landed.
    pub fn message_position(&self) -> Option<MessagePosition> {
        self.position.map(|(queue, offset)| MessagePosition {
            message_id: self.message_id(),
            queue,
            offset,
        })
    }

    /// About the size of the record's encoding (a little more, rarely less): what a buffer for
    /// it is reserved at.
    pub fn encoded_size_hint(&self) -> usize {
        let message = self.message.as_ref().map_or(0, |m| {
            let names = super::message::properties_size_hint(&m.properties);
            m.body.len() + m.key.len() + m.tag.len() + names + 16
        });
        let fixed = 128 + 24 * self.events.len();
        fixed + self.group.len() + self.topic.len() + message
    }

    /// Records an event between the half message and the decision.
    pub fn record(&mut self, at_ms: u64, kind: TxnEventKind) {
        if self.events.len() == MAX_EVENTS {
            // Keep the most recent ones (the half message is always the first of the history).
            self.events.remove(0);
        }
        self.events.push(TxnEvent { at_ms, kind });
    }

    /// The whole history: the half message, the recorded events, and the decision.
    pub fn history(&self) -> Vec<TxnEvent> {
        let mut out = Vec::with_capacity(self.events.len() + 2);
        out.push(TxnEvent {
            at_ms: self.created_ms,
            kind: TxnEventKind::HalfStored,
        });
        out.extend(self.events.iter().cloned());
        if let (Some(at_ms), Some(source)) = (self.decided_ms, self.reason) {
            out.push(TxnEvent {
                at_ms,
                kind: TxnEventKind::Decided {
                    state: self.state,
                    source,
                },
            });
        }
        out
    }

    /// Invariants of a record.
    pub fn check_invariants(&self) {
        assert!(self.events.len() <= MAX_EVENTS, "txn {}", self.id);
        assert!(
            self.check_count <= self.timing.max_checks,
            "txn {}: too many checks",
            self.id
        );
        let decided = self.decided_ms.is_some()
            && self.decided_index.is_some()
            && self.decided_seq.is_some()
            && self.reason.is_some();
        match self.state {
            TxnState::Pending => assert!(
                self.message.is_some()
                    && self.reason.is_none()
                    && self.position.is_none()
                    && self.decided_seq.is_none(),
                "txn {}",
                self.id
            ),
            TxnState::Committed => assert!(
                decided && self.message.is_none() && self.position.is_some(),
                "txn {}",
                self.id
            ),
            TxnState::RolledBack => assert!(
                decided && self.message.is_none() && self.position.is_none(),
                "txn {}",
                self.id
            ),
        }
    }
}

/// The stored form of a [`TxnRecord`] (field names and order are the format: append new
/// fields at the end, with a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRow {
    pub id: String,
    pub group: String,
    pub topic: String,
    pub message_id: String,
    pub state: TxnState,
    pub reason: Option<DecisionSource>,
    pub message: Option<NewMessage>,
    pub created_ms: u64,
    pub decided_ms: Option<u64>,
    pub decided_index: Option<u64>,
    pub timing: TxnTiming,
    pub check_count: u32,
    pub next_check_ms: u64,
    pub deadline_ms: u64,
    pub position: Option<MessagePosition>,
    pub history: Vec<TxnEvent>,
    #[serde(default)]
    pub decided_seq: Option<u64>,
}

/// [`TxnRow`] borrowing from a record: encoding a row copies no body, and allocates only the
/// id's text (the message id is the same text without its `T`).
#[derive(Serialize)]
struct TxnRowRef<'a> {
    id: &'a str,
    group: &'a str,
    topic: &'a str,
    message_id: &'a str,
    state: TxnState,
    reason: Option<DecisionSource>,
    message: Option<&'a NewMessage>,
    created_ms: u64,
    decided_ms: Option<u64>,
    decided_index: Option<u64>,
    timing: TxnTiming,
    check_count: u32,
    next_check_ms: u64,
    deadline_ms: u64,
    position: Option<PositionRef<'a>>,
    history: HistoryRef<'a>,
    decided_seq: Option<u64>,
}

/// [`MessagePosition`] borrowing its id.
#[derive(Serialize)]
struct PositionRef<'a> {
    message_id: &'a str,
    queue: u32,
    offset: u64,
}

/// A record's [`TxnRecord::history`], serialized as the list without building it.
struct HistoryRef<'a>(&'a TxnRecord);

impl Serialize for HistoryRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let r = self.0;
        let decided = r.decided_ms.zip(r.reason);
        let len = 1 + r.events.len() + usize::from(decided.is_some());
        let mut seq = s.serialize_seq(Some(len))?;
        seq.serialize_element(&TxnEvent {
            at_ms: r.created_ms,
            kind: TxnEventKind::HalfStored,
        })?;
        for event in &r.events {
            seq.serialize_element(event)?;
        }
        if let Some((at_ms, source)) = decided {
            seq.serialize_element(&TxnEvent {
                at_ms,
                kind: TxnEventKind::Decided {
                    state: r.state,
                    source,
                },
            })?;
        }
        seq.end()
    }
}

impl TxnRecord {
    /// The record as a snapshot row ([`TxnRow`], positional).
    pub fn encode_row(&self) -> Result<Vec<u8>, crate::codec::CodecError> {
        let id = self.id.text();
        let message_id = &id[1..];
        let mut out = Vec::with_capacity(self.encoded_size_hint() + 2 * id.len() + 40);
        crate::codec::encode_compact_into(
            &mut out,
            &TxnRowRef {
                id: &id,
                group: &self.group,
                topic: &self.topic,
                message_id,
                state: self.state,
                reason: self.reason,
                message: self.message.as_ref(),
                created_ms: self.created_ms,
                decided_ms: self.decided_ms,
                decided_index: self.decided_index,
                timing: self.timing,
                check_count: self.check_count,
                next_check_ms: self.next_check_ms,
                deadline_ms: self.deadline_ms,
                position: self.position.map(|(queue, offset)| PositionRef {
                    message_id,
                    queue,
                    offset,
                }),
                history: HistoryRef(self),
                decided_seq: self.decided_seq,
            },
        )?;
        Ok(out)
    }

    /// A record from a row of any version (named or positional [`TxnRow`]).
    pub fn decode_row(bytes: &[u8]) -> std::io::Result<TxnRecord> {
        let row: TxnRow = crate::codec::decode(bytes)?;
        TxnRecord::try_from(row)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl TryFrom<TxnRow> for TxnRecord {
    type Error = String;

    fn try_from(row: TxnRow) -> Result<Self, String> {
        let id =
            TxnId::parse(&row.id).ok_or_else(|| format!("not a transaction id: '{}'", row.id))?;
        // The half message and the decision are implied by the record's fields.
        let mut events: Vec<TxnEvent> = row
            .history
            .into_iter()
            .filter(|e| {
                !matches!(
                    e.kind,
                    TxnEventKind::HalfStored | TxnEventKind::Decided { .. }
                )
            })
            .collect();
        if events.len() > MAX_EVENTS {
            events.drain(..events.len() - MAX_EVENTS);
        }
        // Rows of earlier versions have no decision sequence: their log index orders them.
        let decided_seq = match row.decided_seq {
            Some(seq) => Some(seq),
            None => row.decided_index,
        };
        Ok(TxnRecord {
            id,
            group: row.group,
            topic: row.topic,
            state: row.state,
            reason: row.reason,
            message: row.message,
            created_ms: row.created_ms,
            decided_ms: row.decided_ms,
            decided_index: row.decided_index,
            decided_seq,
            timing: row.timing,
            check_count: row.check_count,
            next_check_ms: row.next_check_ms,
            deadline_ms: row.deadline_ms,
            position: row.position.map(|p| (p.queue, p.offset)),
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn committed() -> TxnRecord {
        let timing = TxnTiming {
            first_check_delay_ms: 10,
            check_interval_ms: 10,
            max_checks: 3,
            max_lifetime_ms: 100,
        };
        let message = NewMessage {
            key: "k".into(),
            tag: String::new(),
            body: b"paid".to_vec(),
            properties: Default::default(),
        };
        let mut r = TxnRecord::pending(TxnId::new(9, 2), "g", "pay", message, timing, 1_000);
        r.record(1_010, TxnEventKind::CheckSent { attempt: 1 });
        r.state = TxnState::Committed;
        r.reason = Some(DecisionSource::Check);
        r.message = None;
        r.decided_ms = Some(1_020);
        r.decided_index = Some(12);
        r.decided_seq = Some(4);
        r.position = Some((1, 77));
        r
    }

    #[test]
    fn records_round_trip_in_both_encodings() {
        let r = committed();
        r.check_invariants();
        let journal = codec::encode_compact(&r).expect("encode");
        let row = r.encode_row().expect("encode");
        assert!(journal.len() < row.len());
        assert_eq!(codec::decode::<TxnRecord>(&journal).expect("decode"), r);
        assert_eq!(TxnRecord::decode_row(&row).expect("decode"), r);
        let history: Vec<&str> = r.history().iter().map(|e| e.name()).collect();
        assert_eq!(history, ["half_stored", "check_sent", "decided"]);
    }

    /// A row as versions before the decision sequence wrote it: named fields, no
    /// `decided_seq`, the half message and the decision in its history.
    #[derive(Serialize)]
    struct EarlierRow {
        id: String,
        group: String,
        topic: String,
        message_id: String,
        state: TxnState,
        reason: Option<DecisionSource>,
        message: Option<NewMessage>,
        created_ms: u64,
        decided_ms: Option<u64>,
        decided_index: Option<u64>,
        timing: TxnTiming,
        check_count: u32,
        next_check_ms: u64,
        deadline_ms: u64,
        position: Option<MessagePosition>,
        history: Vec<TxnEvent>,
    }

    #[test]
    fn rows_of_earlier_versions_still_load() {
        let r = committed();
        let row = EarlierRow {
            id: r.id.to_string(),
            group: r.group.clone(),
            topic: r.topic.clone(),
            message_id: r.message_id(),
            state: r.state,
            reason: r.reason,
            message: None,
            created_ms: r.created_ms,
            decided_ms: r.decided_ms,
            decided_index: r.decided_index,
            timing: r.timing,
            check_count: r.check_count,
            next_check_ms: r.next_check_ms,
            deadline_ms: r.deadline_ms,
            position: r.message_position(),
            history: r.history(),
        };
        let loaded = TxnRecord::decode_row(&codec::encode(&row).expect("encode")).expect("load");
        // Without a sequence the decision's log index orders it.
        assert_eq!(loaded.decided_seq, Some(12));
        assert_eq!(loaded.events, r.events);
        assert_eq!(
            TxnRecord {
                decided_seq: r.decided_seq,
                ..loaded
            },
            r
        );
    }
}
