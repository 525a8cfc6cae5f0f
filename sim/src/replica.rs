//! What a simulated node has applied: the real `BrokerState` in memory over the real stores
//! (queue files, transaction journal, rows; see [`crate::state_store`]), as the node's
//! `StateMachineStore` keeps it.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use txmq_state::{BrokerState, StoredMessage, codec};

use crate::state_store::SimStores;
use crate::types::{LogId, StoredMembership};

/// Queue → offset → encoded message.
pub type Queues = BTreeMap<(u64, u32), BTreeMap<u64, Vec<u8>>>;

/// The applied state of one incarnation, shared by the apply task and the request handlers.
pub struct Replica {
    pub state: RwLock<BrokerState>,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub stores: Arc<SimStores>,
}

/// What a replica holds, read out for the checker to compare: its state, every stored message
/// and how far it applied.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplicaView {
    pub state: BrokerState,
    pub queues: Queues,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

impl ReplicaView {
    /// The message at a queue position, decoded.
    pub fn message(&self, topic_id: u64, queue: u32, offset: u64) -> Option<StoredMessage> {
        let bytes = self.queues.get(&(topic_id, queue))?.get(&offset)?;
        codec::decode(bytes).ok()
    }
}

impl Replica {
    pub fn state(&self) -> RwLockReadGuard<'_, BrokerState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The message at a queue position, read from the queue files and decoded.
    pub fn message(&self, topic_id: u64, queue: u32, offset: u64) -> Option<StoredMessage> {
        let mut found = None;
        let read = self
            .stores
            .queues
            .read(topic_id, queue, offset, offset + 1, |_, bytes| {
                found = codec::decode(bytes).ok();
                Ok(false)
            });
        read.ok().and(found)
    }

    /// Reads every message the state says its queues hold.
    pub fn view(&self) -> io::Result<ReplicaView> {
        let state = self.state().clone();
        let mut queues = Queues::new();
        for topic in state.topics().values() {
            for queue in 0..topic.queues {
                let q = queue as usize;
                let (low, next) = (topic.low_offsets[q], topic.next_offsets[q]);
                let mut messages = BTreeMap::new();
                self.stores
                    .queues
                    .read(topic.id, queue, low, next, |offset, bytes| {
                        messages.insert(offset, bytes.to_vec());
                        Ok(true)
                    })?;
                if !messages.is_empty() {
                    queues.insert((topic.id, queue), messages);
                }
            }
        }
        Ok(ReplicaView {
            state,
            queues,
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        })
    }
}
