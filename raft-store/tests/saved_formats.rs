//! The store's formats pinned by saved files: a Raft log segment, queue files, the
//! transaction journal, a snapshot manifest, and the sled rows (applied state, journal range,
//! transaction rows) — each written once by the code of its time and kept in `tests/saved/`.
//!
//! Each test reads the saved files with today's code and compares what it reads with the
//! values they were made from (a short log, applied through the real state machine). A change
//! that breaks reading old data directories, or snapshots from nodes of an older version, fails
//! here. Formats are append-only: when one is extended, save new files beside the old ones.
//!
//! Missing files are written only on request: `TXMQ_SAVE_NEW_FORMATS=1 cargo test -p
//! txmq-raft-store --test saved_formats` (it never overwrites a saved file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use openraft::entry::RaftEntry;
use openraft::{EntryPayload, Membership};
use txmq_raft_store::files::frame;
use txmq_raft_store::files::queue_files::{QUEUE_FILE_BYTES, QueueFiles};
use txmq_raft_store::files::txn_journal::{JournalRange, TxnJournal};
use txmq_raft_store::log::segments::{LogFiles, SEGMENT_BYTES, read_located};
use txmq_raft_store::rows::applied_state::AppliedState;
use txmq_raft_store::rows::state_rows::metadata_rows;
use txmq_raft_store::rows::txn_row::{decode_txn_row, encode_txn_row};
use txmq_raft_store::snapshot::format::{
    FORMAT_VERSION, SnapshotHeader, SnapshotReader, write_file,
};
use txmq_raft_store::types::alias::{Entry, SnapshotMeta, StoredMembership};
use txmq_raft_store::{NodeInfo, TypeConfig};
use txmq_state::codec;
use txmq_state::{
    BrokerState, Change, Command, Decision, DecisionSource, NewMessage, Operation, TopicKind,
    TopicSpec, TxnId, TxnRecord, TxnTiming,
};

fn saved(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/saved")
        .join(name)
}

fn saving_new() -> bool {
    std::env::var_os("TXMQ_SAVE_NEW_FORMATS").is_some()
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        key: String::new(),
        tag: "t".into(),
        body: body.as_bytes().to_vec(),
        properties: BTreeMap::from([("p".into(), "v".into())]),
    }
}

const TIMING: TxnTiming = TxnTiming {
    first_check_delay_ms: 6_000,
    check_interval_ms: 30_000,
    max_checks: 15,
    max_lifetime_ms: 14_400_000,
};

fn log_id(index: u64) -> txmq_raft_store::types::alias::LogId {
    openraft::testing::log_id::<TypeConfig>(1, 1, index)
}

/// The log the saved files come from: a blank entry, a membership, and commands that create
/// topics, publish, lease a message to a group, and open and commit transactions.
fn sample_entries() -> Vec<Entry> {
    let node = |n: u64| NodeInfo {
        peer_addr: format!("10.0.0.{n}:9871"),
        client_addr: format!("10.0.0.{n}:9870"),
    };
    let members = Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]),
    )
    .expect("a valid membership");
    let spec = |name: &str, kind| TopicSpec {
        name: name.into(),
        kind,
        queues: 2,
        retention_ms: 60_000,
        retention_bytes: 0,
    };
    let ops = vec![
        Operation::CreateTopic(spec("orders", TopicKind::Normal)),
        Operation::CreateTopic(spec("pay", TopicKind::Transaction)),
        Operation::Publish {
            topic: "orders".into(),
            messages: vec![message("a"), message("b"), message("c")],
        },
        Operation::Receive {
            group: "billing".into(),
            topic: "orders".into(),
            max: 1,
            invisible_ms: 30_000,
        },
        Operation::Batch(vec![
            Operation::HalfMessage {
                topic: "pay".into(),
                group: "shop".into(),
                message: message("one"),
                timing: TIMING,
            },
            Operation::HalfMessage {
                topic: "pay".into(),
                group: "shop".into(),
                message: message("two"),
                timing: TIMING,
            },
        ]),
        Operation::EndTransaction {
            txn_id: TxnId::new(7, 0).to_string(),
            group: "shop".into(),
            decision: Decision::Commit,
            source: DecisionSource::Producer,
        },
    ];
    let mut entries = vec![
        Entry::new(log_id(1), EntryPayload::Blank),
        Entry::new(log_id(2), EntryPayload::Membership(members)),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let index = i as u64 + 3;
        entries.push(Entry::new(
            log_id(index),
            EntryPayload::Normal(Command::new(1_000 * index, op)),
        ));
    }
    entries
}

