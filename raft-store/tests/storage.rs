//! Storage tests: openraft's own log-store conformance suite on our sled store, snapshot round
//! trip, replay determinism and recovery after reopening.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{EntryPayload, RaftLogReader, StorageError};
use txmq_raft_store::types::alias::{Entry, Snapshot};
use txmq_raft_store::{LogStore, StateMachineStore, Storage, StorageConfig, TypeConfig};
use txmq_state::{Command, NewMessage, Operation, TopicKind, TopicSpec};
use txmq_state::{Decision, DecisionSource, TxnTiming};

struct TempDirStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempDirStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let storage = Storage::open(&StorageConfig::new(dir.path()))
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, storage.log, storage.state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_and_state_machine_stores_pass_the_openraft_suite() -> Result<()> {
    Suite::test_all(TempDirStores).await?;
    Ok(())
}

fn entry(index: u64, op: Operation) -> Entry {
    let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
    Entry::new(
        log_id,
        EntryPayload::Normal(Command::new(1_000 + index, op)),
    )
}

fn workload() -> Vec<Entry> {
    let mut entries = vec![entry(
        1,
        Operation::CreateTopic(TopicSpec {
            name: "a".into(),
            kind: TopicKind::Normal,
            queues: 3,
            retention_ms: 1,
            retention_bytes: 0,
        }),
    )];
    for i in 0..200u64 {
        let messages = (0..(i % 4) + 1)
            .map(|j| NewMessage {
                key: if j % 2 == 0 {
                    format!("k{}", i % 7)
                } else {
                    String::new()
                },
                tag: "t".into(),
                body: vec![i as u8; (i as usize * 13) % 500],
                properties: BTreeMap::from([("i".to_string(), i.to_string())]),
            })
            .collect();
        entries.push(entry(
            i + 2,
            Operation::Publish {
                topic: "a".into(),
                messages,
            },
        ));
    }
    // Transactions: three half messages, one committed, one rolled back, one left pending.
    let spec = TopicSpec {
        name: "pay".into(),
        kind: TopicKind::Transaction,
        queues: 2,
        retention_ms: 1,
        retention_bytes: 0,
    };
    entries.push(entry(202, Operation::CreateTopic(spec)));
    let timing = TxnTiming {
        first_check_delay_ms: 1000,
        check_interval_ms: 1000,
        max_checks: 3,
        max_lifetime_ms: 100_000,
    };
    for i in 0..3u64 {
        let message = NewMessage {
            key: String::new(),
            tag: String::new(),
            body: vec![i as u8; 10],
            properties: BTreeMap::new(),
        };
        entries.push(entry(
            203 + i,
            Operation::HalfMessage {
                topic: "pay".into(),
                group: "g".into(),
                message,
                timing,
            },
        ));
    }
    for (i, decision) in [(0u64, Decision::Commit), (1, Decision::Rollback)] {
        let txn_id = format!("T{:016X}00000000", 203 + i);
        let op = Operation::EndTransaction {
            txn_id,
            group: "g".into(),
            decision,
            source: DecisionSource::Producer,
        };
        entries.push(entry(206 + i, op));
    }
    entries
}

const LAST_INDEX: u64 = 207;

async fn apply_all(sm: &mut StateMachineStore, entries: Vec<Entry>) -> Result<()> {
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await?;
    Ok(())
}

fn open(dir: &std::path::Path) -> Result<Storage> {
    // sled releases its file lock a moment after the last handle is dropped (its flusher
    // thread lets go on its own schedule), so opening again at once within one process can find
    // it still held. A node opens its store once per process; tests reopen in the same one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Storage::open(&StorageConfig::new(dir)) {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return Ok(result?),
        }
    }
}

