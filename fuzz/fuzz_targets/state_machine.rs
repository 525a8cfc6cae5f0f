//! Arbitrary sequences of operations applied to the state machine, with restarts: after every
//! apply the invariants hold; a state rebuilt from its stored rows (as a restart or a snapshot
//! install rebuilds it) equals the state it was stored from; and a second replica applying the
//! same entries without restarts ends identical, with identical results.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txmq_raft_store::rows::txn_row;
use txmq_state::{
    BrokerState, Command, CommandResult, Decision, DecisionSource, NewMessage, Operation,
    PasswordHash, PutUserMode, ResetTarget, Right, TopicKind, TopicSpec, Transactions, TxnTiming,
    codec,
};

const TOPICS: [&str; 3] = ["a", "b", "c"];
const GROUPS: [&str; 2] = ["g", "h"];
const USERS: [&str; 2] = ["u", "v"];

/// Reads the fuzzer's bytes as choices.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.byte().unwrap_or(0) as usize % from.len()]
    }
}

/// What the run has seen, to make later operations name real transactions and receipts.
#[derive(Default)]
struct Seen {
    txns: Vec<String>,
    receipts: Vec<String>,
}

fn message(c: &mut Choices<'_>) -> NewMessage {
    let n = c.byte().unwrap_or(0);
    NewMessage {
        key: if n % 3 == 0 {
            String::new()
        } else {
            format!("k{}", n % 5)
        },
        tag: String::new(),
        body: vec![n; (n % 17) as usize],
        properties: Default::default(),
    }
}

fn topic_op(c: &mut Choices<'_>, kind: u8) -> Operation {
    let name = c.pick(&TOPICS).to_string();
    match kind {
        0 => Operation::CreateTopic(TopicSpec {
            kind: c.pick(&[TopicKind::Normal, TopicKind::Transaction]),
            queues: c.pick(&[0, 1, 2, 3, 300]),
            name,
            retention_ms: 60_000,
            retention_bytes: 0,
        }),
        1 => Operation::Publish {
            topic: name,
            messages: (0..c.byte().unwrap_or(1) % 4).map(|_| message(c)).collect(),
        },
        2 => Operation::DeleteTopic { name },
        _ => Operation::UpdateTopic {
            name,
            retention_ms: Some(1 + u64::from(c.byte().unwrap_or(0)) * 1000),
            retention_bytes: None,
        },
    }
}

fn txn_op(c: &mut Choices<'_>, kind: u8, seen: &Seen, state: &BrokerState, now: u64) -> Operation {
    let group = c.pick(&GROUPS).to_string();
    match kind {
        0 => Operation::HalfMessage {
            topic: c.pick(&TOPICS).to_string(),
            group,
            message: message(c),
            timing: TxnTiming {
                first_check_delay_ms: 1_000,
                check_interval_ms: 1_000,
                max_checks: 2,
                max_lifetime_ms: 10_000,
            },
        },
        1 => Operation::EndTransaction {
            txn_id: seen
                .txns
                .get(c.byte().unwrap_or(0) as usize % seen.txns.len().max(1))
                .cloned()
                .unwrap_or_default(),
            group,
            decision: c.pick(&[Decision::Commit, Decision::Rollback]),
            source: c.pick(&[
                DecisionSource::Producer,
                DecisionSource::Check,
                DecisionSource::Operator,
            ]),
        },
        _ => {
            let due: Vec<String> = state
                .transactions()
                .due(now, 8)
                .iter()
                .map(|t| t.id.text())
                .collect();
            let (checks, expirations) = due.split_at(due.len() / 2);
            Operation::TxnTimers {
                checks: checks.to_vec(),
                expirations: expirations.to_vec(),
            }
        }
    }
}

fn group_op(c: &mut Choices<'_>, kind: u8, seen: &Seen) -> Operation {
    let (group, topic) = (c.pick(&GROUPS).to_string(), c.pick(&TOPICS).to_string());
    let receipt = seen
        .receipts
        .get(c.byte().unwrap_or(0) as usize % seen.receipts.len().max(1))
        .cloned()
        .unwrap_or_else(|| "junk".into());
    match kind {
        0 => Operation::Receive {
            group,
            topic,
            max: u32::from(c.byte().unwrap_or(1) % 4),
            invisible_ms: 500,
        },
        1 => Operation::Ack {
            group,
            topic,
            receipts: vec![receipt],
        },
        2 => Operation::ChangeInvisible {
            group,
            topic,
            receipt,
            invisible_ms: 2_000,
        },
        3 => Operation::Release {
            group,
            topic,
            receipts: vec![receipt],
        },
        4 => Operation::ResetGroup {
            group,
            topic,
            to: if c.byte().unwrap_or(0) % 2 == 0 {
                ResetTarget::Earliest
            } else {
                ResetTarget::Latest
            },
        },
        5 => Operation::ConfigureGroup {
            group,
            topic,
            max_delivery_attempts: u32::from(c.byte().unwrap_or(0) % 5),
        },
        _ => Operation::DeleteGroup { group, topic },
    }
}

