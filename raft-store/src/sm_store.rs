//! The state-machine store: applies committed entries through the pure [`BrokerState`] (message
//! bodies to the queue files, rows to sled by write-behind checkpoints, see
//! [`crate::checkpoint`]), builds and installs streaming snapshots.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::checkpoint::{Checkpointer, Stores};
use crate::codec;
use crate::command::{Command, CommandResult};
use crate::keys;
use crate::queue_files::QueueFiles;
use crate::reader::StateReader;
use crate::snapshot::{FORMAT_VERSION, SnapshotHeader, SnapshotReader, SnapshotWriter, write_file};
use crate::state::{BrokerState, TopicMeta, TxnRecord, WriteBatch};
use crate::txn_journal::{JournalRange, TxnJournal};
use crate::types::alias::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership};
use crate::types::{NodeId, NodeInfo, TypeConfig};

const CURRENT_SNAPSHOT: &str = "current.snap";
/// Rows per sled batch while installing a snapshot: bounds memory during install.
const INSTALL_BATCH_ROWS: usize = 1024;

/// The last applied log id and membership, stored in the same atomic batch as the rows (of a
/// checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// State shared between the state-machine task (writer) and the services (readers).
pub(crate) struct Shared {
    pub(crate) tree: sled::Tree,
    pub(crate) queues: Arc<QueueFiles>,
    pub(crate) journal: TxnJournal,
    pub(crate) checkpointer: Checkpointer,
    pub(crate) state: RwLock<BrokerState>,
    pub(crate) applied: RwLock<AppliedState>,
    pub(crate) applied_index: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, BrokerState> {
        // A poisoned lock means an apply panicked (a bug); the data it guards is still the last
        // consistent value because writes happen after the sled batch succeeded.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, BrokerState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn read_applied(&self) -> AppliedState {
        self.applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Writes a checkpoint now (blocking).
    pub(crate) fn checkpoint(&self) -> io::Result<()> {
        self.checkpointer.checkpoint(self.stores(), &self.state)
    }

    fn stores(&self) -> Stores<'_> {
        Stores {
            queues: &self.queues,
            journal: &self.journal,
            tree: &self.tree,
        }
    }

    /// [`Self::checkpoint`] on a blocking thread.
    async fn checkpoint_async(self: &Arc<Self>) -> io::Result<()> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.checkpoint())
            .await
            .map_err(io::Error::other)?
    }

    /// Starts a checkpoint on a blocking thread without waiting for it (applies go on; the
    /// checkpoint takes the pending rows first, so it writes a consistent prefix). Skipped while
    /// one is still running.
    fn checkpoint_in_background(self: &Arc<Self>) {
        if !self.checkpointer.start_background() {
            return;
        }
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = shared.checkpoint();
            shared.checkpointer.finish_background(result);
        });
    }

    fn set_applied(&self, applied: AppliedState) {
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        *self.applied.write().unwrap_or_else(|p| p.into_inner()) = applied;
        self.applied_index.send_replace(index);
    }
}

/// The openraft state machine of a node.
pub struct StateMachineStore {
    shared: Arc<Shared>,
    snapshot_dir: PathBuf,
}

fn io_err(e: sled::Error) -> io::Error {
    io::Error::other(e)
}

impl StateMachineStore {
    /// Opens the state machine over `tree` (rows), `queues` (message bodies) and `journal`
    /// (transaction records), loading the metadata into memory and cutting the queue files
    /// and the journal back to what the rows name.
    pub fn open(
        tree: sled::Tree,
        queues: QueueFiles,
        journal: TxnJournal,
        snapshot_dir: PathBuf,
    ) -> io::Result<Self> {
        move_segment_rows_to_files(&tree, &queues)?;
        move_txn_rows_to_journal(&tree, &journal)?;
        let (state, applied) = load(&tree, &journal)?;
        queues.reconcile(&stored_offsets(&state))?;
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let (applied_index, _) = watch::channel(index);
        let shared = Arc::new(Shared {
            tree,
            queues: Arc::new(queues),
            journal,
            checkpointer: Checkpointer::default(),
            state: RwLock::new(state),
            applied: RwLock::new(applied),
            applied_index,
        });
        Ok(Self {
            shared,
            snapshot_dir,
        })
    }

