//! A simulated node's state machine: the real `BrokerState::apply`, with the messages it
//! appends kept in memory per queue (what the real store writes to queue files).
//!
//! Nothing here is durable: a restarted node re-applies its log from the start (snapshots are
//! off under simulation), which is also how the real store rebuilds what its last checkpoint
//! did not hold.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use txmq_state::{BrokerState, Change, Changes, CommandResult, StoredMessage, codec};

use crate::types::{LogId, SimConfig, StoredMembership};

/// Queue → offset → encoded message.
pub type Queues = BTreeMap<(u64, u32), BTreeMap<u64, Vec<u8>>>;

/// The applied state of one incarnation, shared by the apply task and the request handlers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replica {
    pub state: BrokerState,
    pub queues: Queues,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

impl Replica {
    /// The message at a queue position, decoded.
    pub fn message(&self, topic_id: u64, queue: u32, offset: u64) -> Option<StoredMessage> {
        let bytes = self.queues.get(&(topic_id, queue))?.get(&offset)?;
        codec::decode(bytes).ok()
    }

    fn record(&mut self, changes: Changes) {
        for change in changes.into_list() {
            match change {
                Change::Appended {
                    topic,
                    queue,
                    first,
                    messages,
                } => {
                    let q = self.queues.entry((topic, queue)).or_default();
                    for (i, m) in messages.into_iter().enumerate() {
                        q.insert(first + i as u64, m);
                    }
                }
                Change::TrimmedBelow {
                    topic,
                    queue,
                    below,
                } => {
                    if let Some(q) = self.queues.get_mut(&(topic, queue)) {
                        *q = q.split_off(&below);
                    }
                }
                Change::TopicDeleted { topic, .. } => {
                    self.queues.retain(|(t, _), _| *t != topic);
                }
                _ => {}
            }
        }
    }
}

/// openraft's state machine for one incarnation.
#[derive(Clone, Default)]
pub struct SimStateMachine {
    replica: Arc<Mutex<Replica>>,
}

impl SimStateMachine {
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

/// Snapshots are not simulated: the builder refuses, and openraft never asks for one because
/// the policy is `Never` and nothing is purged.
pub struct NoSnapshots;

fn no_snapshots() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "snapshots are not simulated (the log is never purged)",
    )
}

impl RaftSnapshotBuilder<SimConfig> for NoSnapshots {
    type SnapshotData = ();

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::alias::SnapshotOf<SimConfig, ()>, io::Error> {
        Err(no_snapshots())
    }
}

impl RaftStateMachine<SimConfig> for SimStateMachine {
    type SnapshotData = ();
    type SnapshotBuilder = NoSnapshots;

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
        NoSnapshots
    }

    async fn install_snapshot(
        &mut self,
        _meta: &openraft::alias::SnapshotMetaOf<SimConfig>,
        _snapshot: (),
    ) -> Result<(), io::Error> {
        Err(no_snapshots())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::alias::SnapshotOf<SimConfig, ()>>, io::Error> {
        Ok(None)
    }
}
