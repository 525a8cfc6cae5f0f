//! Micro-benchmarks: pure apply of a publish batch, codec of a batch, and the sled-backed
//! state-machine apply (no fsync; the log append is what fsyncs).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use txmq_benches::{create_topic, publish};
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
        b.iter(|| {
            let mut batch = WriteBatch::default();
            index += 1;
            state.apply(index, &batch_cmd, &mut batch).expect("apply")
        });
    });
    group.finish();
}

fn codec_roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let cmd = publish("t", 64, 256);
    let bytes = codec::encode(&cmd).expect("encode");
    group.throughput(Throughput::Elements(64));
    group.bench_function("encode_publish_64x256B", |b| {
        b.iter(|| codec::encode(&cmd).expect("encode"))
    });
    group.bench_function("decode_publish_64x256B", |b| {
        b.iter(|| codec::decode::<txmq_raft_store::Command>(&bytes).expect("decode"))
    });
    group.finish();
}

fn sled_apply(c: &mut Criterion) {
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
    let mut group = c.benchmark_group("sled_apply");
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

criterion_group!(benches, pure_apply, codec_roundtrip, sled_apply);
criterion_main!(benches);
