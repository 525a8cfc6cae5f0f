//! Micro-benchmarks: pure apply of a publish batch and of a transaction's half message and
//! decision, codec of a batch, the stored state-machine apply (queue files and the pending
//! checkpoint; no fsync on this path), the log append with its fsync, and a queue read.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use txmq_benches::{commit_batch, create_topic, create_txn_topic, half_batch, publish};
use txmq_raft_store::CommandResult;
use txmq_raft_store::state::{BrokerState, WriteBatch};
use txmq_raft_store::types::alias::Entry;
use txmq_raft_store::{Storage, StorageConfig, TypeConfig, codec};

fn pure_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("pure_apply");
    let batch_cmd = publish("t", 64, 256);
    group.throughput(Throughput::Elements(64));
    group.bench_function("publish_64x256B", |b| {
        let mut state = BrokerState::default();
        let mut scratch = WriteBatch::default();
        state
            .apply(1, &create_topic("t", 4), &mut scratch)
            .expect("create");
        let mut index = 2;
        b.iter_batched(
            || batch_cmd.clone(),
            |cmd| {
                let mut batch = WriteBatch::default();
                index += 1;
                state.apply(index, &cmd, &mut batch).expect("apply")
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The ids of the transactions a half batch created.
fn txn_ids(result: &CommandResult) -> Vec<String> {
    match result {
        CommandResult::Batch(results) => results
            .iter()
            .filter_map(|r| match r {
                CommandResult::HalfAccepted { txn_id } => Some(txn_id.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Pure apply of the two steps of a transaction, 64 at a time: the half messages, then their
/// commits (which publish the messages to the topic).
fn pure_txn_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("pure_txn_apply");
    group.throughput(Throughput::Elements(64));
    let halves = half_batch("t", 64, 256);
    let mut state = BrokerState::default();
    state
        .apply(1, &create_txn_topic("t", 4), &mut WriteBatch::default())
        .expect("create");
    let mut index = 1;
    group.bench_function("half_64x256B", |b| {
        b.iter_batched(
            || halves.clone(),
            |cmd| {
                index += 1;
                state
                    .apply(index, &cmd, &mut WriteBatch::default())
                    .expect("apply")
            },
            BatchSize::SmallInput,
        );
    });
    // Setup and routine both apply to the same state (halves first, then their commits).
    let shared = std::cell::RefCell::new((state, index));
    group.bench_function("commit_64", |b| {
        b.iter_batched(
            || {
                let (state, index) = &mut *shared.borrow_mut();
                *index += 1;
                let result = state
                    .apply(*index, &halves, &mut WriteBatch::default())
                    .expect("half");
                let ids = txn_ids(&result);
                assert_eq!(ids.len(), 64, "every half message is accepted");
                commit_batch(&ids)
            },
            |commits| {
                let (state, index) = &mut *shared.borrow_mut();
                *index += 1;
                state
                    .apply(*index, &commits, &mut WriteBatch::default())
                    .expect("commit")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn codec_roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let cmd = publish("t", 64, 256);
    let bytes = codec::encode(&cmd).expect("encode");
    group.throughput(Throughput::Elements(64));
    // A command keeps its encoding once made: encode a fresh copy each time (the copy is made
    // outside the measurement), as the leader's append does.
    group.bench_function("encode_publish_64x256B", |b| {
        b.iter_batched(
            || txmq_raft_store::Command::new(cmd.time_ms(), cmd.op().clone()),
            |fresh| codec::encode(&fresh).expect("encode"),
            BatchSize::SmallInput,
        )
    });
    // What a leader pays per follower stream since: the kept bytes, copied into the message.
    group.bench_function("encode_publish_64x256B_again", |b| {
        b.iter(|| codec::encode(&cmd).expect("encode"))
    });
    group.bench_function("decode_publish_64x256B", |b| {
        b.iter(|| codec::decode::<txmq_raft_store::Command>(&bytes).expect("decode"))
    });
    group.finish();
}

fn stored_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = Storage::open(&StorageConfig::new(dir.path())).expect("open");
    let mut index = 1u64;
    let entry = |index: u64, cmd| {
        Entry::new(
            openraft::testing::log_id::<TypeConfig>(1, 1, index),
            EntryPayload::Normal(cmd),
        )
    };
    runtime
        .block_on(storage.state_machine.apply(futures::stream::iter([Ok((
            entry(1, create_topic("t", 4)),
            None,
        ))])))
        .expect("create");
    let mut group = c.benchmark_group("stored_apply");
    group.throughput(Throughput::Elements(64));
    group.bench_function("publish_64x256B", |b| {
        b.iter_batched(
            || {
                index += 1;
                entry(index, publish("t", 64, 256))
            },
            |e| {
                runtime
                    .block_on(
                        storage
                            .state_machine
                            .apply(futures::stream::iter([Ok((e, None))])),
                    )
                    .expect("apply")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The Raft log append of a batch of 64 publish entries, including the fsync (the cost every
/// acknowledged write waits for).
fn log_append_with_fsync(c: &mut Criterion) {
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = Storage::open(&StorageConfig::new(dir.path())).expect("open");
    let mut index = 0u64;
    let mut group = c.benchmark_group("log_append");
    group.throughput(Throughput::Elements(64));
    group.sample_size(20);
    group.bench_function("64_entries_x_1_publish_256B_fsync", |b| {
        b.iter(|| {
            let entries: Vec<Entry> = (0..64)
                .map(|_| {
                    index += 1;
                    Entry::new(
                        openraft::testing::log_id::<TypeConfig>(1, 1, index),
                        EntryPayload::Normal(publish("t", 1, 256)),
                    )
                })
                .collect();
            runtime.block_on(async {
                let (tx, rx) = TypeConfig::oneshot();
                storage
                    .log
                    .append(entries, IOFlushed::<TypeConfig>::signal(tx))
                    .await
                    .expect("append");
                rx.await.expect("flushed").expect("flush ok");
            })
        })
    });
    group.finish();
}

/// Encoding and decoding of the client API's send request (prost).
fn proto_send_request(c: &mut Criterion) {
    use prost::Message;
    let request = txmq_proto::client::SendRequest {
        topic: "orders".into(),
        body: vec![b'x'; 256].into(),
        key: "order-42".into(),
        tag: "paid".into(),
        properties: [("source".to_string(), "shop".to_string())].into(),
    };
    let bytes = request.encode_to_vec();
    let mut group = c.benchmark_group("proto");
    group.bench_function("encode_send_request_256B", |b| {
        b.iter(|| request.encode_to_vec())
    });
    group.bench_function("decode_send_request_256B", |b| {
        b.iter(|| txmq_proto::client::SendRequest::decode(bytes.as_slice()).expect("decode"))
    });
    group.finish();
}

/// Reading 32 messages of a queue from the applied state (what a receive or read costs).
fn queue_read(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = Storage::open(&StorageConfig::new(dir.path())).expect("open");
    let mut entries = vec![Ok((
        Entry::new(
            openraft::testing::log_id::<TypeConfig>(1, 1, 1),
            EntryPayload::Normal(create_topic("t", 1)),
        ),
        None,
    ))];
    for i in 0..200u64 {
        let e = Entry::new(
            openraft::testing::log_id::<TypeConfig>(1, 1, i + 2),
            EntryPayload::Normal(publish("t", 64, 256)),
        );
        entries.push(Ok((e, None)));
    }
    runtime
        .block_on(storage.state_machine.apply(futures::stream::iter(entries)))
        .expect("apply");
    let mut group = c.benchmark_group("queue_read");
    group.throughput(Throughput::Elements(32));
    let mut from = 0u64;
    group.bench_function("32_messages_256B", |b| {
        b.iter(|| {
            from = (from + 32) % 12_000;
            storage.reader.read("t", Some(0), from, 32).expect("read")
        })
    });
    group.finish();
}

/// The two MessagePack forms of an entry's operation: named fields (what entries used before)
/// and positional (what they use now).
fn codec_forms(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_forms");
    group.throughput(Throughput::Elements(64));
    let cmd = publish("t", 64, 256);
    let named = codec::encode(cmd.op()).expect("encode");
    let compact = codec::encode_compact(cmd.op()).expect("encode");
    group.bench_function("decode_named_publish_64x256B", |b| {
        b.iter(|| codec::decode::<txmq_raft_store::Operation>(&named).expect("decode"))
    });
    group.bench_function("decode_positional_publish_64x256B", |b| {
        b.iter(|| codec::decode::<txmq_raft_store::Operation>(&compact).expect("decode"))
    });
    group.bench_function("encode_named_publish_64x256B", |b| {
        b.iter(|| codec::encode(cmd.op()).expect("encode"))
    });
    group.bench_function("encode_positional_publish_64x256B", |b| {
        b.iter(|| codec::encode_compact(cmd.op()).expect("encode"))
    });
    group.finish();
}

criterion_group!(
    benches,
    pure_apply,
    pure_txn_apply,
    codec_roundtrip,
    codec_forms,
    stored_apply,
    log_append_with_fsync,
    proto_send_request,
    queue_read
);
criterion_main!(benches);