/// What the network sends for `snapshot` (a manifest on disk): the full snapshot, expanded with
/// the sender's message segments into a temporary file.
async fn full_snapshot(sender: &Storage, snapshot: tokio::fs::File) -> Result<tokio::fs::File> {
    let out = tempfile::tempfile()?;
    let mut full = sender.snapshots.expand(snapshot.into_std().await, out)?;
    use std::io::Seek;
    full.seek(std::io::SeekFrom::Start(0))?;
    Ok(tokio::fs::File::from_std(full))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_same_log_gives_the_same_state() -> Result<()> {
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (mut s1, mut s2) = (open(d1.path())?, open(d2.path())?);
    apply_all(&mut s1.state_machine, workload()).await?;
    apply_all(&mut s2.state_machine, workload()).await?;
    ensure!(s1.reader.content_digest()? == s2.reader.content_digest()?);
    ensure!(s1.reader.topics() == s2.reader.topics());
    // And a different log gives a different state.
    let d3 = tempfile::tempdir()?;
    let mut s3 = open(d3.path())?;
    let mut other = workload();
    other.truncate(150);
    let mut undecided = workload();
    undecided.pop();
    let d4 = tempfile::tempdir()?;
    let mut s4 = open(d4.path())?;
    apply_all(&mut s4.state_machine, undecided).await?;
    let t204 = format!("T{:016X}00000000", 204u64);
    ensure!(
        s1.reader.content_digest()? != s4.reader.content_digest()?,
        "a decision must change the digest: {:?} vs {:?}",
        s1.reader.transaction(&t204).map(|t| t.state),
        s4.reader.transaction(&t204).map(|t| t.state)
    );
    apply_all(&mut s3.state_machine, other).await?;
    ensure!(s1.reader.content_digest()? != s3.reader.content_digest()?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_round_trip_reproduces_the_state() -> Result<()> {
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut source = open(d1.path())?;
    apply_all(&mut source.state_machine, workload()).await?;
    let mut builder = source.state_machine.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await?;
    ensure!(snapshot.meta.last_log_id.map(|l| l.index) == Some(LAST_INDEX));

    // Install into a node that has some unrelated state, which must be replaced entirely.
    let mut target = open(d2.path())?;
    let mut unrelated = workload();
    unrelated.truncate(5);
    apply_all(&mut target.state_machine, unrelated).await?;
    // The file on disk is a manifest (no message rows): a node without those messages must
    // refuse it rather than end up with a smaller state.
    let manifest = source.state_machine.get_current_snapshot().await?;
    let manifest = manifest.ok_or_else(|| anyhow::anyhow!("no current snapshot"))?;
    let d3 = tempfile::tempdir()?;
    let mut other = open(d3.path())?;
    let refused = other
        .state_machine
        .install_snapshot(&manifest.meta, manifest.snapshot)
        .await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("cannot be installed")),
        "a manifest was installed without its messages: {refused:?}"
    );
    let full = full_snapshot(&source, snapshot.snapshot).await?;
    target
        .state_machine
        .install_snapshot(&snapshot.meta, full)
        .await?;
    ensure!(source.reader.content_digest()? == target.reader.content_digest()?);
    ensure!(source.reader.topics() == target.reader.topics());
    let (applied, _) = target.state_machine.applied_state().await?;
    ensure!(applied.map(|l| l.index) == Some(LAST_INDEX));
    let a = source.reader.read("a", Some(1), 0, 1000)?;
    let b = target.reader.read("a", Some(1), 0, 1000)?;
    ensure!(!a.is_empty() && a == b);
    // Transactions travel in the snapshot too: the pending one is still pending and due.
    let pending = target.reader.pending_transactions(None, 10);
    ensure!(
        pending.len() == 1 && pending[0].id.to_string() == format!("T{:016X}00000000", 205u64),
        "{pending:?}"
    );
    ensure!(target.reader.due_transactions(u64::MAX, 10).len() == 1);
    ensure!(
        target
            .reader
            .transaction(&format!("T{:016X}00000000", 203u64))
            .is_some_and(|t| t.position.is_some())
    );
    ensure!(target.reader.read("pay", None, 0, 10)?.len() == 1);

    // The installed snapshot is kept and can be served onwards.
    let current = target.state_machine.get_current_snapshot().await?;
    ensure!(current.map(|s| s.meta.last_log_id) == Some(snapshot.meta.last_log_id));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_log_survive_reopening() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let digest = {
        let mut s = open(dir.path())?;
        let entries = workload();
        let (tx, rx) = TypeConfig::oneshot();
        let cb = openraft::storage::IOFlushed::<TypeConfig>::signal(tx);
        s.log.append(entries.clone(), cb).await?;
        rx.await??;
        apply_all(&mut s.state_machine, entries).await?;
        // What the log store does before it purges: write the applied state through.
        s.state_machine.checkpointer()()?;
        s.db.flush()?;
        s.reader.content_digest()?
    };
    let mut s = open(dir.path())?;
    ensure!(s.reader.content_digest()? == digest);
    ensure!(
        s.reader.pending_transactions(None, 10).len() == 1,
        "pending transaction lost on reopen"
    );
    let state = s.log.get_log_state().await?;
    ensure!(state.last_log_id.map(|l| l.index) == Some(LAST_INDEX));
    Ok(())
}

/// A power loss can keep the committed index (in sled) and lose the log's unsynced tail: the
/// reopened node re-applies only what its log holds instead of failing to start on entries that
/// are gone (found by the simulator; its regression seeds are in sim/tests/simulation.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_committed_index_past_the_log_is_cut_back_to_the_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let entries = workload();
    let last = entries.last().map(|e| e.log_id).context("entries")?;
    {
        let mut s = open(dir.path())?;
        let (tx, rx) = TypeConfig::oneshot();
        let cb = openraft::storage::IOFlushed::<TypeConfig>::signal(tx);
        s.log.append(entries, cb).await?;
        rx.await??;
        // Committed up to an entry this log never made durable.
        let beyond = openraft::testing::log_id::<TypeConfig>(1, 1, LAST_INDEX + 3);
        s.log.save_committed(Some(beyond)).await?;
        s.db.flush()?;
        ensure!(s.log.read_committed().await? == Some(last));
    }
    let mut s = open(dir.path())?;
    ensure!(s.log.read_committed().await? == Some(last));
    Ok(())
}

