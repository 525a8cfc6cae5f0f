//! Judges a finished run: the clients' history against the replicas' final state. Each rule is
//! one of the brief's promises; the first broken one fails the seed, naming what broke it.

use std::collections::{BTreeMap, BTreeSet};

use txmq_state::{Decision, DecisionSource, StoredMessage, TxnState, codec};

use crate::history::{History, Local, SendFate};
use crate::replica::ReplicaView;
use crate::workload::{GROUPS, ORDERS, PAYMENTS};

/// Bodies of a topic's messages, with how often each is stored.
fn stored_bodies(replica: &ReplicaView, topic: &str) -> BTreeMap<String, u32> {
    let mut bodies = BTreeMap::new();
    let Some(t) = replica.state.topic(topic) else {
        return bodies;
    };
    for ((topic_id, _), queue) in &replica.queues {
        if *topic_id != t.id {
            continue;
        }
        for bytes in queue.values() {
            if let Ok(m) = codec::decode::<StoredMessage>(bytes) {
                *bodies
                    .entry(String::from_utf8_lossy(&m.body).into_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    bodies
}

/// Every rule, in order; `Err` names the first one broken.
pub fn check(history: &History, replicas: &[(u64, ReplicaView)]) -> Result<(), String> {
    let (first_id, reference) = replicas.first().ok_or("no replica is running at the end")?;
    replicas_agree(*first_id, reference, replicas)?;
    let orders = stored_bodies(reference, ORDERS);
    let payments = stored_bodies(reference, PAYMENTS);
    no_duplicates(&orders, &payments)?;
    acknowledged_sends_kept(history, &orders)?;
    only_committed_delivered(history, &payments)?;
    committed_delivered(history, reference, &payments)?;
    decisions_fenced(history, reference)?;
    broker_rollbacks_on_time(reference)?;
    every_half_decided(reference)?;
    consumers_saw_everything(history, &orders, &payments)?;
    if let Some(u) = history.unreadable.first() {
        return Err(format!(
            "a receive leased a message the node serving it could not read: {u}"
        ));
    }
    Ok(())
}

fn replicas_agree(
    first_id: u64,
    reference: &ReplicaView,
    replicas: &[(u64, ReplicaView)],
) -> Result<(), String> {
    for (id, r) in replicas {
        if r.last_applied != reference.last_applied {
            return Err(format!(
                "replicas did not converge: node {id} applied {:?}, node {first_id} {:?}",
                r.last_applied, reference.last_applied
            ));
        }
        if let Some(part) = difference(r, reference) {
            return Err(format!(
                "replicas disagree at the same applied index {:?}: node {id} and node {first_id} differ in {part}",
                r.last_applied
            ));
        }
    }
    Ok(())
}

/// The first part of the state two replicas hold differently, named with its key.
fn difference(a: &ReplicaView, b: &ReplicaView) -> Option<String> {
    if let Some((name, t)) = a
        .state
        .topics()
        .iter()
        .find(|(n, t)| b.state.topic(n) != Some(*t))
    {
        return Some(format!("topic {name}: {t:?} vs {:?}", b.state.topic(name)));
    }
    if let Some((k, g)) = a
        .state
        .groups()
        .iter()
        .find(|(k, g)| b.state.groups().get(*k) != Some(*g))
    {
        return Some(format!(
            "group {k:?}: {g:?} vs {:?}",
            b.state.groups().get(k)
        ));
    }
    let (ta, tb) = (a.state.transactions(), b.state.transactions());
    if let Some(r) = ta
        .pending()
        .chain(ta.decided())
        .find(|r| tb.get(&r.id) != Some(*r))
    {
        return Some(format!(
            "transaction {}: {r:?} vs {:?}",
            r.id,
            tb.get(&r.id)
        ));
    }
    if a.state != b.state {
        return Some("the rest of the state (users, retired nodes, transaction counts)".into());
    }
    if let Some((q, m)) = a.queues.iter().find(|(q, m)| b.queues.get(*q) != Some(*m)) {
        let other = b.queues.get(q).map(|o| o.len());
        return Some(format!("queue {q:?}: {} messages vs {other:?}", m.len()));
    }
    None
}

fn no_duplicates(
    orders: &BTreeMap<String, u32>,
    payments: &BTreeMap<String, u32>,
) -> Result<(), String> {
    match orders.iter().chain(payments).find(|(_, n)| **n > 1) {
        Some((body, n)) => Err(format!("message {body} is stored {n} times (sent once)")),
        None => Ok(()),
    }
}

fn acknowledged_sends_kept(
    history: &History,
    orders: &BTreeMap<String, u32>,
) -> Result<(), String> {
    for (body, fate) in &history.sends {
        if let SendFate::Acked { message_id } = fate
            && !orders.contains_key(body)
        {
            return Err(format!(
                "acknowledged message {body} ({message_id}) was lost"
            ));
        }
    }
    if let Some(body) = orders.keys().find(|b| !history.sends.contains_key(*b)) {
        return Err(format!("message {body} is stored but was never sent"));
    }
    Ok(())
}

fn only_committed_delivered(
    history: &History,
    payments: &BTreeMap<String, u32>,
) -> Result<(), String> {
    for body in payments.keys() {
        let local = history.txns.get(body).map(|t| t.local);
        if local != Some(Local::Done(Decision::Commit)) {
            return Err(format!(
                "transactional message {body} is visible but its producer's transaction is {local:?}"
            ));
        }
    }
    Ok(())
}

fn committed_delivered(
    history: &History,
    reference: &ReplicaView,
    payments: &BTreeMap<String, u32>,
) -> Result<(), String> {
    for (key, seen) in &history.txns {
        if seen.decision_acked == Some(Decision::Commit) && !payments.contains_key(key) {
            return Err(format!(
                "transaction {key} ({:?}) was committed and acknowledged but its message is missing",
                seen.txn_id
            ));
        }
    }
    for r in reference.state.transactions().decided() {
        let Some((queue, offset)) = r.position.filter(|_| r.state == TxnState::Committed) else {
            continue;
        };
        let topic_id = reference.state.topic(PAYMENTS).map(|t| t.id);
        if topic_id
            .and_then(|t| reference.message(t, queue, offset))
            .is_none()
        {
            return Err(format!(
                "committed transaction {} has no message at q{queue} o{offset}",
                r.id
            ));
        }
    }
    Ok(())
}

/// A decision reached only the transaction it named: no transaction the producer rolled back
/// ends committed, none it committed (and had acknowledged) ends rolled back.
fn decisions_fenced(history: &History, reference: &ReplicaView) -> Result<(), String> {
    let by_id: BTreeMap<&str, (&String, Local)> = history
        .txns
        .iter()
        .filter_map(|(k, t)| t.txn_id.as_deref().map(|id| (id, (k, t.local))))
        .collect();
    for r in reference.state.transactions().decided() {
        let id = r.id.to_string();
        let Some((key, local)) = by_id.get(id.as_str()) else {
            continue;
        };
        if r.state == TxnState::Committed && *local != Local::Done(Decision::Commit) {
            return Err(format!(
                "transaction {id} ({key}) committed, but its producer's transaction is {local:?} (reason {:?})",
                r.reason
            ));
        }
    }
    Ok(())
}

/// The broker rolls back only when the rule says so: at the transaction's deadline, or
/// after its last check went unanswered — never early.
fn broker_rollbacks_on_time(reference: &ReplicaView) -> Result<(), String> {
    for r in reference.state.transactions().decided() {
        let decided = r.decided_ms.unwrap_or(0);
        let early = match r.reason {
            Some(DecisionSource::Timeout) => decided < r.deadline_ms,
            Some(DecisionSource::CheckExhausted) => r.check_count < r.timing.max_checks,
            _ => false,
        };
        if early {
            return Err(format!(
                "transaction {} was rolled back early ({:?} at {decided} ms, deadline {} ms, {} of {} checks)",
                r.id, r.reason, r.deadline_ms, r.check_count, r.timing.max_checks
            ));
        }
    }
    Ok(())
}

fn every_half_decided(reference: &ReplicaView) -> Result<(), String> {
    match reference.state.transactions().pending().next() {
        Some(r) => Err(format!(
            "transaction {} is still pending at the end (created at {} ms, deadline {} ms)",
            r.id, r.created_ms, r.deadline_ms
        )),
        None => Ok(()),
    }
}

/// Every stored message was processed by each group reading its topic; a message processed
/// twice by a group was delivered again (a higher attempt), never handed out twice at once.
fn consumers_saw_everything(
    history: &History,
    orders: &BTreeMap<String, u32>,
    payments: &BTreeMap<String, u32>,
) -> Result<(), String> {
    let mut attempts: BTreeMap<(&str, &str), BTreeSet<u32>> = BTreeMap::new();
    for p in &history.processed {
        if !attempts
            .entry((&p.group, &p.body))
            .or_default()
            .insert(p.attempt)
        {
            return Err(format!(
                "group {} processed {} twice with the same attempt {} (q{} o{})",
                p.group, p.body, p.attempt, p.queue, p.offset
            ));
        }
    }
    for (group, topic) in GROUPS {
        let stored = if topic == ORDERS { orders } else { payments };
        if let Some(body) = stored
            .keys()
            .find(|b| !attempts.contains_key(&(group, b.as_str())))
        {
            return Err(format!(
                "group {group} never processed {body}, yet nothing of {topic} is left to receive"
            ));
        }
    }
    Ok(())
}
