//! Bounds on what clients may hold open, on a real node: past a bound the client gets
//! `resource_exhausted` at once, and a normal client is served meanwhile.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use txmq_client::{Client, ClientOptions, ReceiveRequest, SendRequest, SendRequestExt, TopicType};
use txmq_cluster_tests::{Cluster, ClusterOptions};

/// Raises this process's open-file limit so it can open thousands of connections.
fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit on RLIMIT_NOFILE with a struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A receive that waits long enough (45 s) for all 40 of them to be held at once even when
/// a loaded CI machine takes many seconds to open them (with 20 s the first could end before
/// the last began, and the bound was never reached).
fn long_poll(topic: &str, group: &str) -> ReceiveRequest {
    ReceiveRequest {
        topic: topic.into(),
        group: group.into(),
        max: 1,
        wait_ms: 45_000,
        ..Default::default()
    }
}

/// How long the pollers keep polling, and the probe probing, before the test gives up.
const POLLING: Duration = Duration::from_secs(150);

/// Receives on `quiet` for `group` until a message comes: each poll waits 45 s, and a poll
/// refused at the node's bound (the probe may hold the last slot for a millisecond) is retried.
async fn poll_until_a_message(client: Client, group: String) -> Result<usize> {
    let deadline = Instant::now() + POLLING;
    while Instant::now() < deadline {
        match client.receive(long_poll("quiet", &group)).await {
            Ok(messages) if !messages.is_empty() => return Ok(messages.len()),
            Ok(_) => {}
            Err(e) if e.code == "resource_exhausted" => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("{group} got no message in {POLLING:?}")
}

/// The node's `txmq_long_polls_held` gauge, if its metrics endpoint answers.
async fn long_polls_held(metrics_addr: &str) -> Option<f64> {
    let (_, body) = txmq_cluster_tests::http_get(metrics_addr, "/metrics")
        .await
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("txmq_long_polls_held "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_and_long_polls_do_not_stop_a_normal_client() -> Result<()> {
    raise_open_files();
    let options = ClusterOptions {
        extra_args: [
            "--max-long-polls",
            "40",
            "--max-requests-per-connection",
            "16",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(1, options).await?;
    let addr = cluster.nodes[&1].client_addr.clone();
    let normal = cluster.client()?;
    normal.create_topic("quiet", TopicType::Normal, 1).await?;
    normal.create_topic("busy", TopicType::Normal, 1).await?;

    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(std::net::TcpStream::connect(&addr)?);
    }
    // 40 long polls fill the node's bound (over 8 connections: within the per-connection
    // bound); the next is refused at once.
    let pollers = Client::with_options(
        [addr.as_str()],
        ClientOptions {
            connections_per_endpoint: 8,
            request_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )?;
    let mut waiting = Vec::new();
    for i in 0..40 {
        let pollers = pollers.clone();
        waiting.push(tokio::spawn(poll_until_a_message(pollers, format!("g{i}"))));
    }
    // A probe that waits a millisecond needs a slot too, and holds it for no longer. The
    // pollers keep polling, so the 40 are held at once sooner or later even when a loaded
    // machine takes longer to open them than one poll lasts.
    let probe = ReceiveRequest {
        wait_ms: 1,
        ..long_poll("quiet", "one-too-many")
    };
    let last = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = last.clone();
    let metrics_addr = cluster.nodes[&1].metrics_addr.clone();
    let refused = txmq_cluster_tests::wait_for("the long-poll bound", POLLING, || {
        let (normal, probe, seen) = (normal.clone(), probe.clone(), seen.clone());
        async move {
            let r = normal.receive(probe.clone()).await;
            if let Ok(mut s) = seen.lock() {
                *s = format!("{r:?}");
            }
            r.err().filter(|e| e.code == "resource_exhausted")
        }
    })
    .await;
    let refused = match refused {
        Ok(refused) => refused,
        Err(e) => {
            let held = long_polls_held(&metrics_addr).await;
            let ended = waiting.iter().filter(|w| w.is_finished()).count();
            let probe = last.lock().map(|s| s.clone()).unwrap_or_default();
            return Err(e.context(format!(
                "{held:?} receives held on the node, {ended} pollers ended; the last probe got {probe}"
            )));
        }
    };
    ensure!(refused.message.contains("--max-long-polls"), "{refused}");
    // Operators see the bound reached (a poller whose wait just ended polls again at once).
    txmq_cluster_tests::wait_for("40 receives held", Duration::from_secs(5), || {
        let metrics_addr = metrics_addr.clone();
        async move { (long_polls_held(&metrics_addr).await == Some(40.0)).then_some(()) }
    })
    .await?;

    // The normal client is served while all of that is held open.
    let started = Instant::now();
    let sent = normal
        .send(SendRequest::new("busy", "still served"))
        .await?;
    let read = normal
        .read(txmq_client::ReadRequest {
            topic: "busy".into(),
            max: 10,
            ..Default::default()
        })
        .await?;
    ensure!(read.iter().any(|m| m.message_id == sent.message_id));
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "served only after {:?}",
        started.elapsed()
    );

    // A message wakes a waiting receive: the held polls still work.
    normal.send(SendRequest::new("quiet", "wake")).await?;
    let mut woken = 0;
    for handle in waiting {
        match handle.await? {
            Ok(received) => woken += received,
            Err(e) => eprintln!("a poller failed: {e:#}"),
        }
    }
    ensure!(
        woken == 40,
        "{woken} of the 40 waiting receives got the message"
    );
    drop(idle);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_per_connection_bound_are_refused_not_queued() -> Result<()> {
    let options = ClusterOptions {
        extra_args: ["--max-requests-per-connection", "4"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(1, options).await?;
    let addr = cluster.nodes[&1].client_addr.clone();
    cluster
        .client()?
        .create_topic("quiet", TopicType::Normal, 1)
        .await?;
    let one_connection = Client::with_options(
        [addr.as_str()],
        ClientOptions {
            connections_per_endpoint: 1,
            request_timeout: Duration::from_secs(30),
            retry_deadline: Duration::from_secs(1),
            ..Default::default()
        },
    )?;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let c = one_connection.clone();
        calls.spawn(async move { c.receive(long_poll("quiet", &format!("g{i}"))).await });
    }
    // The refused calls end first; the admitted ones wait for messages.
    let started = Instant::now();
    let first = calls.join_next().await.context("a call")?.context("join")?;
    let refused = match first {
        Err(e) if e.code == "resource_exhausted" => 1,
        other => anyhow::bail!("the first call to end was not refused: {other:?}"),
    };
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        started.elapsed()
    );
    calls.abort_all();
    ensure!(
        refused > 0,
        "8 long polls on one connection bounded at 4 were all admitted"
    );
    Ok(())
}
