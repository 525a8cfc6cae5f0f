//! The checker, run after healing and draining: compares what the cluster did with the ground
//! truth and with itself across replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use txmq_client::{Client, ReadRequest};

use super::workload::{GROUPS, Local, PLAIN_TOPIC, TXN_TOPIC, Truth};
use super::{ChaosConfig, Report};
use crate::{Cluster, wait_for};

/// One broken guarantee.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub rule: &'static str,
    pub detail: String,
}

fn violation(out: &mut Vec<Violation>, rule: &'static str, detail: String) {
    if out.iter().filter(|v| v.rule == rule).count() < 20 {
        out.push(Violation { rule, detail });
    }
}

/// The transaction id of a transactional message id (`T` + the message id).
fn txn_of(message_id: &str) -> String {
    format!("T{message_id}")
}

/// What each group received: message id → the delivery attempts seen.
type Received<'a> = BTreeMap<&'a str, BTreeMap<String, Vec<u32>>>;

pub async fn check(cluster: &mut Cluster, config: &ChaosConfig, truth: Truth) -> Result<Report> {
    let mut v = Vec::new();
    let client = cluster.client()?;
    let mut report = Report {
        plain_acknowledged: truth.plain_acked.len(),
        plain_send_errors: truth.plain_errors,
        transactions_started: truth.txns.len(),
        half_send_errors: truth.half_errors,
        checks_answered: truth.checks.values().map(|c| *c as usize).sum(),
        max_checks_seen_for_one_transaction: truth.checks.values().copied().max().unwrap_or(0),
        ..Default::default()
    };
    let received = received_by_group(&truth, &mut report);
    acknowledged_reached_every_group(&truth, &received, &mut v);
    let broker_state =
        transactions_agree(&client, config, &truth, &received, &mut report, &mut v).await;
    no_check_storm(config, &truth, &mut v);
    only_committed_delivered(&client, &truth, &broker_state, &mut v).await;
    duplicates_only_from_redelivery(&received, &mut report, &mut v);
    // 6. Replicas agree: offsets dense, same messages everywhere, same state digest.
    report.replicas_compared = compare_replicas(cluster, &mut v).await?;
    report.violations = v;
    Ok(report)
}

fn received_by_group<'a>(truth: &Truth, report: &mut Report) -> Received<'a> {
    let mut received: Received<'a> = BTreeMap::new();
    for group in GROUPS {
        let per_id = received.entry(group).or_default();
        for d in truth.deliveries.get(group).into_iter().flatten() {
            per_id
                .entry(d.message_id.clone())
                .or_default()
                .push(d.attempt);
            report.deliveries += 1;
        }
    }
    received
}

/// 1. Every acknowledged plain message reached every group.
fn acknowledged_reached_every_group(
    truth: &Truth,
    received: &Received<'_>,
    v: &mut Vec<Violation>,
) {
    for group in GROUPS {
        let got = &received[group];
        for id in &truth.plain_acked {
            if !got.contains_key(id) {
                violation(
                    v,
                    "acknowledged message lost",
                    format!("{id} never delivered to {group}"),
                );
            }
        }
    }
}

/// 2. Transactions: the broker's outcome agrees with the producer's database; committed ones
///    reached every group; rolled back ones reached none; all decided within their bound.
///    Returns each transaction's state as the broker reports it.
async fn transactions_agree(
    client: &Client,
    config: &ChaosConfig,
    truth: &Truth,
    received: &Received<'_>,
    report: &mut Report,
    v: &mut Vec<Violation>,
) -> BTreeMap<String, String> {
    let mut broker_state: BTreeMap<String, String> = BTreeMap::new();
    for (id, (message_id, local)) in &truth.txns {
        let t = match client.get_transaction(id).await {
            Ok(t) => t,
            Err(e) => {
                violation(
                    v,
                    "transaction unknown after the run",
                    format!("{id}: {}", e.message),
                );
                continue;
            }
        };
        broker_state.insert(id.clone(), t.state.clone());
        judge_outcome(id, message_id, *local, &t, received, report, v);
        let bound = config.max_lifetime.as_millis() as u64 + 5_000;
        if t.decided_at_ms > 0 && t.decided_at_ms.saturating_sub(t.created_at_ms) > bound {
            let after = t.decided_at_ms - t.created_at_ms;
            violation(
                v,
                "decision later than its bound",
                format!("{id} decided after {after} ms"),
            );
        }
        if t.check_count > config.max_checks {
            let detail = format!(
                "{id}: {} checks recorded (max {})",
                t.check_count, config.max_checks
            );
            violation(v, "check storm", detail);
        }
    }
    broker_state
}

/// One transaction's outcome against the producer's database and the deliveries.
fn judge_outcome(
    id: &str,
    message_id: &str,
    local: Local,
    t: &txmq_client::TransactionInfo,
    received: &Received<'_>,
    report: &mut Report,
    v: &mut Vec<Violation>,
) {
    match t.state.as_str() {
        "committed" => {
            report.committed += 1;
            if local != Local::Committed {
                let detail = format!("{id}: local {local:?}, reason {}", t.reason);
                violation(v, "committed against the producer's database", detail);
            }
            for group in GROUPS {
                if !received[group].contains_key(message_id) {
                    let detail = format!("{id} ({message_id}) never reached {group}");
                    violation(v, "committed transaction not delivered", detail);
                }
            }
        }
        "rolled_back" => {
            report.rolled_back += 1;
            if matches!(t.reason.as_str(), "timeout" | "check_exhausted") {
                report.rolled_back_by_broker += 1;
            } else if local == Local::Committed {
                let detail = format!("{id}: reason {}", t.reason);
                violation(v, "rolled back against the producer's database", detail);
            }
        }
        other => violation(v, "transaction left undecided", format!("{id} is {other}")),
    }
}