/// A crash before the applied state was checkpointed loses nothing: the node reopens at its last
/// checkpoint (here: nothing applied, no queue files beyond it) and re-applying the log from
/// there gives exactly the state it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_not_yet_checkpointed_is_rebuilt_from_the_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let entries = workload();
    let (half, rest) = entries.split_at(entries.len() / 2);
    let digest = {
        let mut s = open(dir.path())?;
        let (tx, rx) = TypeConfig::oneshot();
        let cb = openraft::storage::IOFlushed::<TypeConfig>::signal(tx);
        s.log.append(entries.clone(), cb).await?;
        rx.await??;
        apply_all(&mut s.state_machine, half.to_vec()).await?;
        s.state_machine.checkpointer()()?;
        // Applied but not checkpointed: only in memory and in the queue files.
        apply_all(&mut s.state_machine, rest.to_vec()).await?;
        s.reader.content_digest()?
    };
    let mut s = open(dir.path())?;
    let (applied, _) = s.state_machine.applied_state().await?;
    ensure!(
        applied.map(|l| l.index) == half.last().map(|e| e.log_id.index),
        "reopened at the checkpoint"
    );
    ensure!(s.reader.content_digest()? != digest);
    let redo = s
        .log
        .try_get_log_entries(applied.map_or(0, |l| l.index + 1)..=LAST_INDEX)
        .await?;
    ensure!(
        redo == rest,
        "the log holds everything after the checkpoint"
    );
    apply_all(&mut s.state_machine, redo).await?;
    ensure!(
        s.reader.content_digest()? == digest,
        "re-applied state differs"
    );
    Ok(())
}

/// The records of the workload's three transactions, as the node holds them.
fn transactions(s: &Storage) -> Result<Vec<txmq_state::TxnRecord>> {
    (203..206u64)
        .map(|index| {
            let id = format!("T{index:016X}00000000");
            s.reader
                .transaction(&id)
                .ok_or_else(|| anyhow::anyhow!("transaction {id} is missing"))
        })
        .collect()
}