    /// Writes the applied state through to disk now (the log store calls this before it purges
    /// entries: they must not be needed to rebuild the state after a restart).
    pub fn checkpointer(&self) -> impl Fn() -> io::Result<()> + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.checkpoint()
    }

    /// What turns this node's snapshot manifests into full snapshots for followers.
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource {
            queues: self.shared.queues.clone(),
        }
    }

    /// A read handle for the services.
    pub fn reader(&self) -> StateReader {
        StateReader::new(self.shared.clone())
    }

    fn apply_entry(&self, entry: Entry) -> io::Result<CommandResult> {
        let mut batch = WriteBatch::default();
        let mut applied = self.shared.read_applied();
        applied.last_applied = Some(entry.log_id);
        // The write lock is held until the messages are in the queue files, so a reader never
        // sees an offset whose message is not there yet. If the write fails the node stops
        // (openraft treats a storage error as fatal), so memory running ahead of disk is never
        // observed.
        let mut state = self.shared.write_state();
        let payload: &EntryPayload<Command, NodeId, NodeInfo> = &entry.payload;
        let result = match payload {
            EntryPayload::Blank => CommandResult::Nothing,
            EntryPayload::Normal(command) => {
                state.apply(entry.log_id.index, command, &mut batch)?
            }
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResult::Nothing
            }
        };
        self.shared
            .checkpointer
            .record(&self.shared.queues, batch, applied.clone())?;
        drop(state);
        self.shared.set_applied(applied);
        Ok(result)
    }
}

