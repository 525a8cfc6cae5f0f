//! Property test of the transaction state machine against a simple model, with time moving
//! forward and the scheduler's proposals arriving at arbitrary (possibly stale) moments.

use std::collections::BTreeMap;

use proptest::prelude::*;
use txmq_state::{BrokerState, Decision, DecisionSource, TxnState, TxnTiming};
use txmq_state::{Command, CommandResult, NewMessage, Operation, Rejection, TopicKind, TopicSpec};

const TIMING: TxnTiming = TxnTiming {
    first_check_delay_ms: 100,
    check_interval_ms: 50,
    max_checks: 3,
    max_lifetime_ms: 400,
};

#[derive(Debug, Clone)]
enum Step {
    Half {
        group: u8,
        normal_topic: bool,
    },
    End {
        pick: usize,
        group: u8,
        decision: Decision,
    },
    Timers {
        checks: Vec<usize>,
        expire: Vec<usize>,
    },
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let decision = prop_oneof![
        Just(Decision::Commit),
        Just(Decision::Rollback),
        Just(Decision::Unknown)
    ];
    prop_oneof![
        2 => (0u8..2, prop::bool::weighted(0.1)).prop_map(|(group, normal_topic)| Step::Half { group, normal_topic }),
        3 => (any::<usize>(), 0u8..2, decision).prop_map(|(pick, group, decision)| Step::End { pick, group, decision }),
        3 => (prop::collection::vec(any::<usize>(), 0..3), prop::collection::vec(any::<usize>(), 0..3))
            .prop_map(|(checks, expire)| Step::Timers { checks, expire }),
        3 => (1u64..120).prop_map(Step::Advance),
    ]
}

/// The model of one transaction.
#[derive(Debug, Clone)]
struct M {
    group: u8,
    state: TxnState,
    checks: u32,
    next_check: u64,
    deadline: u64,
}

