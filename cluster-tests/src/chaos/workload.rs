//! The workload with ground truth: transactional producers whose local "database" decides,
//! checkers that answer from it, plain producers, and consumers in two groups (some slow, some
//! crashing mid-batch). Everything acknowledged or delivered is recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use txmq_client::{
    CheckRequest, Client, ClientOptions, LocalTransactionState, ReceiveRequest, SendHalfRequest,
    SendRequest, TopicType, TransactionChecker, TransactionProducer,
};

use super::ChaosConfig;
use crate::{Cluster, wait_for};

pub const TXN_TOPIC: &str = "orders";
pub const PLAIN_TOPIC: &str = "events";
pub const GROUPS: [&str; 2] = ["billing", "audit"];
pub const PRODUCER_GROUP: &str = "shop";

/// The producer's own database: the ground truth of every transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Running,
    Committed,
    RolledBack,
}

#[derive(Debug, Clone)]
pub struct Delivered {
    pub topic: String,
    pub message_id: String,
    pub attempt: u32,
}

/// Everything the workload knows for certain.
#[derive(Debug, Default)]
pub struct Truth {
    pub plain_acked: BTreeSet<String>,
    pub plain_errors: usize,
    /// transaction id → (message id, local state)
    pub txns: BTreeMap<String, (String, Local)>,
    pub half_errors: usize,
    pub deliveries: BTreeMap<String, Vec<Delivered>>,
    /// transaction id → checks answered by our checkers
    pub checks: BTreeMap<String, u32>,
}

#[derive(Default)]
struct Shared {
    db: Mutex<HashMap<String, Local>>,
    truth: Mutex<Truth>,
}

impl Shared {
    /// The local transaction starts, unless a check-back already found no trace of it and
    /// recorded it as rolled back (the check can outrun the half message's response when the
    /// leader stalls after committing it). Like a real producer's unique insert: false = abort.
    fn begin(&self, id: &str) -> bool {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        match db.get(id) {
            Some(Local::RolledBack) => false,
            _ => {
                db.insert(id.to_string(), Local::Running);
                true
            }
        }
    }

    /// The local transaction ends with `outcome` if it is still running; returns its state.
    fn finish(&self, id: &str, outcome: Local) -> Local {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let state = db.entry(id.to_string()).or_insert(Local::Running);
        if *state == Local::Running {
            *state = outcome;
        }
        *state
    }
}

struct Checker(Arc<Shared>);

impl TransactionChecker for Checker {
    async fn check(&self, request: &CheckRequest) -> LocalTransactionState {
        *self
            .0
            .truth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checks
            .entry(request.transaction_id.clone())
            .or_default() += 1;
        let mut db = self.0.db.lock().unwrap_or_else(|p| p.into_inner());
        // No trace of it: the producer never began it (its send looked failed) or has not yet
        // heard that the half message was stored. Record the rollback, so that the local
        // transaction can no longer begin (see `Shared::begin`).
        let state = db
            .entry(request.transaction_id.clone())
            .or_insert(Local::RolledBack);
        match state {
            Local::Committed => LocalTransactionState::Commit,
            Local::Running => LocalTransactionState::Unknown,
            Local::RolledBack => LocalTransactionState::Rollback,
        }
    }
}

pub struct Workload {
    shared: Arc<Shared>,
    stop_producers: watch::Sender<bool>,
    stop_consumers: watch::Sender<bool>,
    producers: Vec<tokio::task::JoinHandle<()>>,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    checkers: Vec<txmq_client::CheckerHandle>,
    client: Client,
}

fn client_of(cluster: &mut Cluster) -> Result<Client> {
    let endpoints: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| n.client_addr.clone())
        .collect();
    let options = ClientOptions {
        retry_deadline: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..cluster.client_options().clone()
    };
    Ok(Client::with_options(endpoints, options)?)
}

