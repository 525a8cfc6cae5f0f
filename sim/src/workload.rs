//! The workload, the chaos run's in miniature: plain producers, transactional producers with a
//! local database (the ground truth), checkers answering check-backs from it, and consumer
//! groups that receive, process, acknowledge — or crash before processing and let the lease
//! expire.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use txmq_state::{CommandResult, Decision, DecisionSource, NewMessage, Operation};
use txmq_state::{TopicKind, TopicSpec, TxnState, TxnTiming};

use crate::checks::CheckRequest;
use crate::client::{Client, Outcome};
use crate::cluster::Cluster;
use crate::gateway::Reply;
use crate::history::{History, Local, Processed, SendFate, TxnSeen};
use crate::net::CLIENT_BASE;
use crate::rng::SimRng;
use crate::types::spawn;

pub const ORDERS: &str = "orders";
pub const PAYMENTS: &str = "payments";
pub const PAY_GROUP: &str = "pay";
/// Consumer groups and the topic each reads.
pub const GROUPS: [(&str, &str); 2] = [("audit", ORDERS), ("ship", PAYMENTS)];

/// Every transaction: first check after 1 s, then every second, three checks, rolled back by
/// the broker after 6 s at most.
pub const TIMING: TxnTiming = TxnTiming {
    first_check_delay_ms: 1_000,
    check_interval_ms: 1_000,
    max_checks: 3,
    max_lifetime_ms: 6_000,
};

/// The clients of one run and what they saw.
pub struct Workload {
    pub cluster: Arc<Cluster>,
    history: Mutex<History>,
    producing: AtomicBool,
    /// Producer tasks still in their loop (a request of theirs may still land).
    active_producers: AtomicUsize,
}

