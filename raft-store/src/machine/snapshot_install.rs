//! Installing a snapshot a leader sent: the stored state is replaced by the snapshot's.

use std::io;

use txmq_state::codec;
use txmq_state::{BrokerState, TxnRecord};

use super::checkpoint::CheckpointTargets;
use super::load::load;
use super::replica::Replica;
use crate::files::file_system::{FileSystem, OsFs};
use crate::rows::applied_state::AppliedState;
use crate::rows::keys;
use crate::rows::message_rows;
use crate::rows::row_store::{RowBatch, RowStore};
use crate::rows::state_rows::metadata_rows;
use crate::rows::txn_row::decode_txn_row;
use crate::snapshot::expand::expand_snapshot;
use crate::snapshot::format::{SnapshotHeader, SnapshotReader, write_file};
use crate::types::alias::SnapshotMeta;

/// Rows per sled batch while installing a snapshot: bounds memory during install.
const INSTALL_BATCH_ROWS: usize = 1024;

/// [`install_blocking`] with no checkpoint running, discarding what was pending: the snapshot
/// replaces the whole state.
pub(crate) fn install_exclusive(
    replica: &Replica,
    dir: &std::path::Path,
    meta: &SnapshotMeta,
    file: std::fs::File,
) -> io::Result<(BrokerState, AppliedState)> {
    let _no_checkpoint = replica.checkpointer.exclusive();
    replica.checkpointer.discard();
    install_blocking(replica.stores(), dir, meta, file)
}

/// Replaces the stored state with the snapshot's, then keeps the file as the current snapshot.
fn install_blocking(
    stores: CheckpointTargets<'_, OsFs, sled::Tree>,
    dir: &std::path::Path,
    meta: &SnapshotMeta,
    mut file: std::fs::File,
) -> io::Result<(BrokerState, AppliedState)> {
    use std::io::Seek;
    let CheckpointTargets {
        queues,
        journal,
        rows: tree,
    } = stores;
    file.seek(io::SeekFrom::Start(0))?;
    let (header, rows) = SnapshotReader::open(file.try_clone()?)?;
    if header.meta.last_log_id != meta.last_log_id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot file does not match the snapshot meta it was sent with",
        ));
    }
    if header.manifest {
        // A manifest holds no messages: restore from this node's own segments (all of them must
        // still be here), by expanding it into a full snapshot first.
        file.seek(io::SeekFrom::Start(0))?;
        let mut full = expand_snapshot(file, queues, tempfile_in(dir)?, true)?;
        full.seek(io::SeekFrom::Start(0))?;
        return install_blocking(stores, dir, meta, full);
    }
    drop(rows);
    keep_as_current(dir, &mut file)?;
    let (header, mut rows) = SnapshotReader::open(file)?;
    restore_rows(stores, &mut rows, &header)?;
    // The in-memory state is rebuilt from what was just written, exactly as after a restart.
    let (state, applied) = load(tree, journal)?;
    // Keep a manifest of it as our current snapshot, so we can serve it to others.
    let manifest = SnapshotHeader {
        manifest: true,
        ..header
    };
    write_file(
        &dir.join("installing.snap.tmp"),
        &dir.join(crate::snapshot::format::CURRENT_SNAPSHOT),
        &manifest,
        |w| {
            for (key, value) in metadata_rows(&state)? {
                w.row(&key, &value)?;
            }
            Ok(())
        },
    )?;
    Ok((state, applied))
}

/// Makes the full snapshot being installed this node's current snapshot, durably, before the
/// stores are touched: if the install stops half way (a crash, a failed write), the node
/// restarts with empty rows (nothing applied) and this snapshot, which openraft then installs
/// again. Without it the node would hold only its older manifest, whose messages the half
/// install had deleted, and could not start.
fn keep_as_current(dir: &std::path::Path, file: &mut std::fs::File) -> io::Result<()> {
    use std::io::Seek;
    let tmp = dir.join("installing.snap.tmp");
    let mut copy = std::fs::File::create(&tmp)?;
    file.seek(io::SeekFrom::Start(0))?;
    io::copy(file, &mut copy)?;
    copy.sync_all()?;
    std::fs::rename(&tmp, dir.join(crate::snapshot::format::CURRENT_SNAPSHOT))?;
    crate::files::numbered_files::sync_dir(dir)?;
    file.seek(io::SeekFrom::Start(0))?;
    Ok(())
}

/// Replaces the stores' contents with the snapshot's rows: message rows go to the queue files,
/// transaction rows to the journal, the rest to sled, written in bounded batches; the journal's
/// range and the applied state go last, in the batch written after every file is synced.
///
/// The rows are emptied (durably) first, before any file goes: at every point of a crash the
/// rows name only files that are still there, so the node can open its stores again (with
/// nothing applied, after which openraft installs its current snapshot again).
pub fn restore_rows<F: FileSystem, S: RowStore, R: io::Read>(
    stores: CheckpointTargets<'_, F, S>,
    rows: &mut SnapshotReader<R>,
    header: &SnapshotHeader,
) -> io::Result<()> {
    let CheckpointTargets {
        queues,
        journal,
        rows: tree,
    } = stores;
    tree.clear()?;
    tree.flush()?;
    queues.clear()?;
    journal.reset()?;
    let mut batch = RowBatch::default();
    let mut pending = 0usize;
    let mut records: Vec<TxnRecord> = Vec::new();
    while let Some((key, value)) = rows.next_row()? {
        if let Some((topic, queue, first)) = keys::parse_message_key(&key) {
            let messages = message_rows::decode(first, &value)?;
            let messages: Vec<Vec<u8>> = messages.into_iter().map(|(_, m)| m.to_vec()).collect();
            queues.append(topic, queue, first, &messages)?;
        } else if key.first() == Some(&keys::TXN_PREFIX) {
            records.push(decode_txn_row(&value)?);
            if records.len() == INSTALL_BATCH_ROWS {
                journal.put_all(&records)?;
                records.clear();
            }
        } else {
            batch.insert(key, value);
            pending += 1;
            if pending == INSTALL_BATCH_ROWS {
                tree.apply(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
    }
    journal.put_all(&records)?;
    batch.insert(keys::JOURNAL_KEY, codec::encode(&journal.range())?);
    batch.insert(keys::APPLIED_KEY, codec::encode(&header.applied)?);
    queues.sync()?;
    journal.sync()?;
    tree.apply(batch)?;
    tree.flush()?;
    Ok(())
}

/// An anonymous temporary file next to the snapshots (same disk, removed when closed).
fn tempfile_in(dir: &std::path::Path) -> io::Result<std::fs::File> {
    let path = dir.join(format!("expanding-{}.snap.tmp", std::process::id()));
    let file = std::fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}