/// The state the sample log leads to, and the messages it appended, by (topic id, queue).
/// Encoded messages by (topic id, queue), from offset 0.
type QueueContents = BTreeMap<(u64, u32), Vec<Vec<u8>>>;

fn sample_state() -> (BrokerState, QueueContents) {
    let mut state = BrokerState::default();
    let mut appended = QueueContents::new();
    for entry in sample_entries() {
        if let EntryPayload::Normal(command) = &entry.payload {
            let applied = state.apply(entry.log_id.index, command).expect("apply");
            for change in applied.changes.into_list() {
                if let Change::Appended {
                    topic,
                    queue,
                    messages,
                    ..
                } = change
                {
                    appended.entry((topic, queue)).or_default().extend(messages);
                }
            }
        }
    }
    assert_eq!(
        state.transactions().pending().count(),
        1,
        "one transaction stays pending"
    );
    assert_eq!(
        state.transactions().decided().count(),
        1,
        "one is committed"
    );
    (state, appended)
}

fn sample_applied() -> AppliedState {
    let entries = sample_entries();
    let EntryPayload::Membership(m) = &entries[1].payload else {
        panic!("entry 2 is the membership")
    };
    AppliedState {
        last_applied: Some(log_id(entries.len() as u64)),
        membership: StoredMembership::new(Some(log_id(2)), m.clone()),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// The saved directory `name`, made by `make` into a fresh directory when missing and asked for.
/// `keep` says how many bytes of a made file to save (log segments are zero-filled ahead).
fn saved_dir(
    name: &str,
    make: impl FnOnce(&Path) -> Result<()>,
    keep: fn(&[u8]) -> usize,
) -> Result<PathBuf> {
    let dir = saved(name);
    if dir.exists() {
        return Ok(dir);
    }
    ensure!(
        saving_new(),
        "{} is missing; new formats are saved with TXMQ_SAVE_NEW_FORMATS=1",
        dir.display()
    );
    let made = tempfile::tempdir()?;
    make(made.path())?;
    save_tree(made.path(), &dir, keep)?;
    Ok(dir)
}

fn save_tree(from: &Path, to: &Path, keep: fn(&[u8]) -> usize) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            save_tree(&entry.path(), &dest, keep)?;
        } else {
            let bytes = std::fs::read(entry.path())?;
            std::fs::write(dest, &bytes[..keep(&bytes)])?;
        }
    }
    Ok(())
}

fn whole(bytes: &[u8]) -> usize {
    bytes.len()
}

/// The bytes of the frames at the start of `bytes` (what follows them is zeros written ahead).
fn frames_only(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some((_, len)) = frame::read(&bytes[at..]) {
        if len == frame::HEADER {
            break;
        }
        at += len;
    }
    at
}

#[test]
fn a_saved_log_segment_reads_back_as_the_same_entries() -> Result<()> {
    let make = |dir: &Path| -> Result<()> {
        let mut log = LogFiles::open(dir, None, SEGMENT_BYTES)?;
        log.append(sample_entries())?
            .expect("written")
            .sync_data()?;
        Ok(())
    };
    let saved = saved_dir("raft-log", make, frames_only)?;
    let copy = tempfile::tempdir()?;
    copy_dir(&saved, copy.path())?;
    let log = LogFiles::open(copy.path(), None, SEGMENT_BYTES)?;
    let read = read_located(&log.locate(0, u64::MAX)?)?;
    ensure!(
        format!("{read:?}") == format!("{:?}", sample_entries()),
        "the saved log reads back differently:\n{read:?}"
    );
    Ok(())
}

