//! Moving data directories of earlier versions to today's layout, once, at start.

use std::io;

use txmq_state::TxnRecord;
use txmq_state::codec;

use crate::files::queue_files::QueueFiles;
use crate::files::txn_journal::TxnJournal;
use crate::rows::keys;
use crate::rows::message_rows;
use crate::rows::txn_row::decode_txn_row;

/// Records per journal write while moving.
const MOVE_BATCH_RECORDS: usize = 1024;

/// Earlier versions kept message segments as sled rows: move them into the queue files (synced
/// before the rows are deleted), once.
pub(crate) fn move_segment_rows_to_files(tree: &sled::Tree, queues: &QueueFiles) -> io::Result<()> {
    if tree.scan_prefix([keys::MESSAGE_PREFIX]).next().is_none() {
        return Ok(());
    }
    // Queue files next to segment rows can only be an interrupted earlier move: start over.
    queues.clear()?;
    let mut moved = Vec::new();
    for item in tree.scan_prefix([keys::MESSAGE_PREFIX]) {
        let (key, value) = item.map_err(io::Error::other)?;
        let Some((topic, queue, first)) = keys::parse_message_key(&key) else {
            continue;
        };
        let messages: Vec<Vec<u8>> = message_rows::decode(first, &value)?
            .into_iter()
            .map(|(_, m)| m.to_vec())
            .collect();
        queues.append(topic, queue, first, &messages)?;
        moved.push(key);
    }
    queues.sync()?;
    let mut batch = sled::Batch::default();
    for key in &moved {
        batch.remove(key);
    }
    tree.apply_batch(batch).map_err(io::Error::other)?;
    tree.flush().map_err(io::Error::other)?;
    tracing::info!(
        segments = moved.len(),
        "moved message segments out of sled into queue files"
    );
    Ok(())
}

/// Earlier versions kept transaction records as sled rows: move them into the journal (synced
/// before the rows are deleted and the journal's range recorded, in one batch), once.
pub(crate) fn move_txn_rows_to_journal(tree: &sled::Tree, journal: &TxnJournal) -> io::Result<()> {
    if tree.scan_prefix([keys::TXN_PREFIX]).next().is_none() {
        return Ok(());
    }
    // A journal next to transaction rows can only be an interrupted earlier move: start over.
    journal.reset()?;
    let mut keys_moved = Vec::new();
    let mut records: Vec<TxnRecord> = Vec::new();
    for item in tree.scan_prefix([keys::TXN_PREFIX]) {
        let (key, value) = item.map_err(io::Error::other)?;
        records.push(decode_txn_row(&value)?);
        keys_moved.push(key);
        if records.len() == MOVE_BATCH_RECORDS {
            journal.put_all(&records)?;
            records.clear();
        }
    }
    journal.put_all(&records)?;
    journal.sync()?;
    let mut batch = sled::Batch::default();
    for key in &keys_moved {
        batch.remove(key);
    }
    batch.insert(keys::JOURNAL_KEY, codec::encode(&journal.range())?);
    tree.apply_batch(batch).map_err(io::Error::other)?;
    tree.flush().map_err(io::Error::other)?;
    tracing::info!(
        transactions = keys_moved.len(),
        "moved transaction records out of sled into the transaction journal"
    );
    Ok(())
}
