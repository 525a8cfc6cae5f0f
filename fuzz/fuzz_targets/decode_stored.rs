//! Every on-disk decoder from arbitrary bytes: log and queue frames, message rows, transaction
//! rows, snapshot files, and the state's rows (topics, groups, users). A damaged disk must give
//! an error, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txmq_raft_store::files::frame;
use txmq_raft_store::rows::{message_rows, txn_row};
use txmq_raft_store::snapshot::format::SnapshotReader;
use txmq_state::{GroupState, StoredMessage, TopicMeta, User, codec};

fuzz_target!(|bytes: &[u8]| {
    let mut rest = bytes;
    while let Some((payload, len)) = frame::read(rest) {
        assert!(payload.len() < len && len <= rest.len());
        rest = &rest[len..];
    }
    if let Ok(messages) = message_rows::decode(7, bytes) {
        assert!(messages.iter().all(|(_, m)| m.len() <= bytes.len()));
    }
    let _ = message_rows::count(bytes);
    let _ = txn_row::decode_txn_row(bytes);
    if let Ok((_, mut rows)) = SnapshotReader::open(bytes) {
        // Each row consumes input, so this ends; the bound only keeps a run short.
        for _ in 0..10_000 {
            match rows.next_row() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    let _ = codec::decode::<TopicMeta>(bytes);
    let _ = codec::decode::<GroupState>(bytes);
    let _ = codec::decode::<User>(bytes);
    let _ = codec::decode::<StoredMessage>(bytes);
});