/// A node upgraded from a version that kept message segments and transaction records as sled
/// rows keeps them: they move into the queue files and the transaction journal at the first
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rows_kept_in_sled_by_an_earlier_version_move_to_queue_files() -> Result<()> {
    let current = tempfile::tempdir()?;
    let mut s = open(current.path())?;
    apply_all(&mut s.state_machine, workload()).await?;
    s.state_machine.checkpointer()()?;
    let digest = s.reader.content_digest()?;
    // The same state in the old layout: the metadata rows, plus every queue's messages as
    // segment rows of up to 10 messages, all in the sled state tree.
    let old = tempfile::tempdir()?;
    let mut segments = 0;
    {
        let db = sled::open(old.path().join("db"))?;
        let tree = db.open_tree("state")?;
        for item in s.db.open_tree("state")?.iter() {
            let (k, v) = item?;
            if k.as_ref() != txmq_raft_store::rows::keys::JOURNAL_KEY {
                tree.insert(k, v)?;
            }
        }
        for record in transactions(&s)? {
            let row = txmq_raft_store::rows::txn_row::encode_txn_row(&record)?;
            tree.insert(txmq_raft_store::rows::keys::txn_key(&record.id), row)?;
        }
        for topic in s.reader.topics() {
            for queue in 0..topic.queues {
                let q = queue as usize;
                let mut messages = Vec::new();
                s.reader.for_each_message(
                    topic.id,
                    queue,
                    topic.low_offsets[q],
                    topic.next_offsets[q],
                    |offset, m| {
                        messages.push((offset, m));
                        true
                    },
                )?;
                for chunk in messages.chunks(10) {
                    let encoded = chunk
                        .iter()
                        .map(|(_, m)| txmq_state::codec::encode_compact(m))
                        .collect::<Result<Vec<_>, _>>()?;
                    let key = txmq_raft_store::rows::keys::message_key(topic.id, queue, chunk[0].0);
                    tree.insert(key, txmq_raft_store::rows::message_rows::encode(&encoded))?;
                    segments += 1;
                }
            }
        }
        db.flush()?;
    }
    ensure!(
        segments > 10,
        "the workload stores messages in several queues"
    );
    drop(s);
    let s = open(old.path())?;
    ensure!(
        s.reader.content_digest()? == digest,
        "messages lost or changed by the move"
    );
    let rows_left =
        s.db.open_tree("state")?
            .scan_prefix([txmq_raft_store::rows::keys::MESSAGE_PREFIX])
            .count();
    ensure!(rows_left == 0, "{rows_left} message rows left in sled");
    let txn_rows_left =
        s.db.open_tree("state")?
            .scan_prefix([txmq_raft_store::rows::keys::TXN_PREFIX])
            .count();
    ensure!(
        txn_rows_left == 0,
        "{txn_rows_left} transaction rows left in sled"
    );
    ensure!(transactions(&s)?.len() == 3, "the three transactions moved");
    drop(s);
    let s = open(old.path())?;
    ensure!(
        s.reader.content_digest()? == digest,
        "the moved messages survive a restart"
    );
    Ok(())
}

/// A node upgraded from a version that kept its Raft log in a sled tree keeps that log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_kept_in_sled_by_an_earlier_version_is_moved_to_segment_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let entries = workload();
    {
        let db = sled::open(dir.path().join("db"))?;
        let old = db.open_tree("raft_log")?;
        for e in &entries {
            old.insert(e.log_id.index.to_be_bytes(), txmq_state::codec::encode(e)?)?;
        }
        db.flush()?;
    }
    let mut s = open(dir.path())?;
    let state = s.log.get_log_state().await?;
    ensure!(state.last_log_id.map(|l| l.index) == Some(LAST_INDEX));
    let read = s.log.try_get_log_entries(0..=LAST_INDEX).await?;
    ensure!(read == entries, "the moved log differs from the old one");
    ensure!(
        !s.db.tree_names().iter().any(|n| n.as_ref() == b"raft_log"),
        "the old tree is dropped once its entries are in the files"
    );
    drop(s);
    let mut s = open(dir.path())?;
    ensure!(s.log.try_get_log_entries(0..=LAST_INDEX).await? == entries);
    Ok(())
}

