//! The openraft state machine: applies committed entries through the pure
//! [`txmq_state::BrokerState`] (message bodies to the queue files now, rows and transaction
//! records by write-behind checkpoints, see [`super::checkpoint`]), and builds, serves and
//! installs snapshots.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use tokio::sync::watch;
use txmq_state::{Changes, Command, CommandResult};

use super::checkpoint::Checkpointer;
use super::load::{load, stored_offsets};
use super::reader::StateReader;
use super::replica::Replica;
use super::snapshot_build::SnapshotBuilder;
use super::snapshot_install::install_exclusive;
use super::upgrade::{move_segment_rows_to_files, move_txn_rows_to_journal};
use crate::files::queue_files::QueueFiles;
use crate::files::txn_journal::TxnJournal;
use crate::snapshot::expand::SnapshotSource;
use crate::snapshot::format::{CURRENT_SNAPSHOT, SnapshotReader};
use crate::types::alias::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership};
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// The openraft state machine of a node.
pub struct StateMachineStore {
    replica: Arc<Replica>,
    snapshot_dir: PathBuf,
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
        let replica = Arc::new(Replica {
            tree,
            queues: Arc::new(queues),
            journal,
            checkpointer: Checkpointer::default(),
            state: RwLock::new(state),
            applied: RwLock::new(applied),
            applied_index,
        });
        Ok(Self {
            replica,
            snapshot_dir,
        })
    }

    /// Writes the applied state through to disk now (the log store calls this before it purges
    /// entries: they must not be needed to rebuild the state after a restart).
    pub fn checkpointer(&self) -> impl Fn() -> io::Result<()> + Send + Sync + 'static {
        let replica = self.replica.clone();
        move || replica.checkpoint()
    }

    /// What turns this node's snapshot manifests into full snapshots for followers.
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource {
            queues: self.replica.queues.clone(),
        }
    }

    /// A read handle for the services.
    pub fn reader(&self) -> StateReader {
        StateReader::new(self.replica.clone())
    }

    fn apply_entry(&self, entry: Entry) -> io::Result<CommandResult> {
        let mut applied = self.replica.read_applied();
        applied.last_applied = Some(entry.log_id);
        // The write lock is held until the messages are in the queue files, so a reader never
        // sees an offset whose message is not there yet. If the write fails the node stops
        // (openraft treats a storage error as fatal), so memory running ahead of disk is never
        // observed.
        let mut state = self.replica.write_state();
        let payload: &EntryPayload<Command, NodeId, NodeInfo> = &entry.payload;
        let (result, changes) = match payload {
            EntryPayload::Blank => (CommandResult::Nothing, Changes::default()),
            EntryPayload::Normal(command) => match state.apply(entry.log_id.index, command) {
                Ok(applied) => (applied.result, applied.changes),
                Err(e) => {
                    let why = format!("applying entry {}: {e}", entry.log_id.index);
                    self.replica.checkpointer.refuse_from_now(why);
                    return Err(e.into());
                }
            },
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                (CommandResult::Nothing, Changes::default())
            }
        };
        self.replica.checkpointer.record(
            &self.replica.queues,
            changes,
            applied.clone(),
            Instant::now(),
        )?;
        drop(state);
        self.replica.set_applied(applied);
        Ok(result)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.replica.read_applied();
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        self.replica.checkpointer.earlier_failure()?;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = self.apply_entry(entry)?;
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        if self.replica.checkpointer.due(Instant::now()) {
            self.replica.checkpoint_in_background();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called on the state-machine task, so nothing is applied concurrently: the metadata and
        // applied state captured here are one consistent point. Message segments are immutable,
        // so the snapshot only records the captured offsets; the sender reads the segments when
        // it streams the snapshot (`expand_snapshot`).
        SnapshotBuilder {
            replica: self.replica.clone(),
            state: self.replica.read_state().clone(),
            applied: self.replica.read_applied(),
            snapshot_dir: self.snapshot_dir.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), io::Error> {
        let replica = self.replica.clone();
        let dir = self.snapshot_dir.clone();
        let meta = meta.clone();
        let file = snapshot.into_std().await;
        let (state, applied) =
            tokio::task::spawn_blocking(move || install_exclusive(&replica, &dir, &meta, file))
                .await
                .map_err(io::Error::other)??;
        *self.replica.write_state() = state;
        self.replica.set_applied(applied);
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
