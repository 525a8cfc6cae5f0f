//! The transaction journal: what a checkpoint journals is exactly what a restart loads —
//! through compaction, with records that were decided and forgotten between two checkpoints,
//! and after a crash that left frames no checkpoint recorded.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use std::path::Path;

use proptest::prelude::*;
use txmq_raft_store::files::txn_journal::{JournalLimits, JournalRange, TxnJournal};
use txmq_state::{
    BrokerState, Change, Decision, DecisionSource, MAX_DECIDED_KEPT, Transactions, TxnId, TxnTiming,
};
use txmq_state::{Command, CommandResult, NewMessage, Operation, TopicKind, TopicSpec};

const TIMING: TxnTiming = TxnTiming {
    first_check_delay_ms: 100,
    check_interval_ms: 50,
    max_checks: 3,
    max_lifetime_ms: 10_000,
};

/// Tiny files and thresholds, so that a short test compacts many times.
const SMALL: JournalLimits = JournalLimits {
    file_bytes: 2048,
    compact_frames: 48,
    compact_bytes: 64 * 1024,
};

/// A state machine and the checkpoint duties of a node, journal side only.
struct Node {
    state: BrokerState,
    index: u64,
    /// Transactions changed since the last checkpoint.
    changed: FxHashSet<TxnId>,
    journal: TxnJournal,
    /// What the last checkpoint recorded, and the transactions as of then.
    recorded: JournalRange,
    at_checkpoint: Transactions,
}

impl Node {
    fn new(dir: &Path, limits: JournalLimits) -> Node {
        let mut node = Node {
            state: BrokerState::default(),
            index: 0,
            changed: FxHashSet::default(),
            journal: TxnJournal::open_with(dir, limits).expect("open"),
            recorded: JournalRange::default(),
            at_checkpoint: Transactions::default(),
        };
        node.apply(Operation::CreateTopic(TopicSpec {
            name: "pay".into(),
            kind: TopicKind::Transaction,
            queues: 2,
            retention_ms: 0,
            retention_bytes: 0,
        }));
        node
    }

    fn apply(&mut self, op: Operation) -> CommandResult {
        self.index += 1;
        let command = Command::new(1_000 + self.index, op);
        let applied = self.state.apply(self.index, &command).expect("apply");
        for change in applied.changes.into_list() {
            if let Change::Txn(id) = change {
                self.changed.insert(id);
            }
        }
        applied.result
    }

    /// Stores `n` half messages in one entry; returns their ids.
    fn halves(&mut self, n: usize) -> Vec<String> {
        let ops = (0..n)
            .map(|i| Operation::HalfMessage {
                topic: "pay".into(),
                group: "g".into(),
                message: NewMessage {
                    key: String::new(),
                    tag: String::new(),
                    body: vec![i as u8; 40],
                    properties: BTreeMap::new(),
                },
                timing: TIMING,
            })
            .collect();
        match self.apply(Operation::Batch(ops)) {
            CommandResult::Batch(results) => results
                .into_iter()
                .filter_map(|r| match r {
                    CommandResult::HalfAccepted { txn_id } => Some(txn_id.to_string()),
                    _ => None,
                })
                .collect(),
            other => panic!("unexpected result {other:?}"),
        }
    }

    /// Decides the given transactions in one entry.
    fn decide(&mut self, ids: &[String], decision: Decision) {
        let ops = ids
            .iter()
            .map(|id| Operation::EndTransaction {
                txn_id: id.clone(),
                group: "g".into(),
                decision,
                source: DecisionSource::Producer,
            })
            .collect();
        self.apply(Operation::Batch(ops));
    }

    /// What a checkpoint does with the journal (see `checkpoint.rs`).
    fn checkpoint(&mut self) {
        let write = self
            .journal
            .prepare(&self.changed, self.state.transactions())
            .encode()
            .expect("encode");
        self.changed.clear();
        self.recorded = self.journal.append(&write).expect("append");
        self.journal.sync().expect("sync");
        if write.compacts() {
            self.journal.trim().expect("trim");
        }
        self.at_checkpoint = self.state.transactions().clone();
    }

