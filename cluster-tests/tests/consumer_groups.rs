//! Consumer groups on a real cluster: fan-out to groups, acks, redelivery with attempts, dead
//! letters, receives on followers, a leader kill mid-consumption, resets, and retention.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use txmq_client::{
    Client, Message, ReceiveRequest, ResetGroupRequest, SendRequest, TopicType, reset_group_request,
};
use txmq_cluster_tests::{Cluster, ClusterOptions, wait_for};

fn msg(topic: &str, body: String) -> SendRequest {
    SendRequest {
        topic: topic.into(),
        body: body.into_bytes().into(),
        ..Default::default()
    }
}

fn recv(group: &str, topic: &str, max: u32, invisible_ms: u64, wait_ms: u64) -> ReceiveRequest {
    ReceiveRequest {
        group: group.into(),
        topic: topic.into(),
        max,
        invisible_ms,
        wait_ms,
    }
}

async fn send_n(client: &Client, topic: &str, n: usize, tag: &str) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        ids.insert(
            client
                .send(msg(topic, format!("{tag} {i}")))
                .await?
                .message_id,
        );
    }
    Ok(ids)
}

/// Receives and acks until `expected` messages were seen or the deadline passes.
async fn drain(client: &Client, group: &str, topic: &str, expected: usize) -> Result<Vec<Message>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < expected && tokio::time::Instant::now() < deadline {
        let batch = client
            .receive(recv(group, topic, 50, 10_000, 1_000))
            .await?;
        if batch.is_empty() {
            continue;
        }
        let receipts = batch.iter().map(|m| m.receipt_handle.clone()).collect();
        let results = client.ack(group, topic, receipts).await?;
        ensure!(results.iter().all(|r| r.outcome == "acked"), "{results:?}");
        seen.extend(batch);
    }
    Ok(seen)
}