/// A store that applied the workload, and the snapshot it built then.
async fn snapshotted(dir: &std::path::Path) -> Result<(Storage, Snapshot)> {
    let mut source = open(dir)?;
    apply_all(&mut source.state_machine, workload()).await?;
    let mut builder = source.state_machine.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await?;
    Ok((source, snapshot))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_an_error_not_a_smaller_state() -> Result<()> {
    let d1 = tempfile::tempdir()?;
    let (source, snapshot) = snapshotted(d1.path()).await?;
    // Cut the full snapshot in half.
    let mut full = full_snapshot(&source, snapshot.snapshot)
        .await?
        .into_std()
        .await;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut full, &mut bytes)?;
    let cut = d1.path().join("cut.snap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    let d2 = tempfile::tempdir()?;
    let mut target = open(d2.path())?;
    let file = tokio::fs::File::open(&cut).await?;
    let result = target
        .state_machine
        .install_snapshot(&snapshot.meta, file)
        .await;
    ensure!(result.is_err(), "a truncated snapshot was accepted");
    Ok(())
}

/// An install that fails half way (here the queue files' directory cannot take new files, as
/// a full or failing disk would refuse them) leaves the full snapshot as the current one and
/// stores that open with nothing applied; installing the current snapshot again — what openraft
/// does at the next start — restores the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_cut_short_is_done_again_from_the_current_snapshot() -> Result<()> {
    let d1 = tempfile::tempdir()?;
    let (source, snapshot) = snapshotted(d1.path()).await?;
    let full = full_snapshot(&source, snapshot.snapshot).await?;
    let d2 = tempfile::tempdir()?;
    {
        let mut target = open(d2.path())?;
        let queues = d2.path().join("queues");
        std::fs::remove_dir_all(&queues)?;
        std::fs::write(&queues, b"not a directory")?;
        let cut = target
            .state_machine
            .install_snapshot(&snapshot.meta, full)
            .await;
        ensure!(
            cut.is_err(),
            "the install went through without its queue files"
        );
        std::fs::remove_file(&queues)?;
    }
    let mut target = open(d2.path())?;
    let (applied, _) = target.state_machine.applied_state().await?;
    ensure!(
        applied.is_none(),
        "half an install counted as applied: {applied:?}"
    );
    let current = target.state_machine.get_current_snapshot().await?;
    let current = current.context("no current snapshot after the install was cut short")?;
    ensure!(current.meta == snapshot.meta, "{:?}", current.meta);
    target
        .state_machine
        .install_snapshot(&current.meta, current.snapshot)
        .await?;
    ensure!(target.reader.content_digest()? == source.reader.content_digest()?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_pressure_trims_the_globally_oldest_queue_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s = open(dir.path())?;
    apply_all(&mut s.state_machine, workload()).await?;
    // Topic "a" was written first (earlier entry times), so its oldest queue goes first.
    let (topic, trim) = s
        .reader
        .oldest_first_trim(10)?
        .ok_or_else(|| anyhow::anyhow!("nothing to trim"))?;
    ensure!(topic == "a", "trimmed {topic}");
    let meta = s
        .reader
        .topic("a")
        .ok_or_else(|| anyhow::anyhow!("no topic"))?;
    let first = s
        .reader
        .message_at("a", trim.queue, 0)?
        .ok_or_else(|| anyhow::anyhow!("no message"))?;
    for q in 0..meta.queues {
        if let Some(m) = s.reader.message_at("a", q, 0)? {
            ensure!(
                first.message.born_at_ms <= m.message.born_at_ms,
                "queue {q} is older"
            );
        }
    }
    ensure!(trim.new_low == 10 && trim.bytes > 0, "{trim:?}");
    Ok(())
}

/// A publish of many messages with one key is one segment row; retention below the middle of
/// it keeps the row and hides the trimmed offsets, and deletes it once it is wholly below. Two
/// stores applying the same log (one after a snapshot install) keep identical rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_inside_and_across_message_segments() -> Result<()> {
    use txmq_state::QueueTrim;
    let message = |i: usize| NewMessage {
        key: "one-queue".into(),
        tag: String::new(),
        body: format!("m{i}").into_bytes(),
        properties: BTreeMap::new(),
    };
    let mut entries = vec![entry(
        1,
        Operation::CreateTopic(TopicSpec {
            name: "seg".into(),
            kind: TopicKind::Normal,
            queues: 1,
            retention_ms: 0,
            retention_bytes: 0,
        }),
    )];
    entries.push(entry(
        2,
        Operation::Publish {
            topic: "seg".into(),
            messages: (0..10).map(message).collect(),
        },
    ));
    entries.push(entry(
        3,
        Operation::Publish {
            topic: "seg".into(),
            messages: (10..15).map(message).collect(),
        },
    ));
    let trim = |index: u64, new_low: u64| {
        entry(
            index,
            Operation::Trim {
                topic: "seg".into(),
                trims: vec![QueueTrim {
                    queue: 0,
                    new_low,
                    bytes: 2,
                }],
            },
        )
    };
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (mut s1, mut s2) = (open(d1.path())?, open(d2.path())?);
    apply_all(&mut s1.state_machine, entries.clone()).await?;
    apply_all(&mut s1.state_machine, vec![trim(4, 4)]).await?;

    let bodies = |s: &Storage, from: u64| -> Result<Vec<String>> {
        Ok(s.reader
            .read("seg", Some(0), from, 100)?
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
            .collect())
    };
    ensure!(bodies(&s1, 0)? == (4..15).map(|i| format!("m{i}")).collect::<Vec<_>>());
    ensure!(
        s1.reader.message_at("seg", 0, 3)?.is_none(),
        "a trimmed offset is readable"
    );
    ensure!(
        s1.reader
            .message_at("seg", 0, 12)?
            .is_some_and(|m| m.message.body == b"m12")
    );

    // A replica that catches up through a snapshot taken now holds the same rows.
    let snapshot = s1
        .state_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await?;
    let meta = snapshot.meta.clone();
    let full = full_snapshot(&s1, snapshot.snapshot).await?;
    s2.state_machine.install_snapshot(&meta, full).await?;
    ensure!(
        s1.reader.content_digest()? == s2.reader.content_digest()?,
        "snapshot changed the rows"
    );
    ensure!(bodies(&s2, 0)? == bodies(&s1, 0)?);

    // Past the first segment's end: its row goes; the second segment's rest stays readable.
    apply_all(&mut s1.state_machine, vec![trim(5, 12)]).await?;
    apply_all(&mut s2.state_machine, vec![trim(5, 12)]).await?;
    ensure!(
        bodies(&s1, 0)? == ["m12", "m13", "m14"],
        "{:?}",
        bodies(&s1, 0)?
    );
    ensure!(s1.reader.content_digest()? == s2.reader.content_digest()?);
    let d3 = tempfile::tempdir()?;
    let mut s3 = open(d3.path())?;
    apply_all(&mut s3.state_machine, entries.clone()).await?;
    apply_all(&mut s3.state_machine, vec![trim(4, 4), trim(5, 12)]).await?;
    ensure!(s1.reader.content_digest()? == s3.reader.content_digest()?);
    // A trim that keeps nothing from a segment ahead of it changes the rows (the row is gone).
    apply_all(&mut s3.state_machine, vec![trim(6, 15)]).await?;
    ensure!(bodies(&s3, 0)?.is_empty());
    ensure!(s1.reader.content_digest()? != s3.reader.content_digest()?);
    Ok(())
}