impl Workload {
    pub async fn start(cluster: &mut Cluster, config: &ChaosConfig) -> Result<Workload> {
        let client = client_of(cluster)?;
        client
            .create_topic(TXN_TOPIC, TopicType::Transaction, 2)
            .await?;
        client
            .create_topic(PLAIN_TOPIC, TopicType::Normal, 2)
            .await?;
        let shared = Arc::new(Shared::default());
        let (stop_producers, stop_p) = watch::channel(false);
        let (stop_consumers, stop_c) = watch::channel(false);
        let mut producers = Vec::new();
        for i in 0..2u64 {
            producers.push(tokio::spawn(txn_producer(
                client_of(cluster)?,
                shared.clone(),
                config.seed ^ (i + 1),
                stop_p.clone(),
            )));
        }
        producers.push(tokio::spawn(plain_producer(
            client_of(cluster)?,
            shared.clone(),
            stop_p.clone(),
        )));
        let mut consumers = Vec::new();
        for (i, (group, slow)) in [(GROUPS[0], false), (GROUPS[0], false), (GROUPS[1], true)]
            .into_iter()
            .enumerate()
        {
            let seed = config.seed ^ (100 + i as u64);
            consumers.push(tokio::spawn(consumer(
                client_of(cluster)?,
                shared.clone(),
                group,
                slow,
                seed,
                stop_c.clone(),
            )));
        }
        let producer = TransactionProducer::new(client_of(cluster)?, PRODUCER_GROUP);
        let checkers = (0..2)
            .map(|i| {
                producer.start_checker(Arc::new(Checker(shared.clone())), format!("checker-{i}"))
            })
            .collect();
        Ok(Workload {
            shared,
            stop_producers,
            stop_consumers,
            producers,
            consumers,
            checkers,
            client,
        })
    }

    /// Stops producing, lets every transaction be decided and every group drain, then stops
    /// the consumers and checkers and returns the ground truth.
    pub async fn stop_producers_and_settle(
        self,
        cluster: &mut Cluster,
        config: &ChaosConfig,
    ) -> Result<Truth> {
        let _ = self.stop_producers.send(true);
        for p in self.producers {
            let _ = p.await;
        }
        // Local transactions still "finishing" end within a few seconds; then every pending
        // transaction is decided by a check-back or rolled back by the broker within its bound.
        let settle = config.max_lifetime + Duration::from_secs(30);
        let client = client_of(cluster)?;
        wait_for("every transaction to be decided", settle, || {
            let client = client.clone();
            async move {
                client
                    .list_transactions("", 1)
                    .await
                    .ok()
                    .filter(|l| l.pending_total == 0)
            }
        })
        .await?;
        wait_for("every group to drain", Duration::from_secs(90), || {
            let client = self.client.clone();
            async move {
                for group in GROUPS {
                    for topic in [TXN_TOPIC, PLAIN_TOPIC] {
                        let info = client.describe_group(group, topic).await.ok()?;
                        if info.lag != 0 || info.in_flight != 0 {
                            return None;
                        }
                    }
                }
                Some(())
            }
        })
        .await?;
        let _ = self.stop_consumers.send(true);
        for c in self.consumers {
            let _ = c.await;
        }
        drop(self.checkers);
        // The checkers were just stopped; their tasks may still be unwinding, so take copies.
        let mut truth =
            std::mem::take(&mut *self.shared.truth.lock().unwrap_or_else(|p| p.into_inner()));
        let db = self
            .shared
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (id, (_, local)) in truth.txns.iter_mut() {
            *local = db.get(id).copied().unwrap_or(Local::RolledBack);
        }
        Ok(truth)
    }
}

