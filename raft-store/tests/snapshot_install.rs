//! Installing a snapshot replaces a node's stores, which takes many writes: an install cut
//! short at any of them must leave stores that open again (the deterministic simulator found
//! nodes that could not start after one; see `sim/tests/simulation.rs`).

use std::io::{self, Cursor};
use std::sync::RwLock;
use std::time::Instant;

use anyhow::{Result, ensure};
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
fn checkpointed_state(queues: &QueueFiles, journal: &TxnJournal, rows: &sled::Tree) -> Result<()> {
    let mut state = BrokerState::default();
    let checkpointer = Checkpointer::default();
    for (i, op) in operations().into_iter().enumerate() {
        let index = i as u64 + 1;
        let applied = state.apply(index, &Command::new(1_000 + index, op))?;
        checkpointer.record(
            queues,
            applied.changes,
            AppliedState::default(),
            Instant::now(),
        )?;
    }
    let targets = CheckpointTargets {
        queues,
        journal,
        rows,
    };
    checkpointer.checkpoint(targets, &RwLock::new(state))?;
    Ok(())
}

#[test]
fn an_install_whose_first_row_write_fails_leaves_stores_that_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = sled::open(dir.path().join("db"))?;
    let tree = db.open_tree("state")?;
    {
        let queues = QueueFiles::open(&dir.path().join("queues"), 1 << 20)?;
        let journal = TxnJournal::open(&dir.path().join("txn-journal"))?;
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
    let queues = QueueFiles::open(&dir.path().join("queues"), 1 << 20)?;
    let journal = TxnJournal::open(&dir.path().join("txn-journal"))?;
    let (state, _) = load(&tree, &journal)?;
    queues.reconcile(&stored_offsets(&state))?;
    let topic = state.topic("a").map(|t| t.id);
    let mut bodies = Vec::new();
    queues.read(topic.unwrap_or_default(), 0, 0, 3, |_, bytes| {
        bodies.push(bytes.len());
        Ok(true)
    })?;
    ensure!(bodies.len() == 3, "the stored messages: {bodies:?}");
    Ok(())
}
