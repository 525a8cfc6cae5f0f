//! A write that fails half way through what the state machine does — an apply, a snapshot
//! install — must leave stores that open again and name only messages they hold (the
//! deterministic simulator found nodes that could not start after both; see
//! `sim/tests/simulation.rs`).

use std::io::{self, Cursor};
use std::path::Path;
use std::sync::RwLock;
use std::time::Instant;

use anyhow::{Result, ensure};
use txmq_raft_store::files::file_system::OsFs;
use txmq_raft_store::files::queue_files::QueueFiles;
use txmq_raft_store::files::txn_journal::TxnJournal;
use txmq_raft_store::machine::{
    CheckpointTargets, Checkpointer, load, restore_rows, stored_offsets,
};
use txmq_raft_store::rows::applied_state::AppliedState;
use txmq_raft_store::rows::row_store::{RowBatch, RowStore, RowVisitor};
use txmq_raft_store::snapshot::format::{
    FORMAT_VERSION, SnapshotHeader, SnapshotReader, SnapshotWriter,
};
use txmq_state::{BrokerState, Command, NewMessage, Operation, TopicKind, TopicSpec};

/// sled's tree, except that emptying it fails (a write error at the first step of a restore).
struct EmptyingFails(sled::Tree);

impl RowStore for EmptyingFails {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        RowStore::get(&self.0, key)
    }

    fn for_each_with_prefix(&self, prefix: &[u8], f: &mut RowVisitor<'_>) -> io::Result<()> {
        self.0.for_each_with_prefix(prefix, f)
    }

    fn apply(&self, batch: RowBatch) -> io::Result<()> {
        RowStore::apply(&self.0, batch)
    }

    fn clear(&self) -> io::Result<()> {
        Err(io::Error::other("simulated EIO"))
    }

    fn flush(&self) -> io::Result<()> {
        RowStore::flush(&self.0)
    }
}

fn operations() -> Vec<Operation> {
    let create = Operation::CreateTopic(TopicSpec {
        name: "a".into(),
        kind: TopicKind::Normal,
        queues: 1,
        retention_ms: 0,
        retention_bytes: 0,
    });
    let publish = |body: &str| Operation::Publish {
        topic: "a".into(),
        messages: vec![NewMessage {
            key: String::new(),
            tag: String::new(),
            body: body.as_bytes().to_vec(),
            properties: Default::default(),
        }],
    };
    vec![create, publish("m0"), publish("m1"), publish("m2")]
}

/// Applies the operations and writes a checkpoint of them, as the node's state machine does.
fn checkpointed_state(
    queues: &QueueFiles,
    journal: &TxnJournal,
    rows: &sled::Tree,
) -> Result<(BrokerState, Checkpointer)> {
    let mut state = BrokerState::default();
    let checkpointer = Checkpointer::default();
    for (i, op) in operations().into_iter().enumerate() {
        let index = i as u64 + 1;
        let applied = state.apply(index, &Command::new(1_000 + index, op))?;
        let applied_state = AppliedState::default();
        checkpointer.record(queues, applied.changes, applied_state, Instant::now())?;
    }
    let state = RwLock::new(state);
    checkpointer.checkpoint(targets(queues, journal, rows), &state)?;
    let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok((state, checkpointer))
}

fn targets<'a>(
    queues: &'a QueueFiles,
    journal: &'a TxnJournal,
    rows: &'a sled::Tree,
) -> CheckpointTargets<'a, OsFs, sled::Tree> {
    CheckpointTargets {
        queues,
        journal,
        rows,
    }
}

/// Opens the stores as a restarted node does; fails unless every message the rows name is
/// held. Returns how many topic `a` holds.
fn reopened(dir: &Path, rows: &sled::Tree) -> Result<u64> {
    let queues = QueueFiles::open(&dir.join("queues"), 1 << 20)?;
    let journal = TxnJournal::open(&dir.join("txn-journal"))?;
    let (state, _) = load(rows, &journal)?;
    queues.reconcile(&stored_offsets(&state))?;
    let (id, next) = state
        .topic("a")
        .map(|t| (t.id, t.next_offsets[0]))
        .unwrap_or_default();
    let mut held = 0;
    queues.read(id, 0, 0, next, |_, _| {
        held += 1;
        Ok(true)
    })?;
    ensure!(
        held == next,
        "the rows name {next} messages, the files hold {held}"
    );
    Ok(held)
}

fn stores(dir: &Path) -> Result<(QueueFiles, TxnJournal)> {
    let queues = QueueFiles::open(&dir.join("queues"), 1 << 20)?;
    let journal = TxnJournal::open(&dir.join("txn-journal"))?;
    Ok((queues, journal))
}

#[test]
fn an_apply_whose_messages_cannot_be_written_is_never_checkpointed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tree = sled::open(dir.path().join("db"))?.open_tree("state")?;
    {
        let (queues, journal) = stores(dir.path())?;
        let (mut state, checkpointer) = checkpointed_state(&queues, &journal, &tree)?;
        // The next publish is applied in memory, but its append fails (here: its offset is
        // taken already).
        let publish = operations().pop().unwrap_or(Operation::Batch(Vec::new()));
        let applied = state.apply(9, &Command::new(2_000, publish))?;
        let topic = state.topic("a").map(|t| t.id).unwrap_or_default();
        queues.append(topic, 0, 3, &[b"in the way".to_vec()])?;
        let recorded = checkpointer.record(
            &queues,
            applied.changes,
            AppliedState::default(),
            Instant::now(),
        );
        ensure!(
            recorded.is_err(),
            "an append at a taken offset was accepted"
        );
        // A checkpoint after it (one running in the background) must not write the state
        // that ran ahead of the files.
        let state = RwLock::new(state);
        let written = checkpointer.checkpoint(targets(&queues, &journal, &tree), &state);
        ensure!(
            written.is_err(),
            "a checkpoint was written after a failed apply"
        );
    }
    ensure!(reopened(dir.path(), &tree)? == 3);
    Ok(())
}

#[test]
fn an_install_whose_first_row_write_fails_leaves_stores_that_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tree = sled::open(dir.path().join("db"))?.open_tree("state")?;
    {
        let (queues, journal) = stores(dir.path())?;
        checkpointed_state(&queues, &journal, &tree)?;
        // A snapshot of an empty state, whose install fails at its first row write.
        let header = SnapshotHeader {
            format_version: FORMAT_VERSION,
            meta: Default::default(),
            applied: AppliedState::default(),
            manifest: false,
        };
        let bytes = SnapshotWriter::new(Vec::new(), &header)?.end()?;
        let (header, mut rows) = SnapshotReader::open(Cursor::new(bytes))?;
        let failing = EmptyingFails(tree.clone());
        let targets = CheckpointTargets {
            queues: &queues,
            journal: &journal,
            rows: &failing,
        };
        ensure!(restore_rows(targets, &mut rows, &header).is_err());
    }
    // As after a restart: the rows still name three messages, which must still be there.
    ensure!(reopened(dir.path(), &tree)? == 3);
    Ok(())
}
