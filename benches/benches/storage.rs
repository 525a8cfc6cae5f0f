//! Micro-benchmarks of a node's storage and wire: the stored state-machine apply (queue files
//! and the pending checkpoint; no fsync on this path), the log append with its fsync, a queue
//! read, and the client API's send request.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use txmq_benches::{create_topic, publish};
use txmq_raft_store::types::alias::Entry;
use txmq_raft_store::{Storage, StorageConfig, TypeConfig};

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

criterion_group!(
    benches,
    stored_apply,
    log_append_with_fsync,
    proto_send_request,
    queue_read
);
criterion_main!(benches);
