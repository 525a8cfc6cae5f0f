//! The everyday command-line tools: following a topic or a group until Ctrl-C with feedback
//! while nothing arrives, a checker that says where it is connected, human times in text.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Result, ensure};
use txmq_client::{SendRequest, TopicType};
use txmq_cluster_tests::{Cluster, ClusterOptions, wait_for};

/// A `txmq` command running in the background, its stdout and stderr in files; killed on drop.
struct Running {
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

impl Running {
    fn start(bin: &Path, args: &[String]) -> Result<Running> {
        let (out, err) = (
            tempfile::NamedTempFile::new()?,
            tempfile::NamedTempFile::new()?,
        );
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::from(out.reopen()?))
            .stderr(Stdio::from(err.reopen()?))
            .spawn()?;
        Ok(Running { child, out, err })
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.err.path()).unwrap_or_default()
    }

    async fn wait_for_text(&self, what: &str, text: &str, in_stderr: bool) -> Result<()> {
        wait_for(what, Duration::from_secs(20), || async {
            let all = if in_stderr {
                self.stderr()
            } else {
                self.stdout()
            };
            all.contains(text).then_some(())
        })
        .await
        .map_err(|e| {
            e.context(format!(
                "stdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            ))
        })
    }

    /// Ctrl-C; it must exit successfully within 10 s.
    async fn interrupt(&mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child with a valid signal has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let child = &mut self.child;
        let status = wait_for("the command to exit", Duration::from_secs(10), || {
            let done = child.try_wait().ok().flatten();
            async move { done }
        })
        .await?;
        ensure!(status.success(), "exited with {status}");
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_modes_checker_feedback_and_human_times() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    let endpoints = cluster.endpoints_csv();
    let bin = cluster.bin.clone();
    client.create_topic("feed", TopicType::Normal, 2).await?;
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--endpoints".to_string(), endpoints.clone()]);
        v
    };

    // Phase 1: consume --follow and read --follow say they wait, then print what arrives.
    let mut consume = Running::start(
        &bin,
        &with(&["consume", "feed", "--group", "g", "--follow"]),
    )?;
    let mut read = Running::start(&bin, &with(&["read", "feed", "--follow"]))?;
    consume
        .wait_for_text("consume to say it waits", "waiting for messages", true)
        .await?;
    read.wait_for_text("read to say it waits", "waiting for messages", true)
        .await?;
    for body in ["first", "second"] {
        let req = SendRequest {
            topic: "feed".into(),
            body: body.as_bytes().to_vec().into(),
            ..Default::default()
        };
        client.send(req).await?;
    }
    for body in ["first", "second"] {
        consume
            .wait_for_text("consume --follow to print it", body, false)
            .await?;
        read.wait_for_text("read --follow to print it", body, false)
            .await?;
    }
    consume.interrupt().await?;
    read.interrupt().await?;

    // Phase 2: the checker says it is connected to the leader.
    client
        .create_topic("pay", TopicType::Transaction, 1)
        .await?;
    let checker_args = with(&["txn", "checker", "--group", "shop", "--answer", "commit"]);
    let mut checker = Running::start(&bin, &checker_args)?;
    checker
        .wait_for_text(
            "the checker to say it is connected",
            "connected to the leader",
            true,
        )
        .await?;
    checker.interrupt().await?;

    // Phase 3: `txn show` gives times as dates in text, epoch milliseconds in JSON.
    let (ok, sent) = cluster.cli(&[
        "txn",
        "send",
        "pay",
        "--group",
        "shop",
        "--body",
        "x",
        "--decide",
        "none",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok, "{sent}");
    let id = serde_json::from_str::<serde_json::Value>(sent.trim())?["transaction_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (ok, shown) = cluster.cli(&["txn", "show", &id, "--endpoints", &endpoints])?;
    let year = shown.contains("created 20") && shown.contains("Z  half message stored");
    ensure!(ok && year, "text times are dates: {shown}");
    let (_, json) = cluster.cli(&[
        "txn",
        "show",
        &id,
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    let doc: serde_json::Value = serde_json::from_str(json.trim())?;
    ensure!(
        doc["created_at_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 1_700_000_000_000),
        "{doc}"
    );
    Ok(())
}

/// Every queue directory a node holds.
fn queue_dirs(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("queues"))
        .map(|d| {
            d.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_updated_and_deleted_and_groups_forgotten() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    let endpoints = cluster.endpoints_csv();
    client.create_topic("old", TopicType::Normal, 2).await?;
    for i in 0..5 {
        let body = format!("m{i}").into_bytes().into();
        client
            .send(SendRequest {
                topic: "old".into(),
                body,
                ..Default::default()
            })
            .await?;
    }
    let receive = txmq_client::ReceiveRequest {
        group: "g".into(),
        topic: "old".into(),
        max: 2,
        invisible_ms: 30_000,
        wait_ms: 0,
    };
    ensure!(client.receive(receive).await?.len() == 2);

    // Phase 1: retention is updated in place.
    let (ok, out) = cluster.cli(&[
        "topic",
        "update",
        "old",
        "--retention",
        "2h",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok, "{out}");
    ensure!(client.describe_topic("old").await?.retention_ms == 7_200_000);

    // Phase 2: a topic with a pending transaction is not deleted; once decided it is.
    client
        .create_topic("pay", TopicType::Transaction, 1)
        .await?;
    let producer = txmq_client::TransactionProducer::new(client.clone(), "shop");
    let half = txmq_client::SendHalfRequest {
        topic: "pay".into(),
        body: b"x".to_vec().into(),
        ..Default::default()
    };
    let pending = producer.send_half(half, None).await?;
    let refused = client.delete_topic("pay").await;
    txmq_cluster_tests::expect_failure(refused, "failed_precondition", &["pending"])?;
    producer
        .end(
            &pending.transaction_id,
            txmq_client::LocalTransactionState::Commit,
        )
        .await?;
    ensure!(client.delete_topic("pay").await? == 1);

    // Phase 3: the CLI asks for --yes, then deletes messages and groups on every node.
    let (ok, out) = cluster.cli(&["topic", "delete", "old", "--endpoints", &endpoints])?;
    ensure!(!ok, "deleted without --yes: {out}");
    let (ok, out) = cluster.cli(&[
        "topic",
        "delete",
        "old",
        "--yes",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok && out.contains("\"messages\":5"), "{out}");
    txmq_cluster_tests::expect_failure(client.describe_group("g", "old").await, "not_found", &[])?;
    let data_dirs: Vec<std::path::PathBuf> =
        cluster.nodes.values().map(|n| n.data_dir.clone()).collect();
    wait_for(
        "every node to delete the topics' files",
        Duration::from_secs(15),
        || {
            let dirs = data_dirs.clone();
            async move { dirs.iter().all(|d| queue_dirs(d) == 0).then_some(()) }
        },
    )
    .await?;

    // Phase 4: the name is free again and starts empty; a group is forgotten on request.
    client.create_topic("old", TopicType::Normal, 2).await?;
    let read = client
        .read(txmq_client::ReadRequest {
            topic: "old".into(),
            ..Default::default()
        })
        .await?;
    ensure!(
        read.is_empty(),
        "a recreated topic holds old messages: {read:?}"
    );
    client
        .send(SendRequest {
            topic: "old".into(),
            body: b"new".to_vec().into(),
            ..Default::default()
        })
        .await?;
    let receive = txmq_client::ReceiveRequest {
        group: "h".into(),
        topic: "old".into(),
        max: 10,
        invisible_ms: 30_000,
        wait_ms: 2_000,
    };
    ensure!(client.receive(receive).await?.len() == 1);
    let (ok, out) = cluster.cli(&["group", "delete", "h", "old", "--endpoints", &endpoints])?;
    ensure!(ok, "{out}");
    txmq_cluster_tests::expect_failure(client.delete_group("h", "old").await, "not_found", &["h"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_id_and_by_key() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    let endpoints = cluster.endpoints_csv();
    client.create_topic("orders", TopicType::Normal, 3).await?;
    let mut keyed = Vec::new();
    for i in 0..30 {
        let key = if i % 10 == 0 { "order-7" } else { "other" };
        let req = SendRequest {
            topic: "orders".into(),
            key: key.into(),
            body: format!("b{i}").into_bytes().into(),
            ..Default::default()
        };
        let sent = client.send(req).await?;
        if key == "order-7" {
            keyed.push(sent.message_id);
        }
    }
    let run = |args: &[&str]| -> Result<(bool, String)> {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--output", "json", "--endpoints", &endpoints]);
        cluster.cli(&full)
    };

    // By id, on any node: every field, for a message in the middle of its queue.
    let (ok, out) = run(&["message", "show", &keyed[1]])?;
    let doc: serde_json::Value = serde_json::from_str(out.trim())?;
    ensure!(
        ok && doc["message_id"] == keyed[1].as_str()
            && doc["key"] == "order-7"
            && doc["body"] == "b10",
        "{out}"
    );

    // A transactional message comes with its transaction's history.
    client
        .create_topic("pay", TopicType::Transaction, 1)
        .await?;
    let producer = txmq_client::TransactionProducer::new(client.clone(), "shop");
    let half = txmq_client::SendHalfRequest {
        topic: "pay".into(),
        body: b"paid".to_vec().into(),
        ..Default::default()
    };
    let sent = producer.send_half(half, None).await?;
    let (ok, pending) = run(&["message", "show", &sent.message_id])?;
    ensure!(
        !ok && pending.contains("pending"),
        "a pending transaction's message is not shown: {pending}"
    );
    producer
        .end(
            &sent.transaction_id,
            txmq_client::LocalTransactionState::Commit,
        )
        .await?;
    let (ok, out) = run(&["message", "show", &sent.message_id])?;
    let doc: serde_json::Value = serde_json::from_str(out.trim())?;
    ensure!(ok && doc["transaction"]["state"] == "committed", "{out}");
    ensure!(
        doc["transaction"]["history"]
            .as_array()
            .is_some_and(|h| h.len() >= 2),
        "{out}"
    );

    // Bad and unknown ids say so.
    let (ok, out) = run(&["message", "show", "nope"])?;
    ensure!(!ok && out.contains("invalid_argument"), "{out}");
    let (ok, out) = run(&["message", "show", "0000000000FFFFFF00000000"])?;
    ensure!(!ok && out.contains("not_found"), "{out}");

    // By key: exactly the keyed messages.
    let (ok, out) = run(&["message", "find", "orders", "--key", "order-7"])?;
    let found: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m["message_id"].as_str().map(str::to_string))
        .collect();
    let mut expected = keyed.clone();
    expected.sort();
    let mut got = found.clone();
    got.sort();
    ensure!(ok && got == expected, "found {found:?}, sent {keyed:?}");
    Ok(())
}