    /// A restart: a new journal over the same files, loaded at the recorded range.
    fn restart(&mut self, dir: &Path, limits: JournalLimits) -> Transactions {
        drop(std::mem::replace(
            &mut self.journal,
            TxnJournal::open_with(dir, limits).expect("reopen"),
        ));
        self.journal.load(self.recorded).expect("load")
    }
}

fn file_count(dir: &Path) -> usize {
    walk(dir)
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() { walk(&path) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn records_survive_restarts_through_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::new(dir.path(), SMALL);
    // One transaction stays pending the whole time: compaction must carry it forward.
    let lingering = node.halves(1);
    node.checkpoint();
    for round in 0..60 {
        let ids = node.halves(10);
        node.checkpoint();
        let (commit, rollback) = ids.split_at(round % 10);
        node.decide(commit, Decision::Commit);
        node.decide(rollback, Decision::Rollback);
        node.checkpoint();
    }
    let range = node.recorded;
    assert!(
        range.low > 0,
        "the journal compacted ({range:?}): the thresholds are tiny"
    );
    assert!(
        file_count(dir.path()) <= 80,
        "compaction deleted old files ({} left)",
        file_count(dir.path())
    );
    let loaded = node.restart(dir.path(), SMALL);
    assert_eq!(loaded, node.at_checkpoint, "restart loads the checkpoint");
    assert!(loaded.get_by_name(&lingering[0]).is_some());
    // And again: the loaded journal keeps working.
    node.state = with_transactions(&node.state, loaded);
    let more = node.halves(3);
    node.decide(&more, Decision::Commit);
    node.checkpoint();
    assert_eq!(node.restart(dir.path(), SMALL), node.at_checkpoint);
}

#[test]
fn a_mostly_live_journal_is_not_rewritten_until_half_of_it_is_dead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::new(dir.path(), SMALL);
    // Far more pending transactions than SMALL's frame threshold: all of them live.
    let pending = node.halves(200);
    node.checkpoint();
    for _ in 0..20 {
        node.halves(1);
        node.checkpoint();
    }
    let range = node.recorded;
    assert_eq!(
        range.low, 0,
        "a journal of live records was compacted ({range:?})"
    );
    assert_eq!(range.next, 220, "each record written once ({range:?})");
    // Answering `unknown` rewrites every record: the old frames are dead, so once the span is
    // more than twice the live records (checked when a checkpoint starts) compaction runs.
    for _ in 0..3 {
        node.decide(&pending, Decision::Unknown);
        node.checkpoint();
    }
    let range = node.recorded;
    assert!(
        range.low > 0,
        "a journal with more dead than live frames did not compact ({range:?})"
    );
    assert_eq!(node.restart(dir.path(), SMALL), node.at_checkpoint);
}

#[test]
fn a_transaction_decided_and_forgotten_between_checkpoints_stays_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = JournalLimits::default();
    let mut node = Node::new(dir.path(), limits);
    let first = node.halves(1);
    node.checkpoint(); // the journal shows it pending
    node.decide(&first, Decision::Commit);
    // Enough later decisions to push it out of the decided window before the next checkpoint.
    let mut decided = 0;
    while decided <= MAX_DECIDED_KEPT {
        let ids = node.halves(1000);
        node.decide(&ids, Decision::Rollback);
        decided += ids.len();
    }
    assert!(node.state.transactions().get_by_name(&first[0]).is_none());
    node.checkpoint();
    let loaded = node.restart(dir.path(), limits);
    assert!(
        loaded.get_by_name(&first[0]).is_none(),
        "a forgotten transaction came back after a restart"
    );
    assert_eq!(loaded, node.at_checkpoint);
}

