//! A simulated node's state machine, as the node's `StateMachineStore` is made: the real
//! `BrokerState::apply`, its messages appended to the real queue files and its other changes
//! written by the real write-behind checkpoints (transaction journal, rows), all on the node's
//! simulated disk. A restarted incarnation loads what the last checkpoint the disk kept holds
//! and re-applies the log after it; snapshots are the real manifests, expanded by the sender,
//! installed as the node installs them.
//!
//! What differs from the node: checkpoints run as simulation tasks (after an fsync's delay)
//! rather than on blocking threads, and snapshots are records, not files.

use std::io::{self, Cursor};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use txmq_raft_store::machine::{load, restore_rows};
use txmq_raft_store::rows::applied_state::AppliedState;
use txmq_raft_store::rows::row_store::RowStore;
use txmq_raft_store::rows::state_rows::metadata_rows;
use txmq_raft_store::snapshot::expand::expand_snapshot;
use txmq_raft_store::snapshot::format::{
    FORMAT_VERSION, SnapshotHeader, SnapshotReader, SnapshotWriter,
};
use txmq_state::{BrokerState, Changes, CommandResult};

use crate::disk::{DiskWrite, SimDisk, StoredSnapshot};
use crate::replica::Replica;
use crate::state_store::{SimStores, convert};
use crate::types::{LogId, SimConfig, SnapshotMeta, StoredMembership, spawn};

/// openraft's state machine for one incarnation.
#[derive(Clone)]
pub struct SimStateMachine {
    replica: Arc<Mutex<Replica>>,
    disk: Arc<SimDisk>,
    epoch: u64,
}

type Snapshot = openraft::alias::SnapshotOf<SimConfig, Vec<u8>>;

fn lock(replica: &Mutex<Replica>) -> MutexGuard<'_, Replica> {
    replica.lock().unwrap_or_else(|p| p.into_inner())
}

/// The simulation's clock as the store's checkpoint schedule reads it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl SimStateMachine {
    /// The state machine of a new incarnation, opened from what its disk holds.
    pub fn open(disk: Arc<SimDisk>) -> io::Result<Self> {
        let epoch = disk.epoch();
        let (stores, state, applied) = SimStores::open(disk.clone(), epoch)?;
        let replica = Replica {
            state: RwLock::new(state),
            last_applied: convert(&applied.last_applied)?,
            membership: convert(&applied.membership)?,
            stores: Arc::new(stores),
        };
        Ok(SimStateMachine {
            replica: Arc::new(Mutex::new(replica)),
            disk,
            epoch,
        })
    }

    pub fn replica(&self) -> Arc<Mutex<Replica>> {
        self.replica.clone()
    }

    fn apply_one(&self, entry: crate::types::Entry) -> io::Result<CommandResult> {
        let mut r = lock(&self.replica);
        r.last_applied = Some(entry.log_id);
        let (result, changes) = match entry.payload {
            EntryPayload::Blank => (CommandResult::Nothing, Changes::default()),
            EntryPayload::Normal(command) => {
                let state = r.state.get_mut().unwrap_or_else(|p| p.into_inner());
                match state.apply(entry.log_id.index, &command) {
                    Ok(applied) => (applied.result, applied.changes),
                    Err(e) => {
                        let why = format!("applying entry {}: {e}", entry.log_id.index);
                        r.stores.checkpointer.refuse_from_now(why);
                        return Err(io::Error::other(e));
                    }
                }
            }
            EntryPayload::Membership(m) => {
                r.membership = StoredMembership::new(Some(entry.log_id), m);
                (CommandResult::Nothing, Changes::default())
            }
        };
        let applied = AppliedState {
            last_applied: convert(&r.last_applied)?,
            membership: convert(&r.membership)?,
        };
        let stores = &r.stores;
        stores
            .checkpointer
            .record(&stores.queues, changes, applied, now())?;
        Ok(result)
    }

    /// Starts the checkpoint due, if any, as a task that first waits an fsync's time (the
    /// node runs it on a blocking thread while applies go on).
    fn checkpoint_when_due(&self) {
        let stores = lock(&self.replica).stores.clone();
        if !stores.checkpointer.due(now()) || !stores.checkpointer.start_background() {
            return;
        }
        let (replica, disk) = (self.replica.clone(), self.disk.clone());
        spawn(async move {
            disk.fsync_delay().await;
            let r = lock(&replica);
            let result = r.stores.checkpoint(&r.state);
            r.stores.checkpointer.finish_background(result);
        });
    }
}