/// Loads metadata rows and the applied state from the tree, and the transactions from the
/// journal (cut to the range the tree names).
fn load(tree: &sled::Tree, journal: &TxnJournal) -> io::Result<(BrokerState, AppliedState)> {
    let mut state = BrokerState::default();
    for item in tree.scan_prefix([keys::TOPIC_PREFIX]) {
        let (_, bytes) = item.map_err(io_err)?;
        let meta: TopicMeta = codec::decode(&bytes)?;
        state.topics.insert(meta.name.clone(), meta);
    }
    for item in tree.scan_prefix([keys::RETIRED_PREFIX]) {
        let (key, _) = item.map_err(io_err)?;
        let id = key
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "malformed retired-node row")
            })?;
        state.retired_nodes.insert(id);
    }
    for item in tree.scan_prefix([keys::GROUP_PREFIX]) {
        let (_, bytes) = item.map_err(io_err)?;
        let g: crate::state::GroupState = codec::decode(&bytes)?;
        state.groups.insert((g.group.clone(), g.topic.clone()), g);
    }
    let range: JournalRange = match tree.get(keys::JOURNAL_KEY).map_err(io_err)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => JournalRange::default(),
    };
    state.transactions = journal.load(range)?;
    let applied = match tree.get(keys::APPLIED_KEY).map_err(io_err)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => AppliedState::default(),
    };
    Ok((state, applied))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.shared.read_applied();
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        self.shared.checkpointer.earlier_failure()?;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = self.apply_entry(entry)?;
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        if self.shared.checkpointer.due() {
            self.shared.checkpoint_in_background();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called on the state-machine task, so nothing is applied concurrently: the metadata and
        // applied state captured here are one consistent point. Message segments are immutable,
        // so the snapshot only records the captured offsets; the sender reads the segments when
        // it streams the snapshot (`expand_snapshot`).
        SnapshotBuilder {
            shared: self.shared.clone(),
            state: self.shared.read_state().clone(),
            applied: self.shared.read_applied(),
            snapshot_dir: self.snapshot_dir.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), io::Error> {
        let shared = self.shared.clone();
        let dir = self.snapshot_dir.clone();
        let meta = meta.clone();
        let file = snapshot.into_std().await;
        let (state, applied) =
            tokio::task::spawn_blocking(move || install_exclusive(&shared, &dir, &meta, file))
                .await
                .map_err(io::Error::other)??;
        *self.shared.write_state() = state;
        self.shared.set_applied(applied);
        metrics::counter!("txmq_raft_snapshots_installed_total").increment(1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let path = self.snapshot_dir.join(CURRENT_SNAPSHOT);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let reader_file = file.try_clone()?;
        let (header, _) = SnapshotReader::open(reader_file)?;
        let mut file = tokio::fs::File::from_std(file);
        use tokio::io::AsyncSeekExt;
        file.seek(io::SeekFrom::Start(0)).await?;
        Ok(Some(Snapshot {
            meta: header.meta,
            snapshot: file,
        }))
    }
}

/// [`install_blocking`] with no checkpoint running, discarding what was pending: the snapshot
/// replaces the whole state.
fn install_exclusive(
    shared: &Shared,
    dir: &std::path::Path,
    meta: &SnapshotMeta,
    file: std::fs::File,
) -> io::Result<(BrokerState, AppliedState)> {
    let _no_checkpoint = shared.checkpointer.exclusive();
    shared.checkpointer.discard();
    install_blocking(shared.stores(), dir, meta, file)
}

/// Replaces the stored state with the snapshot's, then keeps the file as the current snapshot.
fn install_blocking(
    stores: Stores<'_>,
    dir: &std::path::Path,
    meta: &SnapshotMeta,
    mut file: std::fs::File,
) -> io::Result<(BrokerState, AppliedState)> {
    use std::io::Seek;
    let Stores {
        queues,
        journal,
        tree,
    } = stores;
    file.seek(io::SeekFrom::Start(0))?;
    let (header, mut rows) = SnapshotReader::open(file.try_clone()?)?;
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
    queues.clear()?;
    journal.reset()?;
    tree.clear().map_err(io_err)?;
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    let mut records: Vec<TxnRecord> = Vec::new();
    while let Some((key, value)) = rows.next_row()? {
        if let Some((topic, queue, first)) = keys::parse_message_key(&key) {
            let messages = crate::segment::decode(first, &value)?;
            let messages: Vec<Vec<u8>> = messages.into_iter().map(|(_, m)| m.to_vec()).collect();
            queues.append(topic, queue, first, &messages)?;
            continue;
        }
        if key.first() == Some(&keys::TXN_PREFIX) {
            records.push(TxnRecord::decode_row(&value)?);
            if records.len() == INSTALL_BATCH_ROWS {
                journal.put_all(&records)?;
                records.clear();
            }
            continue;
        }
        batch.insert(key, value);
        pending += 1;
        if pending == INSTALL_BATCH_ROWS {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(io_err)?;
            pending = 0;
        }
    }
    journal.put_all(&records)?;
    batch.insert(keys::JOURNAL_KEY, codec::encode(&journal.range())?);
    batch.insert(keys::APPLIED_KEY, codec::encode(&header.applied)?);
    queues.sync()?;
    journal.sync()?;
    tree.apply_batch(batch).map_err(io_err)?;
    tree.flush().map_err(io_err)?;
    // The in-memory state is rebuilt from what was just written, exactly as after a restart.
    let (state, applied) = load(tree, journal)?;
    // Keep a manifest of it as our current snapshot, so we can serve it to others.
    let manifest = SnapshotHeader {
        manifest: true,
        ..header
    };
    write_file(
        &dir.join("installing.snap.tmp"),
        &dir.join(CURRENT_SNAPSHOT),
        &manifest,
        |w| {
            for (key, value) in state.metadata_rows()? {
                w.row(&key, &value)?;
            }
            Ok(())
        },
    )?;
    Ok((state, applied))
}

/// Builds a snapshot file from a captured point of the state.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    state: BrokerState,
    applied: AppliedState,
    snapshot_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        let last = self.applied.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
        };
        let header = SnapshotHeader {
            format_version: FORMAT_VERSION,
            meta: meta.clone(),
            applied: self.applied.clone(),
            manifest: true,
        };
        // The manifest names messages in the queue files: they must be durable before it is
        // (a checkpoint syncs them), or a crash could keep a manifest whose messages are gone.
        // The checkpoint is flushed too: after a restart the durable state is then at or past
        // the manifest, so openraft never has to rebuild this node from its own manifest (which
        // needs every message it names, and the restart cut the queues back to the state).
        self.shared.checkpoint_async().await?;
        self.shared.tree.flush_async().await.map_err(io_err)?;
        let dir = self.snapshot_dir.clone();
        let state = std::mem::take(&mut self.state);
        // Encoding every metadata row is a burst of CPU that is never urgent (see
        // `crate::background`); the checkpoint above stays at normal priority, since it holds
        // the state's lock for part of its work.
        let write = move || write_snapshot(&dir, header, &state);
        let path = crate::background::run_when_idle("txmq-snapshot", write).await??;
        let file = tokio::fs::File::open(path).await?;
        metrics::counter!("txmq_raft_snapshots_built_total").increment(1);
        metrics::histogram!("txmq_raft_snapshot_build_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }
}