fn ids(messages: &[Message]) -> BTreeSet<String> {
    messages.iter().map(|m| m.message_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_each_get_every_message_acked_ones_never_return_unacked_ones_do() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("orders", TopicType::Normal, 3).await?;
    let sent = send_n(&client, "orders", 30, "order").await?;

    // Phase 1: two groups each get every message; a receive on a follower works.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .context("follower")?;
    let on_follower = cluster.client_of(follower)?;
    let a = drain(&on_follower, "billing", "orders", 30).await?;
    let b = drain(&client, "shipping", "orders", 30).await?;
    ensure!(
        ids(&a) == sent && a.len() == 30,
        "billing got {} messages",
        a.len()
    );
    ensure!(
        ids(&b) == sent && b.len() == 30,
        "shipping got {} messages",
        b.len()
    );
    ensure!(a.iter().all(|m| m.delivery_attempt == 1));

    // Phase 2: acked messages never come back.
    let again = client
        .receive(recv("billing", "orders", 50, 1_000, 1_500))
        .await?;
    ensure!(
        again.is_empty(),
        "acked messages came back: {:?}",
        ids(&again)
    );

    // Phase 3: an unacked message comes back after its invisible duration, attempt + 1.
    let new = send_n(&client, "orders", 1, "late").await?;
    let first = client
        .receive(recv("billing", "orders", 10, 500, 5_000))
        .await?;
    ensure!(ids(&first) == new && first[0].delivery_attempt == 1);
    let hidden = client
        .receive(recv("billing", "orders", 10, 500, 0))
        .await?;
    ensure!(
        hidden.is_empty(),
        "an in-flight message was delivered twice at once"
    );
    let second = client
        .receive(recv("billing", "orders", 10, 10_000, 5_000))
        .await?;
    ensure!(
        ids(&second) == new && second[0].delivery_attempt == 2,
        "{second:?}"
    );
    // The first receipt is stale now; the newest one acks.
    let stale = client
        .ack("billing", "orders", vec![first[0].receipt_handle.clone()])
        .await?;
    ensure!(stale[0].outcome == "stale", "{stale:?}");
    let ok = client
        .ack("billing", "orders", vec![second[0].receipt_handle.clone()])
        .await?;
    ensure!(ok[0].outcome == "acked");
    let repeat = client
        .ack("billing", "orders", vec![second[0].receipt_handle.clone()])
        .await?;
    ensure!(repeat[0].outcome == "already_acked");

    // Phase 4: extending the invisibility keeps a message away, and returns a new receipt.
    send_n(&client, "orders", 1, "slow").await?;
    let got = client
        .receive(recv("billing", "orders", 1, 500, 5_000))
        .await?;
    let extended = client
        .change_invisible_duration(
            "billing",
            "orders",
            &got[0].receipt_handle,
            Duration::from_secs(30),
        )
        .await?;
    // A receive that waits well past the first lease's 500 ms gets nothing: the extension holds.
    ensure!(
        client
            .receive(recv("billing", "orders", 10, 500, 1_300))
            .await?
            .is_empty()
    );
    ensure!(client.ack("billing", "orders", vec![extended]).await?[0].outcome == "acked");

    // Phase 5: describe shows the group caught up.
    let info = client.describe_group("billing", "orders").await?;
    ensure!(info.lag == 0 && info.in_flight == 0, "{info:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_goes_to_the_dead_letter_topic() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("jobs", TopicType::Normal, 1).await?;
    let info = client.configure_group("workers", "jobs", 3).await?;
    ensure!(info.max_delivery_attempts == 3 && info.dead_letter_topic == "dlq.workers");
    let poison = send_n(&client, "jobs", 1, "poison").await?;

    // Three deliveries, never acked.
    for attempt in 1..=3 {
        let got = client
            .receive(recv("workers", "jobs", 10, 300, 5_000))
            .await?;
        ensure!(
            ids(&got) == poison && got[0].delivery_attempt == attempt,
            "attempt {attempt}: {got:?}"
        );
    }
    // Then it moves to the group's dead-letter topic, which can be consumed like any topic.
    let dead = wait_for("the dead letter", Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            let got = client
                .receive(recv("operators", "dlq.workers", 10, 10_000, 500))
                .await
                .ok()?;
            (!got.is_empty()).then_some(got)
        }
    })
    .await
    .with_context(|| cluster.logs())?;
    ensure!(dead.len() == 1 && dead[0].body.as_ref() == b"poison 0");
    ensure!(
        dead[0]
            .properties
            .get("dlq.origin_topic")
            .map(String::as_str)
            == Some("jobs"),
        "{:?}",
        dead[0].properties
    );
    ensure!(dead[0].properties.get("dlq.attempts").map(String::as_str) == Some("3"));
    ensure!(
        client
            .receive(recv("workers", "jobs", 10, 300, 1_000))
            .await?
            .is_empty(),
        "dead letter redelivered"
    );
    let info = client.describe_group("workers", "jobs").await?;
    ensure!(info.dead_lettered == 1 && info.lag == 0, "{info:?}");

    // Re-drive: publish it back to its topic; the group gets it again.
    let back = client
        .send(msg(
            "jobs",
            String::from_utf8_lossy(&dead[0].body).into_owned(),
        ))
        .await?;
    let again = client
        .receive(recv("workers", "jobs", 10, 10_000, 5_000))
        .await?;
    ensure!(
        again.len() == 1
            && again[0].message_id == back.message_id
            && again[0].delivery_attempt == 1
    );
    let e = client
        .create_topic("dlq.mine", TopicType::Normal, 1)
        .await
        .expect_err("reserved prefix");
    ensure!(
        e.code == "invalid_argument" && e.message.contains("reserved"),
        "{e:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_kill_during_consumption_loses_no_ack_and_redelivers_only_in_flight() -> Result<()>
{
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("events", TopicType::Normal, 2).await?;
    let sent = send_n(&client, "events", 60, "event").await?;

    // Phase 1: consume and ack 40, then take 10 more without acking (in flight).
    let acked = drain(&client, "g", "events", 40).await?;
    ensure!(acked.len() >= 40);
    let acked_ids = ids(&acked);
    let in_flight = client
        .receive(recv("g", "events", 10, 1_500, 2_000))
        .await?;
    ensure!(!in_flight.is_empty());

    // Phase 2: SIGKILL the leader.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
    cluster.node(leader).kill();
    cluster.wait_for_leader(Duration::from_secs(10)).await?;

    // Phase 3: the rest arrives; acked messages never come back; only in-flight ones repeat.
    let client = cluster.client()?;
    let rest = drain(&client, "g", "events", 60 - acked_ids.len()).await?;
    let rest_ids = ids(&rest);
    ensure!(
        rest_ids.is_disjoint(&acked_ids),
        "acked messages were redelivered: {:?}",
        rest_ids.intersection(&acked_ids)
    );
    let all: BTreeSet<String> = acked_ids.union(&rest_ids).cloned().collect();
    ensure!(
        all == sent,
        "lost {} messages",
        sent.difference(&all).count()
    );
    for m in &rest {
        let was_in_flight = in_flight.iter().any(|f| f.message_id == m.message_id);
        ensure!(
            was_in_flight == (m.delivery_attempt > 1),
            "{} attempt {}",
            m.message_id,
            m.delivery_attempt
        );
    }
    let info = client.describe_group("g", "events").await?;
    ensure!(info.lag == 0 && info.in_flight == 0, "{info:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reconsumes_and_retention_removes_old_messages() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("log", TopicType::Normal, 2).await?;
    let first = send_n(&client, "log", 10, "old").await?;
    let mid_time = txmq_broker_time_ms();
    // The next messages are born strictly later than `mid_time`.
    wait_for(
        "the clock to move past the first batch",
        Duration::from_secs(1),
        || async { (txmq_broker_time_ms() > mid_time + 1).then_some(()) },
    )
    .await?;
    let second = send_n(&client, "log", 10, "new").await?;
    let everything: BTreeSet<String> = first.union(&second).cloned().collect();
    ensure!(ids(&drain(&client, "r", "log", 20).await?) == everything);

    // Phase 1: reset to earliest re-consumes all; to latest nothing; to a time only what is newer.
    let to = |t| ResetGroupRequest {
        group: "r".into(),
        topic: "log".into(),
        to: Some(t),
    };
    client
        .reset_group(to(reset_group_request::To::Earliest(true)))
        .await?;
    ensure!(ids(&drain(&client, "r", "log", 20).await?) == everything);
    client
        .reset_group(to(reset_group_request::To::Latest(true)))
        .await?;
    ensure!(
        client
            .receive(recv("r", "log", 50, 1_000, 300))
            .await?
            .is_empty()
    );
    client
        .reset_group(to(reset_group_request::To::TimestampMs(mid_time)))
        .await?;
    ensure!(ids(&drain(&client, "r", "log", 10).await?) == second);

    // Phase 2: retention by time: a topic keeping 1s loses its old messages on every node.
    let spec = txmq_proto::client::CreateTopicRequest {
        name: "short".into(),
        r#type: TopicType::Normal as i32,
        queues: 1,
        retention_ms: 1_000,
        retention_bytes: 0,
    };
    client.create_topic_with(spec).await?;
    send_n(&client, "short", 5, "ephemeral").await?;
    let two = client
        .receive(recv("early", "short", 2, 10_000, 5_000))
        .await?;
    ensure!(two.len() == 2);
    client
        .ack(
            "early",
            "short",
            two.iter().map(|m| m.receipt_handle.clone()).collect(),
        )
        .await?;
    wait_for("retention to trim", Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            let t = client.describe_topic("short").await.ok()?;
            (t.queue_info[0].low_offset == 5).then_some(())
        }
    })
    .await?;
    for id in [1, 2, 3] {
        let c = cluster.client_of(id)?;
        wait_for("trim on every node", Duration::from_secs(10), || {
            let c = c.clone();
            async move {
                let read = c
                    .read(txmq_client::ReadRequest {
                        topic: "short".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                read.is_empty().then_some(())
            }
        })
        .await?;
    }
    // A group behind retention continues from the oldest retained message; describe shows it.
    let info = client.describe_group("early", "short").await?;
    ensure!(info.queues[0].behind_retention > 0, "{info:?}");
    send_n(&client, "short", 1, "fresh").await?;
    let got = client
        .receive(recv("early", "short", 10, 10_000, 5_000))
        .await?;
    ensure!(got.len() == 1 && got[0].offset == 5, "{got:?}");
    let info = client.describe_group("early", "short").await?;
    ensure!(
        info.skipped_by_retention == 3 && info.queues[0].behind_retention == 0,
        "{info:?}"
    );

    // Phase 3: retention by size keeps the newest messages within the limit.
    let spec = txmq_proto::client::CreateTopicRequest {
        name: "small".into(),
        r#type: TopicType::Normal as i32,
        queues: 1,
        retention_ms: 0,
        retention_bytes: 1_000,
    };
    client.create_topic_with(spec).await?;
    for i in 0..30 {
        client.send(msg("small", format!("{i:0>100}"))).await?;
    }
    let kept = wait_for("size retention", Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            let t = client.describe_topic("small").await.ok()?;
            let q = &t.queue_info[0];
            (q.next_offset - q.low_offset <= 10).then_some(q.next_offset - q.low_offset)
        }
    })
    .await?;
    ensure!(
        kept >= 9,
        "kept only {kept} messages of 100 bytes under a 1000-byte limit"
    );
    Ok(())
}

fn txmq_broker_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_disk_high_water_mark_the_oldest_messages_are_trimmed() -> Result<()> {
    // Any real volume is fuller than 0.01%: the leader must trim, oldest first, everywhere.
    let options = ClusterOptions {
        extra_args: ["--disk-high-water", "0.0001"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("old", TopicType::Normal, 1).await?;
    send_n(&client, "old", 20, "first").await?;
    for id in [1, 2, 3] {
        let c = cluster.client_of(id)?;
        wait_for(
            "the high-water trim on every node",
            Duration::from_secs(20),
            || {
                let c = c.clone();
                async move {
                    let t = c.describe_topic("old").await.ok()?;
                    (t.queue_info[0].low_offset == 20).then_some(())
                }
            },
        )
        .await?;
    }
    Ok(())
}