async fn txn_producer(client: Client, shared: Arc<Shared>, seed: u64, stop: watch::Receiver<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let producer = TransactionProducer::new(client, PRODUCER_GROUP);
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let request = SendHalfRequest {
            topic: TXN_TOPIC.into(),
            key: format!("k{}", n % 7),
            body: format!("order {seed}-{n}").into_bytes().into(),
            ..Default::default()
        };
        let half = match producer.send_half(request, None).await {
            Ok(h) => h,
            Err(_) => {
                shared
                    .truth
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .half_errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = half.transaction_id.clone();
        let began = shared.begin(&id);
        shared
            .truth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .txns
            .insert(id.clone(), (half.message_id, Local::Running));
        if !began {
            let _ = producer.end(&id, LocalTransactionState::Rollback).await;
            continue;
        }
        finish_transaction(&producer, &shared, id, &mut rng).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
    }
}

/// What the producer does after its half message was stored: decide at once (the decision
/// may be lost: then check-back decides), never send a decision (its local transaction ends
/// later, check-back decides), answer unknown then commit locally, or "crash" for good.
async fn finish_transaction(
    producer: &TransactionProducer,
    shared: &Arc<Shared>,
    id: String,
    rng: &mut StdRng,
) {
    match rng.random_range(0..10) {
        // Decide right away (the decision may be lost: then check-back decides).
        0..=3 => {
            shared.finish(&id, Local::Committed);
            let _ = producer.end(&id, LocalTransactionState::Commit).await;
        }
        4..=5 => {
            shared.finish(&id, Local::RolledBack);
            let _ = producer.end(&id, LocalTransactionState::Rollback).await;
        }
        // Never send a decision: the local transaction finishes later; check-back decides.
        6..=7 => {
            let outcome = if rng.random_bool(0.7) {
                Local::Committed
            } else {
                Local::RolledBack
            };
            let delay = Duration::from_millis(rng.random_range(0..3_000));
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.finish(&id, outcome);
            });
        }
        // Answer unknown now, commit locally a bit later.
        8 => {
            let _ = producer.end(&id, LocalTransactionState::Unknown).await;
            let shared = shared.clone();
            let delay = Duration::from_millis(rng.random_range(0..2_000));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.finish(&id, Local::Committed);
            });
        }
        // The producer "crashes" mid-transaction: its local transaction never finishes.
        _ => {}
    }
}

async fn plain_producer(client: Client, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let request = SendRequest {
            topic: PLAIN_TOPIC.into(),
            body: format!("event {n}").into_bytes().into(),
            ..Default::default()
        };
        match client.send(request).await {
            Ok(r) => {
                shared
                    .truth
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .plain_acked
                    .insert(r.message_id);
            }
            Err(_) => {
                shared
                    .truth
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .plain_errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn consumer(
    client: Client,
    shared: Arc<Shared>,
    group: &'static str,
    slow: bool,
    seed: u64,
    stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut turn = 0usize;
    while !*stop.borrow() {
        turn += 1;
        let topic = if turn.is_multiple_of(2) {
            TXN_TOPIC
        } else {
            PLAIN_TOPIC
        };
        let request = ReceiveRequest {
            group: group.into(),
            topic: topic.into(),
            max: 20,
            invisible_ms: 3_000,
            wait_ms: 300,
        };
        let Ok(batch) = client.receive(request).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if batch.is_empty() {
            continue;
        }
        {
            let mut truth = shared.truth.lock().unwrap_or_else(|p| p.into_inner());
            let list = truth.deliveries.entry(group.to_string()).or_default();
            for m in &batch {
                list.push(Delivered {
                    topic: topic.to_string(),
                    message_id: m.message_id.clone(),
                    attempt: m.delivery_attempt,
                });
            }
        }
        if slow {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Now and then a consumer "crashes" mid-batch: only the first half gets acked.
        let keep = if rng.random_bool(0.1) {
            batch.len() / 2
        } else {
            batch.len()
        };
        let receipts: Vec<String> = batch
            .iter()
            .take(keep)
            .map(|m| m.receipt_handle.clone())
            .collect();
        if !receipts.is_empty() {
            let _ = client.ack(group, topic, receipts).await;
        }
    }
}
