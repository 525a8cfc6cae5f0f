//! Transaction records as snapshot rows (`X` + id → [`TxnRow`]).
//!
//! The layout rows had before transaction ids became integers: nodes of different versions
//! exchange snapshots, and rows of old data directories still load. The transaction journal
//! uses the record's own positional form instead ([`txmq_state::TxnRecord`]).

use serde::{Deserialize, Serialize};
use txmq_state::codec::{self, CodecError};
use txmq_state::{
    DecisionSource, MAX_EVENTS, MessagePosition, NewMessage, TxnEvent, TxnEventKind, TxnId,
    TxnRecord, TxnState, TxnTiming,
};

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

/// The record as a snapshot row ([`TxnRow`], positional).
pub fn encode_txn_row(record: &TxnRecord) -> Result<Vec<u8>, CodecError> {
    let id = record.id.text();
    let message_id = &id[1..];
    let mut out = Vec::with_capacity(record.encoded_size_hint() + 2 * id.len() + 40);
    codec::encode_compact_into(
        &mut out,
        &TxnRowRef {
            id: &id,
            group: &record.group,
            topic: &record.topic,
            message_id,
            state: record.state,
            reason: record.reason,
            message: record.message.as_ref(),
            created_ms: record.created_ms,
            decided_ms: record.decided_ms,
            decided_index: record.decided_index,
            timing: record.timing,
            check_count: record.check_count,
            next_check_ms: record.next_check_ms,
            deadline_ms: record.deadline_ms,
            position: record.position.map(|(queue, offset)| PositionRef {
                message_id,
                queue,
                offset,
            }),
            history: HistoryRef(record),
            decided_seq: record.decided_seq,
        },
    )?;
    Ok(out)
}

/// A record from a row of any version (named or positional [`TxnRow`]).
pub fn decode_txn_row(bytes: &[u8]) -> std::io::Result<TxnRecord> {
    let row: TxnRow = codec::decode(bytes)?;
    txn_record_from_row(row).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn txn_record_from_row(row: TxnRow) -> Result<TxnRecord, String> {
    let id = TxnId::parse(&row.id).ok_or_else(|| format!("not a transaction id: '{}'", row.id))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let row = encode_txn_row(&r).expect("encode");
        assert!(journal.len() < row.len());
        assert_eq!(codec::decode::<TxnRecord>(&journal).expect("decode"), r);
        assert_eq!(decode_txn_row(&row).expect("decode"), r);
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
        let loaded = decode_txn_row(&codec::encode(&row).expect("encode")).expect("load");
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
