//! Foundation: a real 3-node cluster forms, replicates, fails over, catches up, rejoins through
//! a snapshot, and rejects bad input without changing anything.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use txmq_client::{AddNodeRequest, Client, ReadRequest, SendRequest, TopicType};
use txmq_cluster_tests::{
    Cluster, ClusterOptions, expect_failure, http_get, ids_served_by, wait_for,
};

fn msg(topic: &str, body: String, key: &str) -> SendRequest {
    SendRequest {
        topic: topic.into(),
        body: body.into_bytes().into(),
        key: key.into(),
        ..Default::default()
    }
}

async fn wait_until_node_serves(
    cluster: &Cluster,
    id: u64,
    topic: &str,
    expected: &BTreeSet<String>,
) -> Result<()> {
    let client = cluster.client_of(id)?;
    wait_for(
        &format!("node {id} to serve {} messages", expected.len()),
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                ids_served_by(&client, topic)
                    .await
                    .filter(|ids| ids == expected)
                    .map(|_| ())
            }
        },
    )
    .await
    .with_context(|| cluster.logs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_and_every_node_serves_every_acknowledged_message() -> Result<()> {
    // Phase 1: three voters elect a leader.
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let status = cluster.client()?.cluster_status().await?;
    ensure!(status.nodes.len() == 3, "status: {status:?}");
    ensure!(
        status.nodes.iter().filter(|n| n.role == "leader").count() == 1,
        "status: {status:?}"
    );
    ensure!(
        status
            .nodes
            .iter()
            .all(|n| n.voter && !n.client_addr.is_empty()),
        "status: {status:?}"
    );

    // Phase 2: sends through each node (followers forward to the leader).
    cluster
        .client()?
        .create_topic("orders", TopicType::Normal, 4)
        .await?;
    let mut acknowledged = BTreeSet::new();
    for id in [1, 2, 3] {
        let client = cluster.client_of(id)?;
        for i in 0..10 {
            let r = client
                .send(msg("orders", format!("via {id} #{i}"), &format!("k{i}")))
                .await?;
            ensure!(r.topic == "orders" && r.queue < 4);
            acknowledged.insert(r.message_id);
        }
    }
    ensure!(acknowledged.len() == 30, "message ids must be unique");

    // Phase 3: every node serves every acknowledged message from its own state.
    for id in [1, 2, 3] {
        wait_until_node_serves(&cluster, id, "orders", &acknowledged).await?;
    }

    // Phase 4: the same key always lands in the same queue; offsets are dense per queue.
    let all = cluster
        .client_of(1)?
        .read(ReadRequest {
            topic: "orders".into(),
            queue: None,
            from_offset: 0,
            max: 1000,
        })
        .await?;
    for key in ["k0", "k5"] {
        let queues: BTreeSet<u32> = all
            .iter()
            .filter(|m| m.key == key)
            .map(|m| m.queue)
            .collect();
        ensure!(queues.len() == 1, "key {key} spread over queues {queues:?}");
    }
    let topic = cluster.client_of(2)?.describe_topic("orders").await?;
    let total: u64 = topic.queue_info.iter().map(|q| q.next_offset).sum();
    ensure!(total == 30, "queues hold {total} offsets, expected 30");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_fails_over_loses_nothing_and_the_node_catches_up() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("events", TopicType::Normal, 2).await?;
    let mut acknowledged = BTreeSet::new();
    for i in 0..20 {
        acknowledged.insert(
            client
                .send(msg("events", format!("before {i}"), ""))
                .await?
                .message_id,
        );
    }

    // Phase 1: SIGKILL the leader; the survivors elect a new one within seconds.
    let old_leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
    let killed_at = Instant::now();
    cluster.node(old_leader).kill();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let failover = killed_at.elapsed();
    ensure!(new_leader != old_leader);
    eprintln!("failover took {failover:?}");

    // Phase 2: every acknowledged message is still served by each survivor.
    let survivors: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != old_leader)
        .collect();
    for id in &survivors {
        wait_until_node_serves(&cluster, *id, "events", &acknowledged).await?;
    }

    // Phase 3: sends continue (the client fails over across endpoints by itself).
    for i in 0..20 {
        acknowledged.insert(
            client
                .send(msg("events", format!("after {i}"), ""))
                .await?
                .message_id,
        );
    }

    // Phase 4: the killed node restarts from its data dir and catches up.
    let bin = cluster.bin.clone();
    cluster.node(old_leader).start(&bin)?;
    wait_until_node_serves(&cluster, old_leader, "events", &acknowledged).await?;
    let status = cluster.client_of(old_leader)?.cluster_status().await?;
    ensure!(
        status.nodes.iter().all(|n| n.role != "unreachable"),
        "status: {status:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_replaced_under_a_new_id_catches_up_through_a_snapshot() -> Result<()> {
    // Snapshots every 20 entries, keeping only 5: a newcomer cannot replay the log from 1.
    let options = ClusterOptions {
        extra_args: ["--snapshot-logs", "20", "--logs-to-keep", "5"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("audit", TopicType::Normal, 3).await?;
    let mut acknowledged = BTreeSet::new();
    for i in 0..120 {
        acknowledged.insert(
            client
                .send(msg("audit", format!("entry {i} {}", "x".repeat(200)), ""))
                .await?
                .message_id,
        );
    }

    // Phase 1: node 3 loses its disk; it is removed, and its id is retired.
    cluster.node(3).wipe()?;
    let client = cluster.client()?;
    let status = client.remove_node(3).await?;
    ensure!(
        status.nodes.iter().all(|n| n.id != 3),
        "node 3 still a member: {status:?}"
    );
    let reuse = client
        .add_node(AddNodeRequest {
            id: 3,
            peer_addr: "127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("a retired id must not be reused");
    ensure!(
        reuse.code == "failed_precondition" && reuse.message.contains("retired"),
        "{reuse:?}"
    );

    // Phase 2: a fresh node 4 joins as a learner and is promoted after catching up.
    let (peer_addr, client_addr) = {
        let n4 = cluster.spawn_joiner(4)?;
        (n4.peer_addr.clone(), n4.client_addr.clone())
    };
    let status = client
        .add_node(AddNodeRequest {
            id: 4,
            peer_addr,
            client_addr,
            learner_only: false,
        })
        .await?;
    ensure!(
        status.nodes.iter().any(|n| n.id == 4 && n.voter),
        "node 4 not a voter: {status:?}"
    );

    // Phase 3: it serves everything, and it got there by installing a snapshot.
    wait_until_node_serves(&cluster, 4, "audit", &acknowledged).await?;
    let log = cluster.node(4).log();
    ensure!(
        log.contains("installing snapshot"),
        "node 4 did not install a snapshot:\n{log}"
    );

    // Phase 4: the new voter takes part in commits: sends still work with node 1 stopped.
    cluster.node(1).kill();
    cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let r = cluster
        .client()?
        .send(msg("audit", "after membership change".into(), ""))
        .await?;
    acknowledged.insert(r.message_id);
    wait_until_node_serves(&cluster, 4, "audit", &acknowledged).await?;
    Ok(())
}

/// A log that grows past `--snapshot-log-bytes` gets every node a snapshot, long before the
/// entry count (`--snapshot-logs`) would; and nothing acknowledged is lost by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_past_its_size_limit_is_snapshotted_on_every_node() -> Result<()> {
    let options = ClusterOptions {
        extra_args: [
            "--snapshot-log-bytes",
            "1048576",
            "--snapshot-logs",
            "1000000",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("sized", TopicType::Normal, 2).await?;
    // One at a time, so each is an entry of its own: 1,200 entries, ~2.5 MB of log.
    let mut acknowledged = BTreeSet::new();
    for i in 0..1_200 {
        let body = format!("{i} {}", "y".repeat(2_000));
        acknowledged.insert(client.send(msg("sized", body, "")).await?.message_id);
    }
    let metrics_addrs: Vec<(u64, String)> = cluster
        .nodes
        .iter()
        .map(|(id, n)| (*id, n.metrics_addr.clone()))
        .collect();
    for (id, addr) in metrics_addrs {
        wait_for(
            &format!("node {id} to build a snapshot"),
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move {
                    let (_, body) = http_get(&addr, "/metrics").await.ok()?;
                    body.lines()
                        .find_map(|l| l.strip_prefix("txmq_raft_snapshots_built_total "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|built| *built >= 1.0)
                }
            },
        )
        .await?;
    }
    for id in [1, 2, 3] {
        wait_until_node_serves(&cluster, id, "sized", &acknowledged).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() -> Result<()> {
    let options = ClusterOptions {
        extra_args: ["--max-message-bytes", "1024"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("t1", TopicType::Normal, 2).await?;
    client.send(msg("t1", "ok".into(), "")).await?;
    let before_topics = client.list_topics().await?;

    // Names: empty, bad characters, too long.
    for (name, needle) in [
        ("", "empty"),
        ("a b", "only [A-Za-z0-9._-]"),
        (&"n".repeat(129)[..], "maximum is 128"),
    ] {
        let e = client
            .create_topic(name, TopicType::Normal, 1)
            .await
            .expect_err("bad name accepted");
        ensure!(
            e.code == "invalid_argument" && e.message.contains(needle),
            "{name:?}: {e:?}"
        );
    }
    let queues_1000 = client.create_topic("q", TopicType::Normal, 1000).await;
    expect_failure(queues_1000, "invalid_argument", &[])?;
    let duplicate = client.create_topic("t1", TopicType::Normal, 2).await;
    expect_failure(duplicate, "already_exists", &["t1"])?;
    let oversized = client.send(msg("t1", "x".repeat(2000), "")).await;
    expect_failure(oversized, "invalid_argument", &["maximum is 1024"])?;
    // Unknown topic, for send and read.
    let unknown = client.send(msg("nope", "x".into(), "")).await;
    expect_failure(unknown, "not_found", &["nope"])?;
    let read_unknown = client
        .read(ReadRequest {
            topic: "nope".into(),
            ..Default::default()
        })
        .await;
    expect_failure(read_unknown, "not_found", &[])?;
    let unknown_queue = client
        .read(ReadRequest {
            topic: "t1".into(),
            queue: Some(9),
            ..Default::default()
        })
        .await;
    expect_failure(unknown_queue, "invalid_argument", &["queue 9"])?;
    // Too many properties.
    let mut props = msg("t1", "x".into(), "");
    props.properties = (0..100)
        .map(|i| (format!("p{i}"), "v".to_string()))
        .collect();
    expect_failure(
        client.send(props).await,
        "invalid_argument",
        &["properties"],
    )?;

    // Malformed CLI flags: a JSON error and a failing exit status.
    let endpoints = cluster.endpoints_csv();
    for args in [
        vec![
            "topic", "create", "x", "--type", "bogus", "--output", "json",
        ],
        vec!["send", "t1", "--output", "json"],
        vec!["read", "t1", "--from", "minus-one", "--output", "json"],
        vec![
            "send",
            "t1",
            "--body",
            "b",
            "--property",
            "novalue",
            "--output",
            "json",
        ],
    ] {
        let mut full = args.clone();
        full.extend(["--endpoints", endpoints.as_str()]);
        let (ok, out) = cluster.cli(&full)?;
        ensure!(!ok, "{args:?} succeeded");
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("{args:?}: {out}"))?;
        ensure!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{args:?}: {out}"
        );
    }
    let (ok, out) = cluster.cli(&["serve", "--node-id", "0"])?;
    ensure!(!ok, "node id 0 accepted: {out}");

    // Nothing changed, on any node.
    for id in [1, 2, 3] {
        let c = cluster.client_of(id)?;
        let topics = wait_for("topics to settle", Duration::from_secs(10), || {
            let c = c.clone();
            let before = before_topics.clone();
            async move { c.list_topics().await.ok().filter(|t| *t == before) }
        })
        .await?;
        ensure!(topics.len() == 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_output_has_the_documented_fields() -> Result<()> {
    let cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let endpoints = cluster.endpoints_csv();
    let run = |args: &[&str]| -> Result<String> {
        let mut full = args.to_vec();
        full.extend(["--endpoints", endpoints.as_str(), "--output", "json"]);
        let (ok, out) = cluster.cli(&full)?;
        ensure!(ok, "{args:?} failed: {out}");
        Ok(out)
    };
    run(&[
        "topic", "create", "cli", "--type", "normal", "--queues", "2",
    ])?;
    let sent: serde_json::Value = serde_json::from_str(&run(&[
        "send",
        "cli",
        "--body",
        "héllo",
        "--key",
        "k",
        "--tag",
        "t",
        "--property",
        "a=1",
    ])?)?;
    for field in ["message_id", "topic", "queue", "offset"] {
        ensure!(!sent[field].is_null(), "send lacks {field}: {sent}");
    }
    let read = run(&["read", "cli"])?;
    let lines: Vec<serde_json::Value> = read
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(lines.len() == 1, "{read}");
    let m = &lines[0];
    for field in [
        "message_id",
        "topic",
        "queue",
        "offset",
        "key",
        "tag",
        "body",
        "properties",
        "delivery_attempt",
    ] {
        ensure!(!m[field].is_null(), "read lacks {field}: {m}");
    }
    ensure!(
        m["body"] == "héllo"
            && m["properties"]["a"] == "1"
            && m["message_id"] == sent["message_id"],
        "{m}"
    );
    let status: serde_json::Value = serde_json::from_str(&run(&["cluster", "status"])?)?;
    ensure!(
        status["leader_id"].as_u64().is_some_and(|l| l > 0),
        "{status}"
    );
    let nodes = status["nodes"].as_array().context("nodes")?;
    ensure!(nodes.len() == 3);
    for field in [
        "id",
        "role",
        "client_addr",
        "peer_addr",
        "commit_index",
        "applied_index",
    ] {
        ensure!(
            nodes.iter().all(|n| !n[field].is_null()),
            "status lacks {field}: {status}"
        );
    }
    let list: serde_json::Value = serde_json::from_str(&run(&["topic", "list"])?)?;
    ensure!(
        list["topics"][0]["name"] == "cli" && list["topics"][0]["type"] == "normal",
        "{list}"
    );
    Ok(())
}

/// `txmq bench` against a real cluster: every scenario prints the documented JSON, counts what
/// it says it counts (committed transactions only, under a rollback ratio), and a `--rate`
/// run starts no more operations than its schedule allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_prints_the_documented_summary_and_keeps_to_its_rate() -> Result<()> {
    let cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let endpoints = cluster.endpoints_csv();
    let bench = |args: &[&str]| -> Result<serde_json::Value> {
        let mut full = vec!["bench"];
        full.extend(args);
        full.extend(["--duration", "2s", "--endpoints", endpoints.as_str()]);
        full.extend(["--output", "json"]);
        let (ok, out) = cluster.cli(&full)?;
        ensure!(ok, "{args:?} failed: {out}");
        let summary: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("{args:?} printed no JSON summary: {out}"))?;
        for field in ["scenario", "duration_s", "ok", "errors", "throughput_per_s"] {
            ensure!(
                !summary[field].is_null(),
                "{args:?} lacks {field}: {summary}"
            );
        }
        for q in ["p50", "p90", "p99", "p999", "max"] {
            ensure!(
                summary["latency_ms"][q].as_f64().is_some_and(|v| v > 0.0),
                "{args:?} lacks latency {q}: {summary}"
            );
        }
        ensure!(summary["errors"] == 0, "{args:?} had errors: {summary}");
        Ok(summary)
    };
    let counted = |s: &serde_json::Value| -> f64 {
        s["throughput_per_s"].as_f64().unwrap_or(0.0) * s["duration_s"].as_f64().unwrap_or(0.0)
    };

    let publish = bench(&[
        "publish",
        "--topic",
        "b",
        "--concurrency",
        "8",
        "--batching",
    ])?;
    let sent = publish["ok"].as_u64().context("ok")?;
    ensure!(
        sent > 0 && (counted(&publish) - sent as f64).abs() < 0.5,
        "{publish}"
    );

    let consume = bench(&["consume", "--topic", "b", "--concurrency", "2"])?;
    let consumed = counted(&consume).round() as u64;
    ensure!(
        consumed > 0 && consumed <= sent,
        "{consume} after {sent} sent"
    );

    // A deterministic half of the transactions roll back: only the commits are counted.
    let txn = bench(&[
        "txn",
        "--topic",
        "bt",
        "--concurrency",
        "8",
        "--rollback-ratio",
        "0.5",
    ])?;
    let (ok, committed) = (txn["ok"].as_u64().context("ok")?, counted(&txn));
    ensure!(
        ok >= 10 && committed > 0.0 && committed < ok as f64,
        "{txn}"
    );

    // 50 per second for 2 s: at most 100 scheduled starts fall inside the run.
    let paced = bench(&[
        "publish",
        "--topic",
        "b",
        "--concurrency",
        "4",
        "--rate",
        "50",
    ])?;
    let paced_ok = paced["ok"].as_u64().context("ok")?;
    ensure!(
        paced_ok > 0
            && paced_ok <= 100
            && paced["rate"] == 50.0
            && paced["max_start_delay_ms"]
                .as_f64()
                .is_some_and(|d| d >= 0.0),
        "{paced}"
    );

    // With a warm-up the same pace runs 2 s longer: those sends happen (the consumer reads
    // them) but the summary counts only the 2 s after them.
    let warmed = bench(&[
        "publish",
        "--topic",
        "bw",
        "--concurrency",
        "4",
        "--rate",
        "50",
        "--warmup",
        "2s",
    ])?;
    let warmed_ok = warmed["ok"].as_u64().context("ok")?;
    ensure!(
        warmed_ok > 0
            && warmed_ok <= 100
            && warmed["warmup_s"] == 2.0
            && warmed["duration_s"].as_f64().is_some_and(|d| d < 3.0),
        "{warmed}"
    );
    let read_back = counted(&bench(&["consume", "--topic", "bw", "--concurrency", "2"])?);
    ensure!(
        read_back.round() as u64 > warmed_ok,
        "{read_back} messages read back from a run that counted {warmed_ok} sends after its warm-up"
    );

    // A reader that goes away early (`txmq read … | head -1`) ends the command quietly: its
    // ~300 KB of output do not fit in the pipe, so the writes after the close fail.
    let mut read = std::process::Command::new(&cluster.bin)
        .args([
            "read", "b", "--queue", "0", "--max", "1000", "--output", "json",
        ])
        .args(["--endpoints", endpoints.as_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    let stdout = read.stdout.take().context("stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)?;
    ensure!(first.contains("message_id"), "{first}");
    let done = read.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&done.stderr);
    ensure!(
        done.status.success() && !stderr.contains("panicked"),
        "read into a closed pipe: {:?} {stderr}",
        done.status
    );

    let (ok, out) = cluster.cli(&[
        "bench",
        "publish",
        "--rate=-1",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(
        !ok && out.contains("--rate"),
        "a negative rate was accepted: {out}"
    );
    Ok(())
}

/// The first hour's trap: `bench publish` makes the default topic a normal one, and a
/// transactional bench on it used to fail every request and exit 0. Each scenario now has a
/// default topic of its own type, and a topic of the wrong type is refused at once, saying
/// what to do, with a failing exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scenarios_get_topics_of_their_type_and_a_wrong_one_fails_loudly() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    let endpoints = cluster.endpoints_csv();
    let bench = |args: &[&str]| -> Result<(bool, String)> {
        let mut full = vec!["bench"];
        full.extend(args);
        full.extend(["--duration", "1s", "--concurrency", "4"]);
        full.extend(["--output", "json", "--endpoints", endpoints.as_str()]);
        cluster.cli(&full)
    };
    for scenario in ["publish", "txn"] {
        let (ok, out) = bench(&[scenario])?;
        let summary: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("{scenario}: no JSON summary: {out}"))?;
        ensure!(
            ok && summary["errors"] == 0 && summary["ok"].as_u64() > Some(0),
            "bench {scenario} on its default topic: {out}"
        );
    }
    let kinds = [("bench", "normal"), ("bench-txn", "transaction")];
    for (topic, kind) in kinds {
        let info = client.describe_topic(topic).await?;
        let expected = if kind == "normal" {
            TopicType::Normal
        } else {
            TopicType::Transaction
        };
        ensure!(
            info.r#type == expected as i32,
            "{topic} should be {kind}: {info:?}"
        );
    }
    let (ok, out) = bench(&["txn", "--topic", "bench"])?;
    ensure!(!ok, "a txn bench on a normal topic exited 0: {out}");
    let error: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("no JSON error: {out}"))?;
    let message = error["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        error["error"]["code"] == "failed_precondition"
            && message.contains("needs a transaction topic")
            && message.contains("--topic"),
        "{out}"
    );
    Ok(())
}

/// The StatefulSet way of growing and shrinking: a fresh node listed in `--initial-cluster`
/// next to a running cluster joins it by itself and becomes a voter that commits need; after
/// `cluster remove-above` and losing its volume it can come back under the same (retired) id, because
/// it arrives empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_fresh_node_joins_the_running_cluster_by_itself() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let bin = cluster.bin.clone();
    let client = cluster.client()?;
    client.create_topic("grow", TopicType::Normal, 2).await?;
    let mut acknowledged = BTreeSet::new();
    for i in 0..50 {
        acknowledged.insert(
            client
                .send(msg("grow", format!("m{i}"), ""))
                .await?
                .message_id,
        );
    }

    cluster.spawn_listed_joiner(4)?;
    wait_for_voter(&client, 4, true).await?;
    // `cluster check` (the Helm test pod's command) sees four answering voters and a
    // transaction committed and read back.
    let endpoints = cluster.endpoints_csv();
    let (ok, out) = cluster.cli(&[
        "cluster",
        "check",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok, "cluster check failed: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).context(out.clone())?;
    ensure!(
        report["voters"] == 4 && report["offset"].is_u64(),
        "{report}"
    );
    wait_until_node_serves(&cluster, 4, "grow", &acknowledged).await?;
    // Four voters need three for a commit: with node 1 down, node 4 must take part.
    cluster.node(1).kill();
    cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let client = cluster.client()?;
    acknowledged.insert(
        client
            .send(msg("grow", "with 4 voting".into(), ""))
            .await?
            .message_id,
    );
    cluster.node(1).start(&bin)?;

    // Scale down: remove it, stop it, drop its volume; then scale up again under the same id.
    // (The Helm chart's pre-upgrade hook runs the same command.)
    let endpoints = cluster.endpoints_csv();
    let (ok, out) = cluster.cli(&[
        "cluster",
        "remove-above",
        "--keep",
        "3",
        "--output",
        "json",
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok, "remove-above failed: {out}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).context(out.clone())?;
    let ids: Vec<u64> = status["nodes"]
        .as_array()
        .context("no nodes")?
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    ensure!(ids == [1, 2, 3], "members after remove-above: {ids:?}");
    cluster.node(4).kill();
    cluster.node(4).wipe()?;
    wait_for_voter(&client, 4, false).await?;
    acknowledged.insert(
        client
            .send(msg("grow", "after removal".into(), ""))
            .await?
            .message_id,
    );
    cluster.node(4).start(&bin)?;
    wait_for_voter(&client, 4, true).await?;
    wait_until_node_serves(&cluster, 4, "grow", &acknowledged).await?;
    Ok(())
}

async fn wait_for_voter(client: &Client, id: u64, voter: bool) -> Result<()> {
    wait_for(
        &format!("node {id} voter = {voter}"),
        Duration::from_secs(30),
        || async {
            let status = client.cluster_status().await.ok()?;
            let is_voter = status.nodes.iter().any(|n| n.id == id && n.voter);
            (is_voter == voter).then_some(())
        },
    )
    .await
}

/// `SendBatch` stores all of a batch in order or nothing (a bad message is named), and a
/// `Publisher` carries many concurrent sends in few requests, each send getting its own
/// position, every message readable exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_sends_are_all_or_nothing_and_the_publisher_loses_nothing() -> Result<()> {
    use txmq_client::{BatchMessage, BatchOptions, Publisher, SendBatchRequest};
    let options = ClusterOptions {
        extra_args: ["--max-message-bytes", "4096"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("batched", TopicType::Normal, 2).await?;
    let message = |body: &str, key: &str| BatchMessage {
        body: body.as_bytes().to_vec().into(),
        key: key.into(),
        ..Default::default()
    };

    let sent = client
        .send_batch(SendBatchRequest {
            topic: "batched".into(),
            messages: (0..10)
                .map(|i| message(&format!("b{i}"), "same-key"))
                .collect(),
        })
        .await?;
    ensure!(sent.positions.len() == 10, "{sent:?}");
    // One key, one queue: consecutive offsets in the order sent.
    let first = sent.positions[0].clone();
    for (i, p) in sent.positions.iter().enumerate() {
        ensure!(
            p.queue == first.queue && p.offset == first.offset + i as u64,
            "{sent:?}"
        );
    }
    let read = client
        .read(ReadRequest {
            topic: "batched".into(),
            queue: Some(first.queue),
            from_offset: first.offset,
            max: 10,
        })
        .await?;
    let bodies: Vec<String> = read
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    ensure!(
        bodies == (0..10).map(|i| format!("b{i}")).collect::<Vec<_>>(),
        "{bodies:?}"
    );

    // A bad message rejects the whole batch, and says which one; nothing is stored.
    let before = client.describe_topic("batched").await?;
    let too_big = "x".repeat(5000);
    let e = client
        .send_batch(SendBatchRequest {
            topic: "batched".into(),
            messages: vec![message("ok", ""), message(&too_big, "")],
        })
        .await
        .expect_err("an oversized message was accepted");
    ensure!(
        e.code == "invalid_argument" && e.message.contains("message 1"),
        "{e:?}"
    );
    let e = client
        .send_batch(SendBatchRequest {
            topic: "batched".into(),
            messages: (0..3).map(|_| message(&"y".repeat(2000), "")).collect(),
        })
        .await
        .expect_err("a batch over --max-message-bytes was accepted");
    ensure!(
        e.code == "invalid_argument" && e.message.contains("total"),
        "{e:?}"
    );
    let e = client
        .send_batch(SendBatchRequest {
            topic: "missing".into(),
            messages: vec![message("m", "")],
        })
        .await
        .expect_err("a batch to an unknown topic was accepted");
    ensure!(e.code == "not_found", "{e:?}");
    ensure!(
        client.describe_topic("batched").await? == before,
        "a rejected batch changed the topic"
    );

    // 200 concurrent sends through one publisher: every one acknowledged with its own position.
    let publisher = Publisher::new(client.clone(), "batched", BatchOptions::default());
    let sends = (0..200).map(|i| {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            publisher
                .send(SendRequest {
                    topic: "batched".into(),
                    body: format!("p{i}").into_bytes().into(),
                    ..Default::default()
                })
                .await
        })
    });
    let mut ids = BTreeSet::new();
    for s in sends {
        ids.insert(s.await??.message_id);
    }
    ensure!(ids.len() == 200, "duplicate or missing ids: {}", ids.len());
    let served = ids_served_by(&client, "batched")
        .await
        .context("read back")?;
    ensure!(ids.is_subset(&served), "a published message is missing");
    ensure!(
        served.len() == 210,
        "expected 210 messages, found {}",
        served.len()
    );
    let wrong = publisher
        .send(SendRequest {
            topic: "other".into(),
            ..Default::default()
        })
        .await
        .expect_err("a publisher sent to another topic");
    ensure!(wrong.code == "invalid_argument", "{wrong:?}");
    Ok(())
}

/// Bodies from a file and from standard input, binary included, arrive byte for byte; an
/// argument that is not UTF-8 is a clear error (exit 2, JSON with `--output json`), not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bodies_from_a_file_or_stdin_and_non_utf8_arguments() -> Result<()> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::process::{Command, Stdio};
    let cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let endpoints = cluster.endpoints_csv();
    let client = Client::new(endpoints.split(','))?;
    client.create_topic("bin", TopicType::Normal, 1).await?;
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &binary)?;
    let path = file.path().display().to_string();
    let (ok, out) = cluster.cli(&[
        "send",
        "bin",
        "--body-file",
        &path,
        "--endpoints",
        &endpoints,
    ])?;
    ensure!(ok, "send --body-file failed: {out}");
    let mut child = Command::new(&cluster.bin)
        .args(["send", "bin", "--body", "-", "--endpoints", &endpoints])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"from stdin \xff")?;
    ensure!(
        child.wait_with_output()?.status.success(),
        "send --body - failed"
    );
    let read = client
        .read(txmq_client::ReadRequest {
            topic: "bin".into(),
            queue: Some(0),
            from_offset: 0,
            max: 10,
        })
        .await?;
    let bodies: Vec<Vec<u8>> = read.iter().map(|m| m.body.to_vec()).collect();
    ensure!(
        bodies == vec![binary, b"from stdin \xff".to_vec()],
        "{bodies:?}"
    );

    let output = Command::new(&cluster.bin)
        .arg("send")
        .arg("bin")
        .arg("--body")
        .arg(std::ffi::OsStr::from_bytes(b"\xff"))
        .args(["--endpoints", &endpoints, "--output", "json"])
        .output()?;
    ensure!(output.status.code() == Some(2), "exit {:?}", output.status);
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    ensure!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("UTF-8")),
        "{doc}"
    );
    Ok(())
}

/// A client of endpoints where nothing listens gives up after a few seconds (not the 20 s
/// meant for elections of a cluster that answered before), naming every endpoint and why.
#[test]
fn an_unreachable_cluster_fails_fast_naming_each_endpoint() -> Result<()> {
    let bin = txmq_cluster_tests::txmq_binary()?;
    let (a, b) = (
        txmq_cluster_tests::free_port()?,
        txmq_cluster_tests::free_port()?,
    );
    let endpoints = format!("127.0.0.1:{a},127.0.0.1:{b}");
    let started = Instant::now();
    let out = std::process::Command::new(bin)
        .args([
            "cluster",
            "status",
            "--output",
            "json",
            "--endpoints",
            &endpoints,
        ])
        .output()?;
    let took = started.elapsed();
    ensure!(!out.status.success(), "status of nothing succeeded");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        doc["error"]["code"] == "unavailable"
            && message.contains("no endpoint could be reached")
            && message.contains(&format!("127.0.0.1:{a}"))
            && message.contains(&format!("127.0.0.1:{b}")),
        "{doc}"
    );
    // The old behaviour was 20 s of silence; a wide margin over the 3 s it now takes.
    ensure!(
        took < Duration::from_secs(12),
        "gave up only after {took:?}"
    );
    Ok(())
}
