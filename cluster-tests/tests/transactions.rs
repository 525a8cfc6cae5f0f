//! Transactional messages on a real cluster: visibility, exactly-once commit, fenced and
//! conflicting decisions, check-back after a producer dies, no burnt attempts without a
//! checker, timeout and exhaustion rollbacks, and a leader kill in the middle of checking.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use txmq_client::{
    CheckRequest, Client, EndTransactionRequest, LocalTransactionState, ReadRequest,
    SendHalfRequest, SendRequest, TopicType, TransactionChecker, TransactionProducer,
};
use txmq_cluster_tests::{
    Cluster, ClusterOptions, expect_failure, holds_for, wait_for, wait_for_transaction,
};

fn options(first: &str, interval: &str, max_checks: u32, lifetime: &str) -> ClusterOptions {
    ClusterOptions {
        extra_args: vec![
            "--txn-first-check-delay".into(),
            first.into(),
            "--txn-check-interval".into(),
            interval.into(),
            "--txn-max-checks".into(),
            max_checks.to_string(),
            "--txn-max-lifetime".into(),
            lifetime.into(),
        ],
        ..Default::default()
    }
}

fn half(topic: &str, body: &str) -> SendHalfRequest {
    SendHalfRequest {
        topic: topic.into(),
        body: body.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

fn end(id: &str, group: &str, decision: LocalTransactionState) -> EndTransactionRequest {
    EndTransactionRequest {
        transaction_id: id.into(),
        group: group.into(),
        decision: decision.to_pb() as i32,
        operator: false,
    }
}

async fn visible_ids(client: &Client, topic: &str) -> Result<Vec<String>> {
    let messages = client
        .read(ReadRequest {
            topic: topic.into(),
            queue: None,
            from_offset: 0,
            max: 1000,
        })
        .await?;
    Ok(messages.into_iter().map(|m| m.message_id).collect())
}

/// A checker whose answer is fixed, counting the checks it answered per transaction.
struct CountingChecker {
    answer: LocalTransactionState,
    answered: Mutex<BTreeMap<String, u32>>,
}

impl CountingChecker {
    fn new(answer: LocalTransactionState) -> Arc<Self> {
        Arc::new(Self {
            answer,
            answered: Mutex::default(),
        })
    }
    fn count(&self, id: &str) -> u32 {
        self.answered.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

impl TransactionChecker for CountingChecker {
    async fn check(&self, request: &CheckRequest) -> LocalTransactionState {
        *self
            .answered
            .lock()
            .unwrap()
            .entry(request.transaction_id.clone())
            .or_default() += 1;
        self.answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_messages_are_invisible_commit_is_exactly_once_and_decisions_are_fenced() -> Result<()>
{
    let mut cluster = Cluster::start(3, options("30s", "30s", 15, "1h")).await?;
    let client = cluster.client()?;
    client
        .create_topic("pay", TopicType::Transaction, 2)
        .await?;
    client.create_topic("plain", TopicType::Normal, 2).await?;

    // Phase 1: message type is enforced both ways.
    let e = client
        .send(SendRequest {
            topic: "pay".into(),
            ..Default::default()
        })
        .await
        .expect_err("plain to txn topic");
    ensure!(
        e.code == "failed_precondition" && e.message.contains("transaction topic"),
        "{e:?}"
    );
    let producer = TransactionProducer::new(client.clone(), "orders");
    let e = producer
        .send_half(half("plain", "x"), None)
        .await
        .expect_err("half to normal topic");
    ensure!(
        e.code == "failed_precondition" && e.message.contains("--type transaction"),
        "{e:?}"
    );

    // Phase 2: a half message is invisible on every node.
    let a = producer.send_half(half("pay", "order 1"), None).await?;
    let clients: Vec<Client> = [1, 2, 3]
        .iter()
        .map(|id| cluster.client_of(*id))
        .collect::<Result<_>>()?;
    holds_for(
        "the half message invisible on every node",
        Duration::from_millis(500),
        || {
            let clients = clients.clone();
            async move {
                for c in &clients {
                    if !visible_ids(c, "pay").await?.is_empty() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        },
    )
    .await?;
    let listed = client.list_transactions("orders", 10).await?;
    ensure!(
        listed.transactions.len() == 1
            && listed.transactions[0].state == "pending"
            && listed.transactions[0].check_count == 0
    );

    // Phase 3: commit makes it visible on every node; a repeated commit is idempotent.
    let first = producer
        .end(&a.transaction_id, LocalTransactionState::Commit)
        .await?;
    ensure!(
        first.state == "committed" && !first.repeated && first.message_id == a.message_id,
        "{first:?}"
    );
    let again = producer
        .end(&a.transaction_id, LocalTransactionState::Commit)
        .await?;
    ensure!(
        again.repeated && again.offset == first.offset && again.queue == first.queue,
        "{again:?}"
    );
    for id in [1, 2, 3] {
        let c = cluster.client_of(id)?;
        let want = vec![a.message_id.clone()];
        wait_for(
            &format!("node {id} to show exactly the committed message"),
            Duration::from_secs(10),
            || {
                let (c, want) = (c.clone(), want.clone());
                async move { visible_ids(&c, "pay").await.ok().filter(|ids| *ids == want) }
            },
        )
        .await?;
    }

    // Phase 4: conflicting decisions are rejected naming the existing outcome.
    let e = producer
        .end(&a.transaction_id, LocalTransactionState::Rollback)
        .await
        .expect_err("rollback after commit");
    ensure!(
        e.code == "failed_precondition" && e.message.contains("committed"),
        "{e:?}"
    );
    let b = producer.send_half(half("pay", "order 2"), None).await?;
    let e = client
        .end_transaction(end(
            &b.transaction_id,
            "someone-else",
            LocalTransactionState::Commit,
        ))
        .await
        .expect_err("other group");
    ensure!(
        e.code == "permission_denied" && e.message.contains("orders"),
        "{e:?}"
    );
    let unknown = producer
        .end(&b.transaction_id, LocalTransactionState::Unknown)
        .await?;
    ensure!(unknown.state == "pending", "{unknown:?}");
    let rolled = producer
        .end(&b.transaction_id, LocalTransactionState::Rollback)
        .await?;
    ensure!(rolled.state == "rolled_back" && rolled.reason == "producer");
    let e = producer
        .end(&b.transaction_id, LocalTransactionState::Commit)
        .await
        .expect_err("commit after rollback");
    ensure!(
        e.code == "failed_precondition" && e.message.contains("rolled_back"),
        "{e:?}"
    );
    let unknown = producer
        .end("T00000000DEADBEEF00000000", LocalTransactionState::Commit)
        .await;
    expect_failure(unknown, "not_found", &[])?;
    // A malformed id is refused at the edge (it never reaches the log).
    let malformed = producer
        .end("T00000000DEADBEEF", LocalTransactionState::Commit)
        .await;
    expect_failure(malformed, "invalid_argument", &["not a transaction id"])?;

    // Phase 5: the rolled back message never appeared; history tells the story.
    ensure!(visible_ids(&client, "pay").await? == vec![a.message_id.clone()]);
    let shown = client.get_transaction(&b.transaction_id).await?;
    let events: Vec<&str> = shown.history.iter().map(|e| e.event.as_str()).collect();
    ensure!(
        events == ["half_stored", "answered", "decided"],
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_dies_after_the_half_message_is_committed_by_check_back() -> Result<()> {
    let mut cluster = Cluster::start(3, options("1s", "1s", 5, "1h")).await?;
    let client = cluster.client()?;
    client
        .create_topic("pay", TopicType::Transaction, 2)
        .await?;
    let endpoints = cluster.endpoints_csv();

    // Phase 1: a producer process sends the half message and exits without deciding.
    let (ok, out) = cluster.cli(&[
        "txn",
        "send",
        "pay",
        "--group",
        "shop",
        "--body",
        "paid",
        "--decide",
        "none",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok, "{out}");
    let sent: serde_json::Value = serde_json::from_str(out.trim())?;
    ensure!(sent["state"] == "pending", "{sent}");
    let id = sent["transaction_id"]
        .as_str()
        .context("transaction_id")?
        .to_string();

    // Phase 2: another instance of the group answers the check-back: commit.
    let checker = CountingChecker::new(LocalTransactionState::Commit);
    let _handle =
        TransactionProducer::new(client.clone(), "shop").start_checker(checker.clone(), "survivor");
    let t = wait_for_transaction(&client, &id, "committed", Duration::from_secs(15))
        .await
        .with_context(|| cluster.logs())?;
    ensure!(t.reason == "check" && t.check_count == 1, "{t:?}");
    ensure!(checker.count(&id) == 1);
    let message_id = sent["message_id"]
        .as_str()
        .context("message_id")?
        .to_string();
    for node in [1, 2, 3] {
        let c = cluster.client_of(node)?;
        let want = vec![message_id.clone()];
        wait_for(
            "the committed message on every node",
            Duration::from_secs(10),
            || {
                let (c, want) = (c.clone(), want.clone());
                async move { visible_ids(&c, "pay").await.ok().filter(|ids| *ids == want) }
            },
        )
        .await?;
    }

    // Phase 3: no further checks for a decided transaction.
    holds_for(
        "one check of the decided transaction",
        Duration::from_secs(2),
        || {
            let n = checker.count(&id);
            async move { Ok(n == 1) }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_checker_no_attempt_is_used_and_the_lifetime_rolls_back() -> Result<()> {
    let mut cluster = Cluster::start(3, options("500ms", "500ms", 3, "4s")).await?;
    let client = cluster.client()?;
    client
        .create_topic("pay", TopicType::Transaction, 1)
        .await?;
    let producer = TransactionProducer::new(client.clone(), "lonely");
    let a = producer
        .send_half(half("pay", "never decided"), None)
        .await?;

    // Phase 1: checks are due, but nobody of the group is connected: nothing is used up.
    holds_for("pending with no check used", Duration::from_secs(2), || {
        let client = client.clone();
        let id = a.transaction_id.clone();
        async move {
            let t = client.get_transaction(&id).await?;
            Ok(t.state == "pending" && t.check_count == 0)
        }
    })
    .await?;

    // Phase 2: at the maximum lifetime the leader rolls it back, reason `timeout`.
    let t = wait_for_transaction(
        &client,
        &a.transaction_id,
        "rolled_back",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(t.reason == "timeout" && t.check_count == 0, "{t:?}");
    ensure!(visible_ids(&client, "pay").await?.is_empty());
    ensure!(client.list_transactions("", 10).await?.pending_total == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_answers_exhaust_the_checks_and_roll_back() -> Result<()> {
    let mut cluster = Cluster::start(3, options("500ms", "500ms", 3, "1h")).await?;
    let client = cluster.client()?;
    client
        .create_topic("pay", TopicType::Transaction, 1)
        .await?;
    let checker = CountingChecker::new(LocalTransactionState::Unknown);
    let producer = TransactionProducer::new(client.clone(), "slow");
    let _handle = producer.start_checker(checker.clone(), "i1");
    let a = producer
        .send_half(half("pay", "still running"), None)
        .await?;

    let t = wait_for_transaction(
        &client,
        &a.transaction_id,
        "rolled_back",
        Duration::from_secs(15),
    )
    .await
    .with_context(|| cluster.logs())?;
    ensure!(t.reason == "check_exhausted" && t.check_count == 3, "{t:?}");
    ensure!(
        checker.count(&a.transaction_id) == 3,
        "answered {} checks",
        checker.count(&a.transaction_id)
    );
    let sent = t.history.iter().filter(|e| e.event == "check_sent").count();
    ensure!(sent == 3, "{:?}", t.history);
    ensure!(visible_ids(&client, "pay").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_continues_the_check_count_and_loses_no_decision() -> Result<()> {
    let mut cluster = Cluster::start(3, options("1s", "1s", 6, "1h")).await?;
    let client = cluster.client()?;
    client
        .create_topic("pay", TopicType::Transaction, 1)
        .await?;
    let checker = CountingChecker::new(LocalTransactionState::Unknown);
    let producer = TransactionProducer::new(client.clone(), "g");
    let _handle = producer.start_checker(checker.clone(), "i1");
    let committed = producer
        .send_half(half("pay", "decided before the crash"), None)
        .await?;
    producer
        .end(&committed.transaction_id, LocalTransactionState::Commit)
        .await?;
    let a = producer
        .send_half(half("pay", "checked across a failover"), None)
        .await?;

    // Phase 1: a couple of checks happen under the first leader.
    wait_for("two checks", Duration::from_secs(15), || {
        let client = client.clone();
        let id = a.transaction_id.clone();
        async move {
            client
                .get_transaction(&id)
                .await
                .ok()
                .filter(|t| t.check_count >= 2)
        }
    })
    .await?;

    // Phase 2: SIGKILL the leader in the middle of checking.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
    cluster.node(leader).kill();
    cluster.wait_for_leader(Duration::from_secs(10)).await?;

    // Phase 3: the new leader continues the count: exactly max_checks in total, then rollback.
    let client = cluster.client()?;
    let t = wait_for_transaction(
        &client,
        &a.transaction_id,
        "rolled_back",
        Duration::from_secs(30),
    )
    .await
    .with_context(|| cluster.logs())?;
    ensure!(t.reason == "check_exhausted" && t.check_count == 6, "{t:?}");
    let answered = checker.count(&a.transaction_id);
    ensure!(
        answered <= 6,
        "{answered} checks answered for one transaction (max 6)"
    );
    ensure!(answered >= 4, "only {answered} checks reached the checker");

    // Phase 4: the decision taken before the crash is intact on the survivors.
    let c = client.get_transaction(&committed.transaction_id).await?;
    ensure!(c.state == "committed" && c.reason == "producer");
    ensure!(visible_ids(&client, "pay").await? == vec![committed.message_id.clone()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_cli_commands_print_the_documented_json() -> Result<()> {
    let cluster = Cluster::start(3, options("500ms", "500ms", 5, "1h")).await?;
    let endpoints = cluster.endpoints_csv();
    let run = |args: &[&str]| -> Result<serde_json::Value> {
        let mut full = args.to_vec();
        full.extend(["--endpoints", endpoints.as_str(), "--output", "json"]);
        let (ok, out) = cluster.cli(&full)?;
        ensure!(ok, "{args:?} failed: {out}");
        Ok(serde_json::from_str(out.trim())?)
    };
    run(&["topic", "create", "pay", "--type", "transaction"])?;

    // txn send: the documented fields and states.
    let committed = run(&["txn", "send", "pay", "--group", "cli", "--body", "one"])?;
    for field in ["transaction_id", "message_id", "topic", "state"] {
        ensure!(
            !committed[field].is_null(),
            "txn send lacks {field}: {committed}"
        );
    }
    ensure!(committed["state"] == "committed");
    let pending = run(&[
        "txn", "send", "pay", "--group", "cli", "--body", "two", "--decide", "none",
    ])?;
    ensure!(pending["state"] == "pending");
    let id = pending["transaction_id"]
        .as_str()
        .context("id")?
        .to_string();

    // txn list and show.
    let list = run(&["txn", "list"])?;
    let first = &list["transactions"][0];
    for field in [
        "transaction_id",
        "group",
        "topic",
        "state",
        "check_count",
        "age_seconds",
    ] {
        ensure!(!first[field].is_null(), "txn list lacks {field}: {list}");
    }
    ensure!(first["transaction_id"] == id.as_str() && first["state"] == "pending");

    // txn checker: one JSON object per answered check.
    let mut checker = std::process::Command::new(&cluster.bin)
        .args([
            "txn",
            "checker",
            "--group",
            "cli",
            "--answer",
            "rollback",
            "--output",
            "json",
            "--endpoints",
            &endpoints,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = checker.stdout.take().context("checker stdout")?;
    // Killed however this test ends.
    let mut checker = KillOnDrop(checker);
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().next()
    });
    let line = tokio::time::timeout(Duration::from_secs(15), line).await;
    let line = line
        .context("no check answered in time")??
        .context("checker printed nothing")??;
    let answered: serde_json::Value = serde_json::from_str(&line)?;
    ensure!(
        answered["transaction_id"] == id.as_str() && answered["answer"] == "rollback",
        "{answered}"
    );

    let shown = wait_for("the rollback by check", Duration::from_secs(10), || {
        let out = run(&["txn", "show", &id]).ok();
        async move { out.filter(|v| v["state"] == "rolled_back") }
    })
    .await;
    // Only now stop the checker: the answer it printed may still have been on its way.
    checker.stop();
    let shown = shown?;
    ensure!(
        shown["reason"] == "check" && shown["history"].as_array().is_some_and(|h| h.len() >= 3),
        "{shown}"
    );

    // txn end: a repeated decision reports the original outcome; a conflicting one fails in JSON.
    let cid = committed["transaction_id"].as_str().context("id")?;
    let again = run(&["txn", "end", cid, "--group", "cli", "commit"])?;
    ensure!(
        again["state"] == "committed" && again["repeated"] == true,
        "{again}"
    );
    let (ok, out) = cluster.cli(&[
        "txn",
        "end",
        cid,
        "--group",
        "cli",
        "rollback",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(
        !ok && out.contains("failed_precondition") && out.contains("committed"),
        "{out}"
    );
    Ok(())
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A batching producer: 120 concurrent transactions travel in batched requests; every one gets
/// its own outcome (commits visible, rollbacks not), and a batch item that fails (a decision for
/// an unknown id) fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_transactions_each_get_their_own_outcome() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("bt", TopicType::Transaction, 2).await?;
    let producer = TransactionProducer::new(client.clone(), "batched")
        .with_batching(txmq_client::BatchOptions::default());
    let runs = (0..120).map(|i| {
        let producer = producer.clone();
        tokio::spawn(async move {
            let request = SendHalfRequest {
                topic: "bt".into(),
                body: format!("t{i}").into_bytes().into(),
                ..Default::default()
            };
            let decision = if i % 3 == 0 {
                LocalTransactionState::Rollback
            } else {
                LocalTransactionState::Commit
            };
            producer
                .send_in_transaction(request, |_| async move { decision })
                .await
                .map(|r| (i, r))
        })
    });
    let mut committed = 0;
    for run in runs {
        let (i, r) = run.await??;
        let end = r.end.context("decision not delivered")?;
        let want = if i % 3 == 0 {
            "rolled_back"
        } else {
            "committed"
        };
        ensure!(end.state == want, "transaction {i}: {end:?}");
        committed += usize::from(end.state == "committed");
    }
    let mut visible = 0;
    for q in 0..2 {
        visible += client
            .read(ReadRequest {
                topic: "bt".into(),
                queue: Some(q),
                from_offset: 0,
                max: 1000,
            })
            .await?
            .len();
    }
    ensure!(
        visible == committed && committed == 80,
        "{visible} visible, {committed} committed"
    );

    // A half message to "bt" of `group` (the producer puts its own group in).
    let half_of = |group: &str| SendHalfRequest {
        topic: "bt".into(),
        group: group.into(),
        body: b"x".to_vec().into(),
        ..Default::default()
    };
    let half = producer.send_half(half_of(""), None).await?;
    let decide = |id: &str| EndTransactionRequest {
        transaction_id: id.into(),
        group: "batched".into(),
        decision: LocalTransactionState::Commit.to_pb() as i32,
        operator: false,
    };
    let results = client
        .end_transaction_batch(vec![
            decide("T00000000DEADBEEF00000000"),
            decide(&half.transaction_id),
        ])
        .await?;
    ensure!(results.len() == 2, "{results:?}");
    ensure!(
        results[0].as_ref().is_err_and(|e| e.code == "not_found"),
        "{results:?}"
    );
    ensure!(
        results[1].as_ref().is_ok_and(|r| r.state == "committed"),
        "{results:?}"
    );

    // Halves and decisions in one request (what the batching producer sends): each item gets
    // its own outcome, in order, a bad item failing alone.
    let pending = producer.send_half(half_of(""), None).await?;
    let (halves, ends) = client
        .transaction_batch(
            vec![half_of("batched"), half_of("bad group!")],
            vec![decide(&pending.transaction_id), decide("T-no-such")],
        )
        .await?;
    ensure!(halves.len() == 2 && ends.len() == 2, "{halves:?} {ends:?}");
    ensure!(
        halves[0]
            .as_ref()
            .is_ok_and(|h| h.transaction_id.starts_with('T')),
        "{halves:?}"
    );
    ensure!(
        halves[1]
            .as_ref()
            .is_err_and(|e| e.code == "invalid_argument"),
        "{halves:?}"
    );
    ensure!(
        ends[0].as_ref().is_ok_and(|r| r.state == "committed"),
        "{ends:?}"
    );
    ensure!(
        ends[1]
            .as_ref()
            .is_err_and(|e| e.code == "invalid_argument"),
        "a malformed id fails alone: {ends:?}"
    );
    let stored = client
        .get_transaction(&halves[0].as_ref().expect("checked").transaction_id)
        .await?;
    ensure!(stored.state == "pending", "{stored:?}");
    let empty = client.transaction_batch(Vec::new(), Vec::new()).await;
    ensure!(
        empty.as_ref().is_err_and(|e| e.code == "invalid_argument"),
        "an empty batch is refused: {empty:?}"
    );
    Ok(())
}
