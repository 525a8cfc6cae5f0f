//! The set of transactions: pending ones with a deadline index, and a bounded window of
//! decided ones (for idempotent repeats and `txn show`).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::transaction::{TxnRecord, TxnState};
use crate::txn_id::TxnId;

/// How many decided transactions are remembered. Older ones are forgotten (a decision for a
/// forgotten id is rejected as unknown, never applied twice).
pub const MAX_DECIDED_KEPT: usize = 50_000;

/// Transactions, kept in memory (the store persists them in its transaction journal; this is
/// rebuilt from it on load). No apply depends on the maps' iteration order.
///
/// Records are shared (`Arc`): a checkpoint takes the changed ones under the state's read lock
/// by reference and encodes them after releasing it, and a snapshot's copy of the state shares
/// them, so neither holds up the apply for the time it takes to copy or encode thousands of
/// records. A pending record that is still shared when it changes is copied first
/// ([`Arc::make_mut`]); decided records never change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transactions {
    // Fx hashing: ids are assigned by the broker (log positions), not chosen by clients, and
    // the default SipHash was a visible share of every decision.
    pending: FxHashMap<TxnId, Arc<TxnRecord>>,
    decided: FxHashMap<TxnId, Arc<TxnRecord>>,
    /// Decided ids, oldest decision first, for the bounded window.
    decided_order: VecDeque<TxnId>,
    /// (due time, id) of every pending transaction: the scheduler reads only what is due.
    due: BTreeSet<(u64, TxnId)>,
    /// Decisions applied so far: the `decided_seq` of the next one.
    decisions: u64,
}

impl Transactions {
    pub fn get(&self, id: &TxnId) -> Option<&TxnRecord> {
        self.shared(id).map(|r| &**r)
    }

    /// The record itself, to keep beyond the state's lock (a checkpoint encodes it later).
    pub fn shared(&self, id: &TxnId) -> Option<&Arc<TxnRecord>> {
        self.pending.get(id).or_else(|| self.decided.get(id))
    }

    /// Looks a transaction up by its client form; a malformed id names none.
    pub fn get_by_name(&self, id: &str) -> Option<&TxnRecord> {
        TxnId::parse(id).and_then(|id| self.get(&id))
    }

    pub fn pending(&self) -> impl Iterator<Item = &TxnRecord> {
        self.pending.values().map(|r| &**r)
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Transactions remembered: pending and decided.
    pub fn len(&self) -> usize {
        self.pending.len() + self.decided.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn decided(&self) -> impl Iterator<Item = &TxnRecord> {
        self.decided.values().map(|r| &**r)
    }

    /// Pending transactions due at or before `now_ms`, earliest first, at most `limit`.
    /// Cost: proportional to the number returned, not to the number pending.
    pub fn due(&self, now_ms: u64, limit: usize) -> Vec<&TxnRecord> {
        self.due
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .filter_map(|(_, id)| self.pending.get(id).map(|r| &**r))
            .collect()
    }

    /// Inserts a new pending transaction.
    pub fn insert_pending(&mut self, record: TxnRecord) {
        debug_assert_eq!(record.state, TxnState::Pending);
        self.due.insert((record.due_ms(), record.id));
        self.pending.insert(record.id, Arc::new(record));
    }

    /// Changes a pending transaction, keeping the deadline index right.
    pub fn update_pending<R>(
        &mut self,
        id: &TxnId,
        change: impl FnOnce(&mut TxnRecord) -> R,
    ) -> Option<R> {
        let record = Arc::make_mut(self.pending.get_mut(id)?);
        let before = record.due_ms();
        let out = change(record);
        let after = record.due_ms();
        if after != before {
            self.due.remove(&(before, *id));
            self.due.insert((after, *id));
        }
        Some(out)
    }

    /// Removes a pending transaction to decide it ([`Self::insert_decided`] takes it back).
    pub fn take_pending(&mut self, id: &TxnId) -> Option<TxnRecord> {
        let record = self.pending.remove(id)?;
        self.due.remove(&(record.due_ms(), *id));
        Some(Arc::unwrap_or_clone(record))
    }

    /// The `decided_seq` for the decision being applied now (each call is one decision).
    pub fn next_decision(&mut self) -> u64 {
        let seq = self.decisions;
        self.decisions += 1;
        seq
    }

    /// Inserts a decided record (also used when loading). Returns the id of the record that
    /// fell out of the window, if one did.
    pub fn insert_decided(&mut self, record: TxnRecord) -> Option<TxnId> {
        debug_assert_ne!(record.state, TxnState::Pending);
        if let Some(seq) = record.decided_seq {
            self.decisions = self.decisions.max(seq + 1);
        }
        self.decided_order.push_back(record.id);
        self.decided.insert(record.id, Arc::new(record));
        if self.decided_order.len() > MAX_DECIDED_KEPT {
            let old = self.decided_order.pop_front()?;
            self.decided.remove(&old);
            return Some(old);
        }
        None
    }

    /// Rebuilds the set from stored records in any order (each id at most once): decided ones
    /// are re-ordered by their decision so the window is the same as on every replica.
    pub fn restore(records: impl IntoIterator<Item = TxnRecord>) -> Self {
        let mut out = Self::default();
        let mut decided = Vec::new();
        for r in records {
            match r.state {
                TxnState::Pending => out.insert_pending(r),
                _ => decided.push(r),
            }
        }
        decided.sort_by_key(|r| (r.decided_seq, r.id));
        for r in decided {
            out.insert_decided(r);
        }
        out
    }

    /// Invariants: the index holds exactly the pending ids at their due times; the window is
    /// bounded and in decision order.
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
        let seqs: Vec<Option<u64>> = self
            .decided_order
            .iter()
            .map(|id| self.decided.get(id).and_then(|r| r.decided_seq))
            .collect();
        assert!(
            // Equal only for rows of earlier versions (ordered by log index, then id).
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "decided window out of order"
        );
        for r in self.pending.values().chain(self.decided.values()) {
            r.check_invariants();
        }
    }
}
