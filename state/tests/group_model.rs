//! Property test of consumer-group leases against a model: a message is never handed to two
//! receives at once, an acked message never comes back, attempts count up by one, and every
//! message is eventually delivered and acknowledged.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use txmq_state::BrokerState;
use txmq_state::{AckOutcome, Delivery};
use txmq_state::{Command, CommandResult, NewMessage, Operation, TopicKind, TopicSpec};

#[derive(Debug, Clone)]
enum Step {
    Publish(u8),
    Receive {
        max: u32,
        invisible: u64,
    },
    /// Ack the n-th outstanding delivery (if any), possibly with a stale receipt.
    Ack {
        pick: usize,
        stale: bool,
    },
    Advance(u64),
    /// Give the n-th outstanding delivery back unreturned (what a node does with leases its
    /// response had no room for).
    Release(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (1u8..4).prop_map(Step::Publish),
        3 => (1u32..5, 10u64..200).prop_map(|(max, invisible)| Step::Receive { max, invisible }),
        3 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(pick, stale)| Step::Ack { pick, stale }),
        2 => (1u64..150).prop_map(Step::Advance),
        1 => any::<usize>().prop_map(Step::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn leases_match_the_model(steps in prop::collection::vec(step(), 1..80)) {
        let mut state = BrokerState::default();
        let (mut now, mut index) = (1_000u64, 0u64);
        let mut apply = |state: &mut BrokerState, now: u64, op: Operation| {
            index += 1;
            state.apply(index, &Command::new(now, op)).unwrap().result
        };
        let spec = TopicSpec { name: "t".into(), kind: TopicKind::Normal, queues: 2, retention_ms: 1, retention_bytes: 0 };
        apply(&mut state, now, Operation::CreateTopic(spec));
        let mut published = 0u64;
        // Model: current lease per (queue, offset): (visible_at, attempt, receipt); acked set.
        let mut leases: BTreeMap<(u32, u64), (u64, u32, String)> = BTreeMap::new();
        let mut old_receipts: Vec<(u32, u64, String)> = Vec::new();
        let mut acked: BTreeSet<(u32, u64)> = BTreeSet::new();
        let mut attempts: BTreeMap<(u32, u64), u32> = BTreeMap::new();
        for s in steps {
            match s {
                Step::Advance(ms) => now += ms,
                Step::Publish(n) => {
                    let messages = (0..n).map(|_| NewMessage { key: String::new(), tag: String::new(), body: vec![1], properties: BTreeMap::new() }).collect();
                    apply(&mut state, now, Operation::Publish { topic: "t".into(), messages });
                    published += u64::from(n);
                }
                Step::Receive { max, invisible } => {
                    let got = apply(&mut state, now, Operation::Receive { group: "g".into(), topic: "t".into(), max, invisible_ms: invisible });
                    let CommandResult::Leased(deliveries) = got else { panic!("receive rejected: {got:?}") };
                    prop_assert!(deliveries.len() <= max as usize);
                    for Delivery { queue, offset, attempt, receipt } in deliveries {
                        let key = (queue, offset);
                        prop_assert!(!acked.contains(&key), "acked message {key:?} delivered again");
                        if let Some((visible_at, _, old)) = leases.get(&key) {
                            prop_assert!(*visible_at <= now, "{key:?} delivered while still invisible");
                            old_receipts.push((queue, offset, old.clone()));
                        }
                        let previous = attempts.get(&key).copied().unwrap_or(0);
                        prop_assert_eq!(attempt, previous + 1, "attempts must count up by one");
                        attempts.insert(key, attempt);
                        leases.insert(key, (now + invisible, attempt, receipt));
                    }
                }
                Step::Release(pick) => {
                    let Some((key, (_, attempt, receipt))) = leases.iter().nth(pick % leases.len().max(1)).map(|(k, v)| (*k, v.clone())) else { continue };
                    let got = apply(&mut state, now, Operation::Release { group: "g".into(), topic: "t".into(), receipts: vec![receipt.clone()] });
                    prop_assert_eq!(got, CommandResult::Released(1));
                    // Visible again at once, the attempt not counted, the receipt no longer valid.
                    leases.remove(&key);
                    attempts.insert(key, attempt - 1);
                    old_receipts.push((key.0, key.1, receipt.clone()));
                    let again = apply(&mut state, now, Operation::Release { group: "g".into(), topic: "t".into(), receipts: vec![receipt] });
                    prop_assert_eq!(again, CommandResult::Released(0));
                }
                Step::Ack { pick, stale } => {
                    let (key, receipt, expect) = if stale && !old_receipts.is_empty() {
                        let (q, o, r) = old_receipts[pick % old_receipts.len()].clone();
                        let expect = if acked.contains(&(q, o)) { AckOutcome::AlreadyAcked } else { AckOutcome::Stale };
                        ((q, o), r, expect)
                    } else if !leases.is_empty() {
                        let (k, (_, _, r)) = leases.iter().nth(pick % leases.len()).map(|(k, v)| (*k, v.clone())).unwrap();
                        (k, r, AckOutcome::Acked)
                    } else {
                        continue;
                    };
                    let got = apply(&mut state, now, Operation::Ack { group: "g".into(), topic: "t".into(), receipts: vec![receipt] });
                    prop_assert_eq!(got, CommandResult::Acked(vec![expect]));
                    if expect == AckOutcome::Acked {
                        leases.remove(&key);
                        acked.insert(key);
                    }
                }
            }
        }
        // Drain: with time moving on, everything not acked is delivered and can be acked.
        for _ in 0..(published + 10) {
            now += 1_000;
            let got = apply(&mut state, now, Operation::Receive { group: "g".into(), topic: "t".into(), max: 1000, invisible_ms: 10 });
            let CommandResult::Leased(deliveries) = got else { panic!() };
            if deliveries.is_empty() { break; }
            let receipts: Vec<String> = deliveries.iter().map(|d| d.receipt.clone()).collect();
            for d in &deliveries { prop_assert!(acked.insert((d.queue, d.offset)), "delivered after ack"); }
            let CommandResult::Acked(outcomes) = apply(&mut state, now, Operation::Ack { group: "g".into(), topic: "t".into(), receipts }) else { panic!() };
            prop_assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
        }
        prop_assert_eq!(acked.len() as u64, published);
        let g = state.groups().get(&("g".to_string(), "t".to_string()));
        if let Some(g) = g {
            let topic = state.topic("t").unwrap();
            for (q, p) in g.queues.iter().enumerate() {
                prop_assert_eq!(p.ack_offset, topic.next_offsets[q]);
                prop_assert!(p.leases.is_empty() && p.acked.is_empty());
            }
        }
    }
}
