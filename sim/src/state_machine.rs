//! A simulated node's state machine: the real `BrokerState::apply`, with the messages it
//! appends kept in memory per queue (what the real store writes to queue files).
//!
//! What it applied lives in memory; a snapshot is written to the node's simulated disk (and
//! synced) before openraft may purge the entries it covers. A restarted incarnation starts
//! from its latest snapshot and re-applies the log after it, as the real store rebuilds what
//! its last checkpoint did not hold.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use txmq_state::CommandResult;

use crate::disk::{DiskWrite, SimDisk, StoredSnapshot};
use crate::replica::Replica;

use crate::types::{LogId, SimConfig, SnapshotMeta, StoredMembership};

/// openraft's state machine for one incarnation.
#[derive(Clone)]
pub struct SimStateMachine {
    replica: Arc<Mutex<Replica>>,
    disk: Arc<SimDisk>,
    epoch: u64,
}

type Snapshot = openraft::alias::SnapshotOf<SimConfig, Replica>;

impl SimStateMachine {
    /// The state machine of a new incarnation: its latest durable snapshot, or empty.
    pub fn new(disk: Arc<SimDisk>) -> Self {
        let start = disk
            .read(|image| image.snapshot.as_ref().map(|s| s.replica.clone()))
            .unwrap_or_default();
        let epoch = disk.epoch();
        SimStateMachine {
            replica: Arc::new(Mutex::new(start)),
            disk,
            epoch,
        }
    }

    pub fn replica(&self) -> Arc<Mutex<Replica>> {
        self.replica.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply_one(&self, entry: crate::types::Entry) -> io::Result<CommandResult> {
        let mut r = self.lock();
        r.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Ok(CommandResult::Nothing),
            EntryPayload::Normal(command) => {
                let applied = r
                    .state
                    .apply(entry.log_id.index, &command)
                    .map_err(io::Error::other)?;
                r.record(applied.changes);
                Ok(applied.result)
            }
            EntryPayload::Membership(m) => {
                r.membership = StoredMembership::new(Some(entry.log_id), m);
                Ok(CommandResult::Nothing)
            }
        }
    }
}

/// Writes a snapshot to the disk and waits until it is durable.
async fn persist(
    disk: &SimDisk,
    epoch: u64,
    meta: &SnapshotMeta,
    replica: &Replica,
) -> io::Result<()> {
    let stored = StoredSnapshot {
        meta: meta.clone(),
        replica: replica.clone(),
    };
    disk.write(epoch, DiskWrite::Snapshot(Box::new(stored)))?;
    disk.sync(epoch).await
}

/// Builds a snapshot of the state as it was when openraft asked for the builder.
pub struct SimSnapshotBuilder {
    replica: Replica,
    disk: Arc<SimDisk>,
    epoch: u64,
}

impl RaftSnapshotBuilder<SimConfig> for SimSnapshotBuilder {
    type SnapshotData = Replica;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let meta = SnapshotMeta {
            last_log_id: self.replica.last_applied,
            last_membership: self.replica.membership.clone(),
        };
        persist(&self.disk, self.epoch, &meta, &self.replica).await?;
        Ok(Snapshot {
            meta,
            snapshot: self.replica.clone(),
        })
    }
}

impl RaftStateMachine<SimConfig> for SimStateMachine {
    type SnapshotData = Replica;
    type SnapshotBuilder = SimSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let r = self.lock();
        Ok((r.last_applied, r.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<SimConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = self.apply_one(entry)?;
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SimSnapshotBuilder {
            replica: self.lock().clone(),
            disk: self.disk.clone(),
            epoch: self.epoch,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Replica,
    ) -> Result<(), io::Error> {
        persist(&self.disk, self.epoch, meta, &snapshot).await?;
        *self.lock() = snapshot;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.disk.read(|image| {
            image.snapshot.as_ref().map(|s| Snapshot {
                meta: s.meta.clone(),
                snapshot: s.replica.clone(),
            })
        }))
    }
}