#[test]
fn frames_after_the_last_recorded_checkpoint_are_cut_at_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::new(dir.path(), SMALL);
    let ids = node.halves(5);
    node.checkpoint();
    let recorded = node.recorded;
    let state = node.at_checkpoint.clone();
    // A checkpoint whose frames reached the files but whose sled batch did not.
    node.decide(&ids, Decision::Commit);
    let write = node
        .journal
        .prepare(&node.changed, node.state.transactions())
        .encode()
        .expect("encode");
    node.journal.append(&write).expect("append");
    node.journal.sync().expect("sync");
    node.recorded = recorded;
    let loaded = node.restart(dir.path(), SMALL);
    assert_eq!(
        loaded, state,
        "the unrecorded decisions are not in the loaded state"
    );
    assert_eq!(node.journal.range(), recorded);
}

#[derive(Debug, Clone)]
enum Step {
    Halves(usize),
    Decide {
        pick: usize,
        count: usize,
        decision: Decision,
    },
    Checkpoint,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let decision = prop_oneof![
        Just(Decision::Commit),
        Just(Decision::Rollback),
        Just(Decision::Unknown)
    ];
    prop_oneof![
        3 => (1usize..6).prop_map(Step::Halves),
        4 => (any::<usize>(), 1usize..4, decision)
            .prop_map(|(pick, count, decision)| Step::Decide { pick, count, decision }),
        3 => Just(Step::Checkpoint),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of transactions, checkpoints and restarts: a restart always loads exactly
    /// the transactions of the last checkpoint.
    #[test]
    fn a_restart_loads_the_last_checkpoint(steps in prop::collection::vec(step(), 1..120)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = Node::new(dir.path(), SMALL);
        let mut ids: Vec<String> = Vec::new();
        for step in steps {
            match step {
                Step::Halves(n) => ids.extend(node.halves(n)),
                Step::Decide { pick, count, decision } if !ids.is_empty() => {
                    let chosen: Vec<String> =
                        (0..count).map(|i| ids[(pick + i) % ids.len()].clone()).collect();
                    node.decide(&chosen, decision);
                }
                Step::Decide { .. } => {}
                Step::Checkpoint => node.checkpoint(),
                Step::Restart => {
                    let loaded = node.restart(dir.path(), SMALL);
                    prop_assert_eq!(&loaded, &node.at_checkpoint);
                    // What was applied after the checkpoint is lost with the crash; the log
                    // would re-apply it. Continue from the checkpoint.
                    node.state = with_transactions(&node.state, loaded);
                    node.changed.clear();
                }
            }
        }
    }
}

/// A checkpoint takes its records under the state's lock but encodes them after releasing it,
/// while the apply goes on: what it journals must still be the records as of the moment it
/// took them, not a later version (a pending record changed meanwhile is copied, not edited).
#[test]
fn a_checkpoint_journals_its_records_as_taken_while_applies_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::new(dir.path(), SMALL);
    let ids = node.halves(4);
    let taken = node.state.transactions().clone();
    let plan = node
        .journal
        .prepare(&node.changed, node.state.transactions());
    node.changed.clear();
    // Applies after the plan was taken: an `unknown` answer edits two pending records, and
    // the other two are committed.
    node.decide(&ids[..2], Decision::Unknown);
    node.decide(&ids[2..], Decision::Commit);
    let edited = node
        .state
        .transactions()
        .get_by_name(&ids[0])
        .expect("pending");
    assert_eq!(edited.events.len(), 1, "the unknown answer was recorded");
    // The plan is encoded only now.
    node.recorded = node
        .journal
        .append(&plan.encode().expect("encode"))
        .expect("append");
    node.journal.sync().expect("sync");
    let loaded = node.restart(dir.path(), SMALL);
    assert_eq!(loaded, taken, "the journal holds the records as taken");
    let loaded_first = loaded.get_by_name(&ids[0]).expect("journaled");
    assert!(loaded_first.events.is_empty());
    assert_eq!(loaded.pending_count(), 4);
}

/// `state` with its transactions replaced by `loaded` (what a restart rebuilds).
fn with_transactions(state: &BrokerState, loaded: Transactions) -> BrokerState {
    BrokerState::restore(
        state.topics().values().cloned(),
        state.retired_nodes().iter().copied(),
        state.groups().values().cloned(),
        loaded,
        state.users().values().cloned(),
    )
    .expect("the state's own parts fit together")
}
