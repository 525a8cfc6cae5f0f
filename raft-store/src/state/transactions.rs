//! The set of transactions: pending ones with a deadline index, and a bounded window of
//! decided ones (for idempotent repeats and `txn show`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::transaction::{TxnRecord, TxnState};

/// How many decided transactions are remembered. Older ones are forgotten (a decision for a
/// forgotten id is rejected as unknown, never applied twice).
pub const MAX_DECIDED_KEPT: usize = 50_000;

/// Transactions, kept in memory (they are also rows in the store; this is rebuilt on load).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transactions {
    pending: BTreeMap<String, TxnRecord>,
    decided: BTreeMap<String, TxnRecord>,
    /// Decided ids, oldest first, for the bounded window.
    decided_order: VecDeque<String>,
    /// (due time, id) of every pending transaction: the scheduler reads only what is due.
    due: BTreeSet<(u64, String)>,
}

impl Transactions {
    pub fn get(&self, id: &str) -> Option<&TxnRecord> {
        self.pending.get(id).or_else(|| self.decided.get(id))
    }

    pub fn pending(&self) -> impl Iterator<Item = &TxnRecord> {
        self.pending.values()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn decided(&self) -> impl Iterator<Item = &TxnRecord> {
        self.decided.values()
    }

    /// Pending transactions due at or before `now_ms`, earliest first, at most `limit`.
    /// Cost: proportional to the number returned, not to the number pending.
    pub fn due(&self, now_ms: u64, limit: usize) -> Vec<&TxnRecord> {
        self.due
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .filter_map(|(_, id)| self.pending.get(id))
            .collect()
    }

    /// Inserts a new pending transaction.
    pub fn insert_pending(&mut self, record: TxnRecord) {
        debug_assert_eq!(record.state, TxnState::Pending);
        self.due.insert((record.due_ms(), record.id.clone()));
        self.pending.insert(record.id.clone(), record);
    }

    /// Changes a pending transaction, keeping the deadline index right.
    pub fn update_pending<R>(
        &mut self,
        id: &str,
        change: impl FnOnce(&mut TxnRecord) -> R,
    ) -> Option<R> {
        let record = self.pending.get_mut(id)?;
        self.due.remove(&(record.due_ms(), record.id.clone()));
        let out = change(record);
        self.due.insert((record.due_ms(), record.id.clone()));
        Some(out)
    }

    /// Moves a transaction from pending to decided. Returns the id of a decided record that
    /// fell out of the window, whose row must be deleted.
    pub fn mark_decided(&mut self, id: &str) -> Option<String> {
        let record = self.pending.remove(id)?;
        self.due.remove(&(record.due_ms(), record.id.clone()));
        self.insert_decided(record)
    }

    /// Inserts an already decided record (also used when loading). Returns an evicted id.
    pub fn insert_decided(&mut self, record: TxnRecord) -> Option<String> {
        self.decided_order.push_back(record.id.clone());
        self.decided.insert(record.id.clone(), record);
        if self.decided_order.len() > MAX_DECIDED_KEPT {
            let old = self.decided_order.pop_front()?;
            self.decided.remove(&old);
            return Some(old);
        }
        None
    }

    /// Invariants: the index holds exactly the pending ids at their due times.
    pub fn check_invariants(&self) {
        assert_eq!(
            self.due.len(),
            self.pending.len(),
            "deadline index out of step"
        );
        for (at, id) in &self.due {
            let record = self
                .pending
                .get(id)
                .expect("indexed transaction is pending");
            assert_eq!(*at, record.due_ms(), "txn {id} indexed at the wrong time");
        }
        assert_eq!(self.decided.len(), self.decided_order.len());
        assert!(self.decided.len() <= MAX_DECIDED_KEPT);
        for r in self.pending.values().chain(self.decided.values()) {
            r.check_invariants();
        }
    }
}
