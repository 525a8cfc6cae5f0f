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

    // What each group received.
    let mut received: BTreeMap<&str, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
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

    // 1. Every acknowledged plain message reached every group.
    for group in GROUPS {
        let got = &received[group];
        for id in &truth.plain_acked {
            if !got.contains_key(id) {
                violation(
                    &mut v,
                    "acknowledged message lost",
                    format!("{id} never delivered to {group}"),
                );
            }
        }
    }

    // 2. Transactions: the broker's outcome agrees with the producer's database; committed
    //    ones reached every group; rolled back ones reached none; all decided within bound.
    let mut broker_state: BTreeMap<String, String> = BTreeMap::new();
    for (id, (message_id, local)) in &truth.txns {
        let t = match client.get_transaction(id).await {
            Ok(t) => t,
            Err(e) => {
                violation(
                    &mut v,
                    "transaction unknown after the run",
                    format!("{id}: {}", e.message),
                );
                continue;
            }
        };
        broker_state.insert(id.clone(), t.state.clone());
        match t.state.as_str() {
            "committed" => {
                report.committed += 1;
                if *local != Local::Committed {
                    violation(
                        &mut v,
                        "committed against the producer's database",
                        format!("{id}: local {local:?}, reason {}", t.reason),
                    );
                }
                for group in GROUPS {
                    if !received[group].contains_key(message_id) {
                        violation(
                            &mut v,
                            "committed transaction not delivered",
                            format!("{id} ({message_id}) never reached {group}"),
                        );
                    }
                }
            }
            "rolled_back" => {
                report.rolled_back += 1;
                if matches!(t.reason.as_str(), "timeout" | "check_exhausted") {
                    report.rolled_back_by_broker += 1;
                } else if *local == Local::Committed {
                    violation(
                        &mut v,
                        "rolled back against the producer's database",
                        format!("{id}: reason {}", t.reason),
                    );
                }
            }
            other => violation(
                &mut v,
                "transaction left undecided",
                format!("{id} is {other}"),
            ),
        }
        let bound = config.max_lifetime.as_millis() as u64 + 5_000;
        if t.decided_at_ms > 0 && t.decided_at_ms.saturating_sub(t.created_at_ms) > bound {
            violation(
                &mut v,
                "decision later than its bound",
                format!(
                    "{id} decided after {} ms",
                    t.decided_at_ms - t.created_at_ms
                ),
            );
        }
        if t.check_count > config.max_checks {
            violation(
                &mut v,
                "check storm",
                format!(
                    "{id}: {} checks recorded (max {})",
                    t.check_count, config.max_checks
                ),
            );
        }
    }
    for (id, answered) in &truth.checks {
        if *answered > config.max_checks + 1 {
            violation(
                &mut v,
                "check storm",
                format!(
                    "{id}: {answered} checks answered (max {} + 1)",
                    config.max_checks
                ),
            );
        }
    }

    // 3. Nothing but committed transactional messages was ever delivered.
    for group in GROUPS {
        for d in truth
            .deliveries
            .get(group)
            .into_iter()
            .flatten()
            .filter(|d| d.topic == TXN_TOPIC)
        {
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
                violation(
                    &mut v,
                    "uncommitted message delivered",
                    format!("{} ({id}, {state}) delivered to {group}", d.message_id),
                );
            }
        }
    }

    // 4. Duplicates only from redelivery: repeated deliveries carry increasing attempts.
    for group in GROUPS {
        for (id, attempts) in &received[group] {
            if attempts.len() > 1 {
                report.duplicate_deliveries += attempts.len() - 1;
                let distinct: BTreeSet<u32> = attempts.iter().copied().collect();
                if distinct.len() != attempts.len() || !attempts.iter().any(|a| *a > 1) {
                    violation(
                        &mut v,
                        "duplicate not explained by redelivery",
                        format!("{id} to {group}: attempts {attempts:?}"),
                    );
                }
            }
        }
    }

    // 5. Replicas agree: offsets dense, same messages everywhere, same state digest.
    report.replicas_compared = compare_replicas(cluster, &mut v).await?;
    report.violations = v;
    Ok(report)
}

async fn compare_replicas(cluster: &mut Cluster, v: &mut Vec<Violation>) -> Result<usize> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let clients: Vec<Client> = ids
        .iter()
        .map(|id| cluster.client_of(*id))
        .collect::<Result<_>>()?;
    // Quiesce: every node at the same applied index.
    let quiesced = wait_for(
        "replicas to reach the same applied index",
        Duration::from_secs(60),
        || {
            let clients = clients.clone();
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
    let digests = match quiesced {
        Ok(d) => d,
        Err(e) => {
            // Say which node is where, for the report.
            let mut seen = Vec::new();
            for (c, id) in clients.iter().zip(&ids) {
                match c.state_digest_from(0).await {
                    Ok(d) => seen.push(format!("node {id}: applied {}", d.applied_index)),
                    Err(err) => seen.push(format!("node {id}: {}", err.message)),
                }
            }
            return Err(e.context(seen.join(", ")));
        }
    };
    let distinct: BTreeSet<u32> = digests.iter().map(|d| d.digest).collect();
    if distinct.len() != 1 {
        let detail = digests
            .iter()
            .map(|d| format!("node {}: {:08x}", d.node_id, d.digest))
            .collect::<Vec<_>>()
            .join(", ");
        violation(
            v,
            "replicas diverge",
            format!(
                "state digests at index {}: {detail}",
                digests[0].applied_index
            ),
        );
    }
    for topic in [TXN_TOPIC, PLAIN_TOPIC] {
        let mut reference: Option<Vec<Vec<String>>> = None;
        for (c, id) in clients.iter().zip(&ids) {
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
                            violation(
                                v,
                                "gap in offsets",
                                format!(
                                    "node {id} {topic}/{}: expected offset {next}, got {}",
                                    q.queue, m.offset
                                ),
                            );
                        }
                        next = m.offset + 1;
                        ids_in_queue.push(m.message_id);
                    }
                }
                if next != q.next_offset {
                    violation(
                        v,
                        "gap in offsets",
                        format!(
                            "node {id} {topic}/{}: read up to {next} of {}",
                            q.queue, q.next_offset
                        ),
                    );
                }
                queues.push(ids_in_queue);
            }
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