fn user_op(c: &mut Choices<'_>, kind: u8) -> Operation {
    let user = c.pick(&USERS).to_string();
    let right = c.pick(&[0u8, 1, 2]);
    let right = match right {
        0 => Right::Admin,
        1 => Right::Produce {
            topics: "a*".into(),
        },
        _ => Right::Consume {
            topics: "*".into(),
            groups: "g".into(),
        },
    };
    let hash = PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    match kind {
        0 => Operation::PutUser {
            name: user,
            password_hash: hash,
            mode: c.pick(&[
                PutUserMode::Create,
                PutUserMode::ChangePassword,
                PutUserMode::Bootstrap,
            ]),
        },
        1 => Operation::DeleteUser { name: user },
        2 => Operation::Grant { user, right },
        3 => Operation::Revoke { user, right },
        _ => Operation::SetAccessSecret {
            name: user,
            secret: (c.byte().unwrap_or(0) % 3 != 0)
                .then(|| txmq_state::access::AccessSecret("c2VjcmV0".into())),
        },
    }
}

/// The state as a restart rebuilds it: every row encoded and decoded, then restored.
fn restarted(state: &BrokerState) -> BrokerState {
    let topics = state
        .topics()
        .values()
        .map(|t| codec::decode(&codec::encode(t).unwrap()).unwrap());
    let groups = state
        .groups()
        .values()
        .map(|g| codec::decode(&codec::encode_compact(g).unwrap()).unwrap());
    let users = state
        .users()
        .values()
        .map(|u| codec::decode(&codec::encode(u).unwrap()).unwrap());
    let txns = state.transactions();
    let records = txns
        .pending()
        .chain(txns.decided())
        .map(|r| txn_row::decode_txn_row(&txn_row::encode_txn_row(r).unwrap()).unwrap());
    let retired = state.retired_nodes().iter().copied();
    BrokerState::restore(
        topics,
        retired,
        groups,
        Transactions::restore(records),
        users,
    )
    .expect("a state's own rows restore")
}

fn next_op(c: &mut Choices<'_>, seen: &Seen, state: &BrokerState, now: u64) -> Option<Operation> {
    let choice = c.byte()?;
    let kind = choice >> 4;
    Some(match choice % 5 {
        0 => topic_op(c, kind % 4),
        1 => txn_op(c, kind % 3, seen, state, now),
        2 => group_op(c, kind % 7, seen),
        3 => user_op(c, kind % 5),
        _ => Operation::Batch(vec![topic_op(c, 1), txn_op(c, 0, seen, state, now)]),
    })
}

fn remember(result: &CommandResult, seen: &mut Seen) {
    match result {
        CommandResult::HalfAccepted { txn_id } => seen.txns.push(txn_id.text()),
        CommandResult::Leased(deliveries) => seen
            .receipts
            .extend(deliveries.iter().map(|d| d.receipt.clone())),
        CommandResult::InvisibilityChanged { receipt } => seen.receipts.push(receipt.clone()),
        CommandResult::Batch(results) => results.iter().for_each(|r| remember(r, seen)),
        _ => {}
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut c = Choices(bytes);
    let (mut replica, mut steady) = (BrokerState::default(), BrokerState::default());
    let (mut seen, mut now) = (Seen::default(), 1_000u64);
    for index in 1..200u64 {
        let Some(op) = next_op(&mut c, &seen, &replica, now) else {
            break;
        };
        now += u64::from(c.byte().unwrap_or(0)) * 20;
        let command = Command::new(now, op);
        let a = replica.apply(index, &command).expect("apply");
        let b = steady.apply(index, &command).expect("apply");
        assert_eq!(
            a.result, b.result,
            "replicas disagree at {index}: {command}"
        );
        replica.check_invariants();
        remember(&a.result, &mut seen);
        if c.byte().is_some_and(|b| b % 16 == 0) {
            let rebuilt = restarted(&replica);
            assert_eq!(rebuilt, replica, "a restart changed the state at {index}");
            replica = rebuilt;
        }
    }
    assert_eq!(replica, steady);
});