/// Writes the snapshot's manifest: the captured metadata rows (the topic rows hold the offsets
/// the snapshot covers). The message segments stay in the tree (see `crate::snapshot`).
fn write_snapshot(
    dir: &std::path::Path,
    header: SnapshotHeader,
    state: &BrokerState,
) -> io::Result<PathBuf> {
    let dest = dir.join(CURRENT_SNAPSHOT);
    write_file(&dir.join("building.snap.tmp"), &dest, &header, |w| {
        // Metadata rows come from the captured state, not the tree, which may have moved on.
        for (key, value) in state.metadata_rows()? {
            w.row(&key, &value)?;
        }
        Ok(())
    })?;
    Ok(dest)
}

/// What a sender needs to turn its snapshot manifest into the full snapshot a follower
/// installs: the queue files.
#[derive(Clone)]
pub struct SnapshotSource {
    pub(crate) queues: Arc<QueueFiles>,
}

impl SnapshotSource {
    /// See [`expand_snapshot`].
    pub fn expand<W: io::Write>(&self, snapshot: std::fs::File, out: W) -> io::Result<W> {
        expand_snapshot(snapshot, &self.queues, out, false)
    }
}

/// Messages per segment row in an expanded snapshot.
const SNAPSHOT_SEGMENT_MESSAGES: usize = 256;

/// Writes the full snapshot that `snapshot` (a manifest, or already full) stands for to `out`:
/// its rows, then — for a manifest — every message inside the offsets its topic rows captured,
/// read from the queue files now, as segment rows (see [`crate::segment`]).
///
/// Messages never change once written, only retention deletes them. A message deleted since the
/// snapshot was taken is missing here; the receiver then applies the log after the snapshot,
/// whose retention entries move the low offsets past exactly those, and ends with the same state.
///
/// With `complete`, every captured offset must still be there (installing a manifest locally
/// restores this node's own state at the snapshot point; a missing message is an error, never
/// a smaller state).
pub fn expand_snapshot<W: io::Write>(
    snapshot: std::fs::File,
    queues: &QueueFiles,
    out: W,
    complete: bool,
) -> io::Result<W> {
    let (header, mut rows) = SnapshotReader::open(snapshot)?;
    let manifest = header.manifest;
    let full = SnapshotHeader {
        manifest: false,
        ..header
    };
    let mut writer = SnapshotWriter::new(out, &full)?;
    let mut topics = Vec::new();
    while let Some((key, value)) = rows.next_row()? {
        if manifest && key.first() == Some(&keys::TOPIC_PREFIX) {
            topics.push(codec::decode::<crate::state::TopicMeta>(&value)?);
        }
        writer.row(&key, &value)?;
    }
    for topic in &topics {
        for queue in 0..topic.queues {
            let q = queue as usize;
            let (low, next) = (topic.low_offsets[q], topic.next_offsets[q]);
            let mut chunk: Vec<Vec<u8>> = Vec::new();
            let mut chunk_first = low;
            let mut covered = 0u64;
            queues.read(topic.id, queue, low, next, |offset, message| {
                if chunk.is_empty() {
                    chunk_first = offset;
                } else if chunk_first + chunk.len() as u64 != offset {
                    // A gap (deleted meanwhile): segments hold consecutive offsets.
                    flush_chunk(&mut writer, topic.id, queue, chunk_first, &mut chunk)?;
                    chunk_first = offset;
                }
                chunk.push(message.to_vec());
                covered += 1;
                if chunk.len() == SNAPSHOT_SEGMENT_MESSAGES {
                    flush_chunk(&mut writer, topic.id, queue, chunk_first, &mut chunk)?;
                }
                Ok(true)
            })?;
            flush_chunk(&mut writer, topic.id, queue, chunk_first, &mut chunk)?;
            if complete && covered != next - low {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "snapshot manifest: topic {} queue {queue} covers offsets {low}..{next} but \
                         only {covered} messages are stored here; it cannot be installed on this node",
                        topic.name
                    ),
                ));
            }
        }
    }
    writer.end()
}

