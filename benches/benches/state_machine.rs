//! Micro-benchmarks of the state machine alone (`txmq-state`, no storage): pure apply of a
//! publish batch and of a transaction's half message and decision, and the codec of a batch.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use txmq_benches::{commit_batch, create_topic, create_txn_topic, half_batch, publish};
use txmq_state::{BrokerState, CommandResult, codec};

fn pure_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("pure_apply");
    let batch_cmd = publish("t", 64, 256);
    group.throughput(Throughput::Elements(64));
    group.bench_function("publish_64x256B", |b| {
        let mut state = BrokerState::default();
        state.apply(1, &create_topic("t", 4)).expect("create");
        let mut index = 2;
        b.iter_batched(
            || batch_cmd.clone(),
            |cmd| {
                index += 1;
                state.apply(index, &cmd).expect("apply")
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
    state.apply(1, &create_txn_topic("t", 4)).expect("create");
    let mut index = 1;
    group.bench_function("half_64x256B", |b| {
        b.iter_batched(
            || halves.clone(),
            |cmd| {
                index += 1;
                state.apply(index, &cmd).expect("apply")
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
                let result = state.apply(*index, &halves).expect("half");
                let ids = txn_ids(&result.result);
                assert_eq!(ids.len(), 64, "every half message is accepted");
                commit_batch(&ids)
            },
            |commits| {
                let (state, index) = &mut *shared.borrow_mut();
                *index += 1;
                state.apply(*index, &commits).expect("commit")
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
            || txmq_state::Command::new(cmd.time_ms(), cmd.op().clone()),
            |fresh| codec::encode(&fresh).expect("encode"),
            BatchSize::SmallInput,
        )
    });
    // What a leader pays per follower stream since: the kept bytes, copied into the message.
    group.bench_function("encode_publish_64x256B_again", |b| {
        b.iter(|| codec::encode(&cmd).expect("encode"))
    });
    group.bench_function("decode_publish_64x256B", |b| {
        b.iter(|| codec::decode::<txmq_state::Command>(&bytes).expect("decode"))
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
        b.iter(|| codec::decode::<txmq_state::Operation>(&named).expect("decode"))
    });
    group.bench_function("decode_positional_publish_64x256B", |b| {
        b.iter(|| codec::decode::<txmq_state::Operation>(&compact).expect("decode"))
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
    codec_forms
);
criterion_main!(benches);