#[test]
fn saved_queue_files_read_back_as_the_same_messages() -> Result<()> {
    let (_, appended) = sample_state();
    let make = |dir: &Path| -> Result<()> {
        let queues = QueueFiles::open(dir, QUEUE_FILE_BYTES)?;
        for ((topic, queue), messages) in &appended {
            queues.append(*topic, *queue, 0, messages)?;
        }
        queues.sync()?;
        Ok(())
    };
    let saved = saved_dir("queues", make, whole)?;
    let copy = tempfile::tempdir()?;
    copy_dir(&saved, copy.path())?;
    let queues = QueueFiles::open(copy.path(), QUEUE_FILE_BYTES)?;
    // As at a node's start: the state names each queue's offsets.
    let offsets = appended
        .iter()
        .map(|(&id, m)| (id, (0, m.len() as u64)))
        .collect();
    queues.reconcile(&offsets)?;
    for ((topic, queue), messages) in &appended {
        let mut read = Vec::new();
        queues.read(*topic, *queue, 0, messages.len() as u64, |_, m| {
            read.push(m.to_vec());
            Ok(true)
        })?;
        ensure!(
            &read == messages,
            "queue {topic}/{queue} reads back differently: {} of {} messages",
            read.len(),
            messages.len()
        );
    }
    Ok(())
}

#[test]
fn a_saved_transaction_journal_loads_the_same_records() -> Result<()> {
    let (state, _) = sample_state();
    let records: Vec<&TxnRecord> = state
        .transactions()
        .pending()
        .chain(state.transactions().decided())
        .collect();
    let range_file = saved("journal_range.bin");
    let make = |dir: &Path| -> Result<()> {
        let journal = TxnJournal::open(dir)?;
        journal.put_all(records.iter().copied())?;
        journal.sync()?;
        std::fs::write(&range_file, codec::encode(&journal.range())?)?;
        Ok(())
    };
    let saved_journal = saved_dir("txn-journal", make, whole)?;
    let range: JournalRange = codec::decode(&std::fs::read(&range_file)?)?;
    let copy = tempfile::tempdir()?;
    copy_dir(&saved_journal, copy.path())?;
    let loaded = TxnJournal::open(copy.path())?.load(range)?;
    for record in &records {
        ensure!(
            loaded.get(&record.id) == Some(*record),
            "record {} loads differently",
            record.id
        );
    }
    ensure!(
        loaded.len() == records.len(),
        "the journal holds other records too"
    );
    Ok(())
}

#[test]
fn a_saved_snapshot_manifest_reads_back_as_the_same_rows() -> Result<()> {
    let (state, _) = sample_state();
    let applied = sample_applied();
    let header = || SnapshotHeader {
        format_version: FORMAT_VERSION,
        meta: SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
        },
        applied: applied.clone(),
        manifest: true,
    };
    let make = |dir: &Path| -> Result<()> {
        write_file(
            &dir.join("building.tmp"),
            &dir.join("current.snap"),
            &header(),
            |w| {
                for (key, value) in metadata_rows(&state)? {
                    w.row(&key, &value)?;
                }
                Ok(())
            },
        )?;
        Ok(())
    };
    let saved = saved_dir("snapshot", make, whole)?;
    let (read_header, mut rows) =
        SnapshotReader::open(std::fs::File::open(saved.join("current.snap"))?)?;
    ensure!(read_header.manifest && read_header.format_version == FORMAT_VERSION);
    ensure!(
        read_header.applied == applied,
        "the applied state reads back differently"
    );
    let mut read = Vec::new();
    while let Some(row) = rows.next_row()? {
        read.push(row);
    }
    ensure!(
        read == metadata_rows(&state)?,
        "the rows read back differently (topic, group, transaction or retired-node rows changed)"
    );
    Ok(())
}

#[test]
fn saved_sled_rows_decode_to_the_same_values() -> Result<()> {
    let (state, _) = sample_state();
    let pinned = |name: &str, fresh: Vec<u8>| -> Result<Vec<u8>> {
        let path = saved(name);
        if !path.exists() {
            ensure!(
                saving_new(),
                "{} is missing; new formats are saved with TXMQ_SAVE_NEW_FORMATS=1",
                path.display()
            );
            std::fs::write(&path, &fresh)?;
        }
        let bytes = std::fs::read(&path)?;
        ensure!(bytes == fresh, "{name}: the encoding changed");
        Ok(bytes)
    };
    let applied = sample_applied();
    let bytes = pinned("applied_state.bin", codec::encode(&applied)?)?;
    ensure!(codec::decode::<AppliedState>(&bytes)? == applied);
    for record in state
        .transactions()
        .pending()
        .chain(state.transactions().decided())
    {
        let name = format!("txn_row_{:?}.bin", record.state).to_lowercase();
        let bytes = pinned(&name, encode_txn_row(record)?)?;
        ensure!(
            &decode_txn_row(&bytes)? == record,
            "{name} decodes differently"
        );
    }
    Ok(())
}
