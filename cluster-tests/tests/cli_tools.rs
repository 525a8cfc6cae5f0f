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