impl Workload {
    pub fn new(cluster: Arc<Cluster>) -> Arc<Self> {
        Arc::new(Workload {
            cluster,
            history: Mutex::new(History::default()),
            producing: AtomicBool::new(true),
            active_producers: AtomicUsize::new(0),
        })
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stop_producing(&self) {
        self.producing.store(false, Ordering::SeqCst);
    }

    /// True once every producer left its loop: nothing they send can land any more.
    pub fn producers_done(&self) -> bool {
        self.active_producers.load(Ordering::SeqCst) == 0
    }

    fn producing(&self) -> bool {
        self.producing.load(Ordering::SeqCst)
    }

    /// Creates the topics, retrying until the cluster accepts them or `deadline_ms` passes.
    pub async fn create_topics(&self, rng: &mut SimRng, deadline_ms: u64) -> Result<(), String> {
        let mut client = Client::new(CLIENT_BASE, self.cluster.clone(), rng.fork());
        for (name, kind) in [
            (ORDERS, TopicKind::Normal),
            (PAYMENTS, TopicKind::Transaction),
        ] {
            let spec = TopicSpec {
                name: name.into(),
                kind,
                queues: 4,
                retention_ms: 86_400_000,
                retention_bytes: 0,
            };
            loop {
                let created = self
                    .cluster
                    .leader_state(|r| r.state().topic(name).is_some())
                    .unwrap_or(false);
                if created {
                    break;
                }
                if self.cluster.elapsed_ms() > deadline_ms {
                    return Err(format!("topic {name} not created within {deadline_ms} ms"));
                }
                let _ = client.call(Operation::CreateTopic(spec.clone())).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Starts every client task.
    pub fn spawn_all(self: &Arc<Self>, rng: &mut SimRng) {
        let mut next_id = CLIENT_BASE + 1;
        let mut client = |rng: &mut SimRng| {
            next_id += 1;
            Client::new(next_id, self.cluster.clone(), rng.fork())
        };
        for n in 0..2 {
            self.active_producers.fetch_add(2, Ordering::SeqCst);
            spawn(plain_producer(self.clone(), client(rng), n));
            spawn(txn_producer(self.clone(), client(rng), n));
            let checker_client = client(rng);
            let checks = self.cluster.checkers.register(PAY_GROUP, checker_client.id);
            spawn(checker(self.clone(), checker_client, checks));
        }
        for (group, topic) in GROUPS {
            for _ in 0..2 {
                spawn(consumer(self.clone(), client(rng), group, topic));
            }
        }
    }
}

async fn pause(client: &mut Client, low_ms: u64, high_ms: u64) {
    let ms = client.rng.between(low_ms, high_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        key: body.to_string(),
        tag: String::new(),
        body: body.as_bytes().to_vec(),
        properties: BTreeMap::new(),
    }
}

async fn plain_producer(w: Arc<Workload>, mut client: Client, n: usize) {
    let mut seq = 0u64;
    while w.producing() {
        seq += 1;
        let body = format!("p{n}-{seq}");
        // Recorded before it is sent: the checker must know of a message stored while its
        // answer is still on the way.
        w.history().sends.insert(body.clone(), SendFate::Unknown);
        let op = Operation::Publish {
            topic: ORDERS.into(),
            messages: vec![message(&body)],
        };
        let outcome = client.call(op).await;
        let fate = match outcome {
            Outcome::Reply(Reply::Done(CommandResult::Published(p), _)) if p.len() == 1 => {
                SendFate::Acked {
                    message_id: p[0].message_id.clone(),
                }
            }
            Outcome::Reply(Reply::Done(CommandResult::Rejected(r), _)) => {
                SendFate::Rejected(r.to_string())
            }
            Outcome::Reply(Reply::NotLeader(_)) => SendFate::Rejected("no leader".into()),
            _ => SendFate::Unknown,
        };
        w.cluster.event(|| format!("send {body}: {fate:?}"));
        w.history().sends.insert(body, fate);
        pause(&mut client, 10, 80).await;
    }
    w.active_producers.fetch_sub(1, Ordering::SeqCst);
}

async fn txn_producer(w: Arc<Workload>, mut client: Client, n: usize) {
    let mut seq = 0u64;
    while w.producing() {
        seq += 1;
        let key = format!("t{n}-{seq}");
        one_transaction(&w, &mut client, key).await;
        pause(&mut client, 10, 100).await;
    }
    w.active_producers.fetch_sub(1, Ordering::SeqCst);
}

/// Half message, local transaction, decision (or a producer that dies before deciding).
async fn one_transaction(w: &Workload, client: &mut Client, key: String) {
    let seen = TxnSeen {
        txn_id: None,
        local: Local::NotRun,
        decision_acked: None,
    };
    w.history().txns.insert(key.clone(), seen);
    let op = Operation::HalfMessage {
        topic: PAYMENTS.into(),
        group: PAY_GROUP.into(),
        message: message(&key),
        timing: TIMING,
    };
    let Outcome::Reply(Reply::Done(CommandResult::HalfAccepted { txn_id }, _)) =
        client.call(op).await
    else {
        w.cluster.event(|| format!("half {key}: not acknowledged"));
        return;
    };
    let txn_id = txn_id.to_string();
    w.cluster.event(|| format!("half {key}: {txn_id}"));
    if !begin_local(w, &key, &txn_id) {
        w.cluster
            .event(|| format!("local transaction {key} refused: already rolled back by a check"));
        return;
    }
    pause(client, 0, 1_500).await;
    let decision = if client.rng.chance(0.65) {
        Decision::Commit
    } else {
        Decision::Rollback
    };
    finish_local(w, &key, decision);
    if client.rng.chance(0.15) {
        w.cluster
            .event(|| format!("producer of {key} died before deciding"));
        return;
    }
    let op = Operation::EndTransaction {
        txn_id: txn_id.clone(),
        group: PAY_GROUP.into(),
        decision,
        source: DecisionSource::Producer,
    };
    let outcome = client.call(op).await;
    if let Outcome::Reply(Reply::Done(CommandResult::TxnDecided(o), _)) = &outcome {
        let acked = match o.state {
            TxnState::Committed => Some(Decision::Commit),
            TxnState::RolledBack => Some(Decision::Rollback),
            _ => None,
        };
        if acked == Some(decision)
            && let Some(t) = w.history().txns.get_mut(&key)
        {
            t.decision_acked = acked;
        }
    }
    w.cluster
        .event(|| format!("decide {key} {decision:?}: {}", short(&outcome)));
}

/// Begins the local transaction unless a check already rolled it back.
fn begin_local(w: &Workload, key: &str, txn_id: &str) -> bool {
    let mut history = w.history();
    let Some(t) = history.txns.get_mut(key) else {
        return false;
    };
    t.txn_id = Some(txn_id.to_string());
    if t.local != Local::NotRun {
        return false;
    }
    t.local = Local::InProgress;
    true
}

/// Records the local transaction's outcome.
fn finish_local(w: &Workload, key: &str, decision: Decision) {
    if let Some(t) = w.history().txns.get_mut(key) {
        t.local = Local::Done(decision);
    }
}

fn short(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Lost => "lost".into(),
        Outcome::Reply(Reply::Done(r, _)) => format!("{r:?}"),
        Outcome::Reply(r) => format!("{r:?}"),
    }
}

/// What the local database says of a transaction. A transaction that never began (its half
/// message's answer has not reached the producer) is rolled back, and that answer is final:
/// the producer will not begin it afterwards, as a real producer's insert of the business key
/// would fail.
fn local_answer(w: &Workload, key: &str) -> Decision {
    let mut history = w.history();
    match history.txns.get_mut(key) {
        Some(t) => match t.local {
            Local::Done(d) => d,
            Local::InProgress => Decision::Unknown,
            Local::NotRun => {
                t.local = Local::Done(Decision::Rollback);
                Decision::Rollback
            }
        },
        None => Decision::Rollback,
    }
}

/// Answers check-backs from the local database.
async fn checker(w: Arc<Workload>, mut client: Client, mut checks: mpsc::Receiver<CheckRequest>) {
    while let Some(check) = checks.recv().await {
        let decision = local_answer(&w, &check.key);
        let op = Operation::EndTransaction {
            txn_id: check.txn_id.clone(),
            group: PAY_GROUP.into(),
            decision,
            source: DecisionSource::Check,
        };
        let outcome = client.call(op).await;
        w.history().checks_answered += 1;
        w.cluster.event(|| {
            format!(
                "check {} #{} answered {decision:?}: {}",
                check.key,
                check.attempt,
                short(&outcome)
            )
        });
    }
}

/// Receives, processes and acknowledges; sometimes crashes before processing (the lease
/// expires and the message comes back), sometimes processes without acknowledging.
async fn consumer(w: Arc<Workload>, mut client: Client, group: &'static str, topic: &'static str) {
    loop {
        let op = Operation::Receive {
            group: group.into(),
            topic: topic.into(),
            max: 8,
            invisible_ms: 1_000,
        };
        let leased = match client.call(op).await {
            Outcome::Reply(Reply::Done(CommandResult::Leased(_), messages)) => messages,
            _ => Vec::new(),
        };
        if leased.is_empty() {
            pause(&mut client, 50, 200).await;
            continue;
        }
        if client.rng.chance(0.05) {
            w.cluster
                .event(|| format!("{group} consumer crashed holding {} leases", leased.len()));
            pause(&mut client, 100, 500).await;
            continue;
        }
        let receipts = process(&w, &mut client, group, leased);
        if !receipts.is_empty() {
            let op = Operation::Ack {
                group: group.into(),
                topic: topic.into(),
                receipts,
            };
            let _ = client.call(op).await;
        }
    }
}

/// Records what was processed and returns the receipts to acknowledge.
fn process(
    w: &Workload,
    client: &mut Client,
    group: &str,
    leased: Vec<(txmq_state::Delivery, Option<txmq_state::StoredMessage>)>,
) -> Vec<String> {
    let mut receipts = Vec::new();
    let mut history = w.history();
    for (d, m) in leased {
        let Some(m) = m else {
            history
                .unreadable
                .push(format!("{group} q{} o{}", d.queue, d.offset));
            continue;
        };
        let body = String::from_utf8_lossy(&m.body).into_owned();
        w.cluster
            .event(|| format!("{group} processed {body} attempt {}", d.attempt));
        history.processed.push(Processed {
            group: group.to_string(),
            body,
            attempt: d.attempt,
            queue: d.queue,
            offset: d.offset,
        });
        if !client.rng.chance(0.1) {
            receipts.push(d.receipt);
        }
    }
    receipts
}