fn group_name(g: u8) -> String {
    format!("g{g}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn transactions_match_the_model(steps in prop::collection::vec(step(), 1..80)) {
        let mut state = BrokerState::default();
        let mut now = 1_000u64;
        let mut index = 0u64;
        let mut apply = |state: &mut BrokerState, now: u64, op: Operation| {
            index += 1;
            state.apply(index, &Command::new(now, op)).unwrap().result
        };
        for (name, kind) in [("pay", TopicKind::Transaction), ("plain", TopicKind::Normal)] {
            let spec = TopicSpec { name: name.into(), kind, queues: 2, retention_ms: 1, retention_bytes: 0 };
            apply(&mut state, now, Operation::CreateTopic(spec));
        }
        let mut ids: Vec<String> = Vec::new();
        let mut model: BTreeMap<String, M> = BTreeMap::new();
        let mut committed_order: Vec<String> = Vec::new();
        for s in steps {
            match s {
                Step::Advance(ms) => now += ms,
                Step::Half { group, normal_topic } => {
                    let topic = if normal_topic { "plain" } else { "pay" };
                    let message = NewMessage { key: String::new(), tag: String::new(), body: vec![group], properties: BTreeMap::new() };
                    let op = Operation::HalfMessage { topic: topic.into(), group: group_name(group), message, timing: TIMING };
                    match apply(&mut state, now, op) {
                        CommandResult::HalfAccepted { txn_id } => {
                            let txn_id = txn_id.to_string();
                            prop_assert!(!normal_topic);
                            model.insert(txn_id.clone(), M { group, state: TxnState::Pending, checks: 0, next_check: now + 100, deadline: now + 400 });
                            ids.push(txn_id);
                        }
                        CommandResult::Rejected(Rejection::WrongTopicType { .. }) => prop_assert!(normal_topic),
                        other => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Step::End { pick, group, decision } => {
                    if ids.is_empty() { continue; }
                    let id = ids[pick % ids.len()].clone();
                    let op = Operation::EndTransaction { txn_id: id.clone(), group: group_name(group), decision, source: DecisionSource::Producer };
                    let got = apply(&mut state, now, op);
                    let m = model.get_mut(&id).unwrap();
                    if m.group != group {
                        prop_assert!(matches!(got, CommandResult::Rejected(Rejection::WrongGroup { .. })), "{got:?}");
                        continue;
                    }
                    match (m.state, decision) {
                        (TxnState::Pending, Decision::Unknown) => prop_assert!(matches!(&got, CommandResult::TxnDecided(o) if o.state == TxnState::Pending)),
                        (TxnState::Pending, Decision::Commit) => {
                            m.state = TxnState::Committed;
                            committed_order.push(id.clone());
                            prop_assert!(matches!(&got, CommandResult::TxnDecided(o) if o.state == TxnState::Committed && !o.repeated));
                        }
                        (TxnState::Pending, Decision::Rollback) => {
                            m.state = TxnState::RolledBack;
                            prop_assert!(matches!(&got, CommandResult::TxnDecided(o) if o.state == TxnState::RolledBack && !o.repeated));
                        }
                        (TxnState::Committed, Decision::Commit) | (TxnState::RolledBack, Decision::Rollback) => {
                            prop_assert!(matches!(&got, CommandResult::TxnDecided(o) if o.repeated && o.state == m.state), "{got:?}");
                        }
                        _ => prop_assert!(matches!(got, CommandResult::Rejected(Rejection::ConflictingDecision { .. })), "{got:?}"),
                    }
                }
                Step::Timers { checks, expire } => {
                    if ids.is_empty() { continue; }
                    let checks: Vec<String> = checks.iter().map(|p| ids[p % ids.len()].clone()).collect();
                    let expire: Vec<String> = expire.iter().map(|p| ids[p % ids.len()].clone()).collect();
                    // The model's expectation, item by item, in the same order.
                    let mut want_checks = Vec::new();
                    for id in &checks {
                        let m = model.get_mut(id).unwrap();
                        if m.state == TxnState::Pending && m.next_check <= now && m.checks < 3 && now < m.deadline {
                            m.checks += 1;
                            m.next_check = now + 50;
                            want_checks.push((id.clone(), m.checks));
                        }
                    }
                    let mut want_rolled = Vec::new();
                    for id in &expire {
                        let m = model.get_mut(id).unwrap();
                        if m.state != TxnState::Pending { continue; }
                        let reason = if now >= m.deadline {
                            DecisionSource::Timeout
                        } else if m.checks >= 3 && now >= m.next_check {
                            DecisionSource::CheckExhausted
                        } else {
                            continue;
                        };
                        m.state = TxnState::RolledBack;
                        want_rolled.push((id.clone(), reason));
                    }
                    let got = apply(&mut state, now, Operation::TxnTimers { checks, expirations: expire });
                    prop_assert_eq!(got, CommandResult::TimersApplied { checks: want_checks, rolled_back: want_rolled });
                }
            }
        }
        // Final agreement: states, counts, and the committed messages in commit order.
        for (id, m) in &model {
            let r = state.transactions().get_by_name(id).unwrap();
            prop_assert_eq!(r.state, m.state);
            prop_assert_eq!(r.check_count, m.checks);
            prop_assert!(r.check_count <= TIMING.max_checks);
        }
        let pay = state.topic("pay").unwrap();
        let visible: u64 = pay.next_offsets.iter().sum();
        prop_assert_eq!(visible, committed_order.len() as u64);
        prop_assert_eq!(state.transactions().pending_count(), model.values().filter(|m| m.state == TxnState::Pending).count());
        // The deadline index only returns what is due, earliest first.
        let due = state.transactions().due(now, usize::MAX);
        prop_assert!(due.iter().all(|r| r.due_ms() <= now && r.state == TxnState::Pending));
        prop_assert!(due.windows(2).all(|w| w[0].due_ms() <= w[1].due_ms()));
    }
}

#[test]
fn a_stale_scheduler_proposal_cannot_roll_back_early() {
    // A deposed leader (or one with a fast clock) proposes a timeout before the deadline: the
    // entry's own time decides, so nothing happens.
    let mut state = BrokerState::default();
    let spec = TopicSpec {
        name: "pay".into(),
        kind: TopicKind::Transaction,
        queues: 1,
        retention_ms: 1,
        retention_bytes: 0,
    };
    state
        .apply(1, &Command::new(0, Operation::CreateTopic(spec)))
        .unwrap();
    let message = NewMessage {
        key: String::new(),
        tag: String::new(),
        body: b"x".to_vec(),
        properties: BTreeMap::new(),
    };
    let half = Operation::HalfMessage {
        topic: "pay".into(),
        group: "g".into(),
        message,
        timing: TIMING,
    };
    let CommandResult::HalfAccepted { txn_id } =
        state.apply(2, &Command::new(1_000, half)).unwrap().result
    else {
        panic!("half rejected");
    };
    let txn_id = txn_id.to_string();
    let early = Operation::TxnTimers {
        checks: vec![txn_id.clone()],
        expirations: vec![txn_id.clone()],
    };
    let got = state.apply(3, &Command::new(1_050, early)).unwrap().result;
    assert_eq!(
        got,
        CommandResult::TimersApplied {
            checks: vec![],
            rolled_back: vec![]
        }
    );
    assert_eq!(
        state.transactions().get_by_name(&txn_id).unwrap().state,
        TxnState::Pending
    );
}