/// 3. No transaction was checked more often than its bound allows.
fn no_check_storm(config: &ChaosConfig, truth: &Truth, v: &mut Vec<Violation>) {
    for (id, answered) in &truth.checks {
        if *answered > config.max_checks + 1 {
            let detail = format!(
                "{id}: {answered} checks answered (max {} + 1)",
                config.max_checks
            );
            violation(v, "check storm", detail);
        }
    }
}

/// 4. Nothing but committed transactional messages was ever delivered.
async fn only_committed_delivered(
    client: &Client,
    truth: &Truth,
    broker_state: &BTreeMap<String, String>,
    v: &mut Vec<Violation>,
) {
    for group in GROUPS {
        let deliveries = truth.deliveries.get(group).into_iter().flatten();
        for d in deliveries.filter(|d| d.topic == TXN_TOPIC) {
            let id = txn_of(&d.message_id);
            let state = match broker_state.get(&id) {
                Some(s) => s.clone(),
                None => client
                    .get_transaction(&id)
                    .await
                    .map(|t| t.state)
                    .unwrap_or_else(|_| "unknown".into()),
            };
            if state != "committed" {
                let detail = format!("{} ({id}, {state}) delivered to {group}", d.message_id);
                violation(v, "uncommitted message delivered", detail);
            }
        }
    }
}

/// 5. Duplicates only from redelivery: repeated deliveries carry increasing attempts.
fn duplicates_only_from_redelivery(
    received: &Received<'_>,
    report: &mut Report,
    v: &mut Vec<Violation>,
) {
    for group in GROUPS {
        for (id, attempts) in &received[group] {
            if attempts.len() > 1 {
                report.duplicate_deliveries += attempts.len() - 1;
                let distinct: BTreeSet<u32> = attempts.iter().copied().collect();
                if distinct.len() != attempts.len() || !attempts.iter().any(|a| *a > 1) {
                    let detail = format!("{id} to {group}: attempts {attempts:?}");
                    violation(v, "duplicate not explained by redelivery", detail);
                }
            }
        }
    }
}

async fn compare_replicas(cluster: &mut Cluster, v: &mut Vec<Violation>) -> Result<usize> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let clients: Vec<Client> = ids
        .iter()
        .map(|id| cluster.client_of(*id))
        .collect::<Result<_>>()?;
    let digests = quiesced_digests(&clients, &ids).await?;
    let distinct: BTreeSet<u32> = digests.iter().map(|d| d.digest).collect();
    if distinct.len() != 1 {
        let detail = digests
            .iter()
            .map(|d| format!("node {}: {:08x}", d.node_id, d.digest))
            .collect::<Vec<_>>()
            .join(", ");
        let index = digests[0].applied_index;
        violation(
            v,
            "replicas diverge",
            format!("state digests at index {index}: {detail}"),
        );
    }
    for topic in [TXN_TOPIC, PLAIN_TOPIC] {
        let mut reference: Option<Vec<Vec<String>>> = None;
        for (c, id) in clients.iter().zip(&ids) {
            let queues = queue_contents(c, *id, topic, v).await?;
            match &reference {
                None => reference = Some(queues),
                Some(r) if *r != queues => violation(
                    v,
                    "replicas diverge",
                    format!("node {id} holds other messages in {topic}"),
                ),
                Some(_) => {}
            }
        }
    }
    Ok(ids.len())
}

/// Every node's state digest, once all are at the same applied index.
async fn quiesced_digests(
    clients: &[Client],
    ids: &[u64],
) -> Result<Vec<txmq_proto::client::StateDigestResponse>> {
    let quiesced = wait_for(
        "replicas to reach the same applied index",
        Duration::from_secs(60),
        || {
            let clients = clients.to_vec();
            async move {
                let mut out = Vec::new();
                for c in &clients {
                    out.push(c.state_digest_from(0).await.ok()?);
                }
                let first = out[0].applied_index;
                out.iter().all(|d| d.applied_index == first).then_some(out)
            }
        },
    )
    .await;
    match quiesced {
        Ok(d) => Ok(d),
        Err(e) => {
            // Say which node is where, for the report.
            let mut seen = Vec::new();
            for (c, id) in clients.iter().zip(ids) {
                match c.state_digest_from(0).await {
                    Ok(d) => seen.push(format!("node {id}: applied {}", d.applied_index)),
                    Err(err) => seen.push(format!("node {id}: {}", err.message)),
                }
            }
            Err(e.context(seen.join(", ")))
        }
    }
}

/// The message ids in each queue of `topic` as node `id` holds them, checking offsets are
/// dense.
async fn queue_contents(
    c: &Client,
    id: u64,
    topic: &str,
    v: &mut Vec<Violation>,
) -> Result<Vec<Vec<String>>> {
    let info = c.describe_topic(topic).await?;
    let mut queues = Vec::new();
    for q in &info.queue_info {
        let mut ids_in_queue = Vec::new();
        let mut next = q.low_offset;
        while next < q.next_offset {
            let req = ReadRequest {
                topic: topic.into(),
                queue: Some(q.queue),
                from_offset: next,
                max: 1000,
            };
            let batch = c.read(req).await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if m.offset != next {
                    let detail = format!(
                        "node {id} {topic}/{}: expected offset {next}, got {}",
                        q.queue, m.offset
                    );
                    violation(v, "gap in offsets", detail);
                }
                next = m.offset + 1;
                ids_in_queue.push(m.message_id);
            }
        }
        if next != q.next_offset {
            let detail = format!(
                "node {id} {topic}/{}: read up to {next} of {}",
                q.queue, q.next_offset
            );
            violation(v, "gap in offsets", detail);
        }
        queues.push(ids_in_queue);
    }
    Ok(queues)
}