/// The manifest of `state` (its metadata rows) in the real snapshot format.
fn manifest(
    meta: &SnapshotMeta,
    applied: AppliedState,
    state: &BrokerState,
) -> io::Result<Vec<u8>> {
    let header = SnapshotHeader {
        format_version: FORMAT_VERSION,
        meta: convert(meta)?,
        applied,
        manifest: true,
    };
    let mut writer = SnapshotWriter::new(Vec::new(), &header)?;
    for (key, value) in metadata_rows(state)? {
        writer.row(&key, &value)?;
    }
    writer.end()
}

/// Makes `data` (a manifest, or a full snapshot) the current snapshot on the disk and waits
/// until it is durable.
async fn persist(disk: &SimDisk, epoch: u64, meta: &SnapshotMeta, data: Vec<u8>) -> io::Result<()> {
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data,
    };
    disk.write(epoch, DiskWrite::Snapshot(Box::new(stored)))?;
    disk.sync(epoch).await
}

/// Builds a snapshot of the state as it was when openraft asked for the builder.
pub struct SimSnapshotBuilder {
    replica: Arc<Mutex<Replica>>,
    state: BrokerState,
    meta: SnapshotMeta,
    disk: Arc<SimDisk>,
    epoch: u64,
}

impl RaftSnapshotBuilder<SimConfig> for SimSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // As the node: the manifest names messages in the queue files, so a checkpoint makes
        // them (and the state at or past the manifest) durable first.
        self.disk.fsync_delay().await;
        {
            let r = lock(&self.replica);
            r.stores.checkpoint(&r.state)?;
            r.stores.rows.flush()?;
        }
        let applied = AppliedState {
            last_applied: convert(&self.meta.last_log_id)?,
            membership: convert(&self.meta.last_membership)?,
        };
        let manifest = manifest(&self.meta, applied, &self.state)?;
        persist(&self.disk, self.epoch, &self.meta, manifest.clone()).await?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: manifest,
        })
    }
}

/// Replaces the stores' contents with a full snapshot's (the node's install, on the simulated
/// disk) and loads the state back from them; returns the manifest to keep as current.
fn install(replica: &mut Replica, meta: &SnapshotMeta, full: &[u8]) -> io::Result<Vec<u8>> {
    let stores = replica.stores.clone();
    stores.checkpointer.discard();
    let (header, mut rows) = SnapshotReader::open(Cursor::new(full))?;
    restore_rows(stores.targets(), &mut rows, &header)?;
    let (state, applied) = load(&stores.rows, &stores.journal)?;
    let kept = manifest(meta, applied.clone(), &state)?;
    *replica.state.get_mut().unwrap_or_else(|p| p.into_inner()) = state;
    replica.last_applied = convert(&applied.last_applied)?;
    replica.membership = convert(&applied.membership)?;
    Ok(kept)
}

/// The full snapshot `snapshot` stands for: itself, or — for this node's own manifest, which
/// openraft installs again at a start when the state is behind it — the manifest expanded
/// with every message it names from this node's queue files.
fn full_snapshot(replica: &Replica, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<Vec<u8>> {
    let (header, _) = SnapshotReader::open(Cursor::new(&snapshot))?;
    let named: Option<LogId> = convert(&header.meta.last_log_id)?;
    if named != meta.last_log_id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot does not match the snapshot meta it was sent with",
        ));
    }
    if !header.manifest {
        return Ok(snapshot);
    }
    let queues = &replica.stores.queues;
    expand_snapshot(Cursor::new(&snapshot), queues, Vec::new(), true)
}

impl RaftStateMachine<SimConfig> for SimStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SimSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let r = lock(&self.replica);
        Ok((r.last_applied, r.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<SimConfig>, io::Error>> + Unpin + OptionalSend,
    {
        lock(&self.replica).stores.checkpointer.earlier_failure()?;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = self.apply_one(entry)?;
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        self.checkpoint_when_due();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let r = lock(&self.replica);
        SimSnapshotBuilder {
            replica: self.replica.clone(),
            state: r.state().clone(),
            meta: SnapshotMeta {
                last_log_id: r.last_applied,
                last_membership: r.membership.clone(),
            },
            disk: self.disk.clone(),
            epoch: self.epoch,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let full = full_snapshot(&lock(&self.replica), meta, snapshot)?;
        // As the node: the full snapshot is made the current one before the stores are
        // touched, so an install cut short is done again from it at the next start.
        persist(&self.disk, self.epoch, meta, full.clone()).await?;
        let kept = install(&mut lock(&self.replica), meta, &full)?;
        persist(&self.disk, self.epoch, meta, kept).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.disk.read(|image| {
            image.snapshot.as_ref().map(|s| Snapshot {
                meta: s.meta.clone(),
                snapshot: s.data.clone(),
            })
        }))
    }
}