/// Writes the buffered messages (consecutive from `first`) as one segment row.
fn flush_chunk<W: io::Write>(
    writer: &mut SnapshotWriter<W>,
    topic: u64,
    queue: u32,
    first: u64,
    chunk: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let value = crate::segment::encode(chunk);
    writer.row(&keys::message_key(topic, queue, first), &value)?;
    chunk.clear();
    Ok(())
}

/// The offsets each queue holds, `(low, next)` by `(topic id, queue)`.
fn stored_offsets(state: &BrokerState) -> HashMap<(u64, u32), (u64, u64)> {
    let mut out = HashMap::new();
    for topic in state.topics.values() {
        for queue in 0..topic.queues {
            let q = queue as usize;
            out.insert(
                (topic.id, queue),
                (topic.low_offsets[q], topic.next_offsets[q]),
            );
        }
    }
    out
}

/// Earlier versions kept message segments as sled rows: move them into the queue files (synced
/// before the rows are deleted), once.
fn move_segment_rows_to_files(tree: &sled::Tree, queues: &QueueFiles) -> io::Result<()> {
    if tree.scan_prefix([keys::MESSAGE_PREFIX]).next().is_none() {
        return Ok(());
    }
    // Queue files next to segment rows can only be an interrupted earlier move: start over.
    queues.clear()?;
    let mut moved = Vec::new();
    for item in tree.scan_prefix([keys::MESSAGE_PREFIX]) {
        let (key, value) = item.map_err(io_err)?;
        let Some((topic, queue, first)) = keys::parse_message_key(&key) else {
            continue;
        };
        let messages: Vec<Vec<u8>> = crate::segment::decode(first, &value)?
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
    tree.apply_batch(batch).map_err(io_err)?;
    tree.flush().map_err(io_err)?;
    tracing::info!(
        segments = moved.len(),
        "moved message segments out of sled into queue files"
    );
    Ok(())
}

/// Earlier versions kept transaction records as sled rows: move them into the journal (synced
/// before the rows are deleted and the journal's range recorded, in one batch), once.
fn move_txn_rows_to_journal(tree: &sled::Tree, journal: &TxnJournal) -> io::Result<()> {
    if tree.scan_prefix([keys::TXN_PREFIX]).next().is_none() {
        return Ok(());
    }
    // A journal next to transaction rows can only be an interrupted earlier move: start over.
    journal.reset()?;
    let mut keys_moved = Vec::new();
    let mut records: Vec<TxnRecord> = Vec::new();
    for item in tree.scan_prefix([keys::TXN_PREFIX]) {
        let (key, value) = item.map_err(io_err)?;
        records.push(TxnRecord::decode_row(&value)?);
        keys_moved.push(key);
        if records.len() == INSTALL_BATCH_ROWS {
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
    tree.apply_batch(batch).map_err(io_err)?;
    tree.flush().map_err(io_err)?;
    tracing::info!(
        transactions = keys_moved.len(),
        "moved transaction records out of sled into the transaction journal"
    );
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
