//! Faults real deployments meet, injected into real `txmq serve` processes: damaged storage on
//! one node and on a majority, and replicas that diverge without any node noticing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use txmq_client::{Client, SendRequest, TopicType};
use txmq_cluster_tests::{Cluster, ClusterOptions, holds_for, ids_served_by, wait_for};

const TOPIC: &str = "orders";
const MESSAGES: usize = 200;
/// Every message body: easy to find in a queue file.
const BODY: &str = "payload-payload-payload-payload-payload-payload-payload-payload";

/// Phase: a cluster holding `MESSAGES` acknowledged messages, every node applied them all.
async fn cluster_with_messages() -> Result<(Cluster, BTreeSet<String>)> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let client = cluster.client()?;
    client.create_topic(TOPIC, TopicType::Normal, 2).await?;
    let mut acknowledged = BTreeSet::new();
    for i in 0..MESSAGES {
        let sent = client
            .send(SendRequest {
                topic: TOPIC.into(),
                body: BODY.as_bytes().to_vec().into(),
                key: format!("k{i}"),
                ..Default::default()
            })
            .await?;
        acknowledged.insert(sent.message_id);
    }
    for id in [1, 2, 3] {
        wait_until_serves(&cluster, id, &acknowledged).await?;
    }
    Ok((cluster, acknowledged))
}

async fn wait_until_serves(cluster: &Cluster, id: u64, expected: &BTreeSet<String>) -> Result<()> {
    let client = cluster.client_of(id)?;
    wait_for(
        &format!("node {id} to serve all {} messages", expected.len()),
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                ids_served_by(&client, TOPIC)
                    .await
                    .filter(|ids| ids == expected)
            }
        },
    )
    .await
    .map(|_| ())
}

/// The newest Raft log segment of a node's data dir.
fn newest_segment(data_dir: &Path) -> Result<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(data_dir.join("raft-log"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.sort();
    names.pop().context("no raft log segment")
}

/// Flips one byte half way through the frames of a node's newest log segment: valid frames
/// before and after it, as a bit rot or a misdirected write leaves it.
fn damage_log_middle(data_dir: &Path) -> Result<()> {
    let path = newest_segment(data_dir)?;
    let mut bytes = std::fs::read(&path)?;
    let written = bytes
        .iter()
        .rposition(|b| *b != 0)
        .context("empty segment")?;
    let middle = written / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, bytes)?;
    Ok(())
}

fn kill_all(cluster: &mut Cluster) {
    for node in cluster.nodes.values_mut() {
        node.kill();
    }
}

/// Phase: a damaged node refuses to start, saying why and how to repair it.
fn expect_refusal(cluster: &mut Cluster, id: u64) -> Result<()> {
    let bin = cluster.bin.clone();
    let node = cluster.node(id);
    node.start(&bin)?;
    let status = node.wait_exit(Duration::from_secs(30))?;
    let log = node.log();
    ensure!(
        !status.success(),
        "node {id} with a damaged log exited {status}"
    );
    ensure!(
        log.contains("damaged frame") && log.contains("--repair-damaged-storage"),
        "node {id} did not say what is damaged and how to repair it:\n{log}"
    );
    Ok(())
}

fn start_repairing(cluster: &mut Cluster, id: u64) -> Result<()> {
    let bin = cluster.bin.clone();
    let node = cluster.node(id);
    node.add_args(&["--repair-damaged-storage"]);
    node.start(&bin)
}

/// `txmq cluster check --output json` against the cluster: (passed, its JSON document).
fn cluster_check(cluster: &Cluster) -> Result<(bool, serde_json::Value)> {
    let endpoints = cluster.endpoints_csv();
    let (ok, out) = cluster.cli(&[
        "cluster",
        "check",
        "--endpoints",
        &endpoints,
        "--output",
        "json",
        "--timeout",
        "30s",
    ])?;
    let doc = serde_json::from_str(out.trim()).with_context(|| format!("check printed {out}"))?;
    Ok((ok, doc))
}

/// A flipped byte mid-log on one follower, all nodes killed: the follower refuses to start
/// (it does not cut the "tail"), the other two go on; repaired with the flag it rebuilds from
/// the leader, votes again, and every acknowledged message is on every node with equal digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_on_one_node_is_refused_then_repaired_without_loss() -> Result<()> {
    let (mut cluster, acknowledged) = cluster_with_messages().await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let damaged = if leader == 1 { 2 } else { 1 };
    kill_all(&mut cluster);
    damage_log_middle(&cluster.node(damaged).data_dir.clone())?;
    expect_refusal(&mut cluster, damaged)?;
    let bin = cluster.bin.clone();
    for id in [1, 2, 3].into_iter().filter(|id| *id != damaged) {
        cluster.node(id).start(&bin)?;
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await?;

    start_repairing(&mut cluster, damaged)?;
    let data_dir = cluster.node(damaged).data_dir.clone();
    wait_for("the repair to finish", Duration::from_secs(60), || {
        let done = !data_dir.join("REPAIRING").exists()
            && cluster.nodes[&damaged].log().contains("repair finished");
        async move { done.then_some(()) }
    })
    .await
    .with_context(|| cluster.logs())?;
    let set_aside = std::fs::read_dir(&data_dir)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("damaged-"));
    ensure!(
        set_aside,
        "the damaged data was not kept aside for inspection"
    );
    for id in [1, 2, 3] {
        wait_until_serves(&cluster, id, &acknowledged).await?;
    }
    let (ok, doc) = cluster_check(&cluster)?;
    ensure!(
        ok && doc["voters"] == 3,
        "cluster check after the repair: {doc}"
    );
    Ok(())
}

/// The same damage on the leader and one follower: both refuse to start; started for repair
/// they refuse their votes, so the one healthy follower cannot be elected on its own and the
/// cluster stays unavailable, saying why, instead of electing a leader that may lack
/// acknowledged data. (Had the healthy node been the leader, it would simply have gone on
/// leading: a leader holds every committed entry, and the damaged nodes rebuild from it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_on_a_majority_keeps_the_cluster_unavailable_and_says_why() -> Result<()> {
    let (mut cluster, _) = cluster_with_messages().await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let healthy = if leader == 3 { 2 } else { 3 };
    let damaged: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != healthy).collect();
    kill_all(&mut cluster);
    for id in damaged.iter().copied() {
        damage_log_middle(&cluster.node(id).data_dir.clone())?;
        expect_refusal(&mut cluster, id)?;
    }
    let bin = cluster.bin.clone();
    cluster.node(healthy).start(&bin)?;
    for id in damaged.iter().copied() {
        start_repairing(&mut cluster, id)?;
    }
    let logs_say_why = wait_for(
        "the repairing nodes to say why they wait",
        Duration::from_secs(30),
        || {
            let said = damaged.iter().all(|id| {
                cluster.nodes[id]
                    .log()
                    .contains("not voting: no leader yet")
            });
            async move { said.then_some(()) }
        },
    )
    .await;
    logs_say_why.with_context(|| cluster.logs())?;
    // Several election timeouts later there is still no leader anywhere.
    let client = cluster.client_of(healthy)?;
    let clients: Vec<Client> = [1, 2, 3]
        .iter()
        .map(|id| cluster.client_of(*id))
        .collect::<Result<_>>()?;
    let leaderless = holds_for("no leader anywhere", Duration::from_secs(5), || {
        let clients = clients.clone();
        async move {
            for c in &clients {
                if c.cluster_status().await?.leader_id != 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    })
    .await;
    leaderless.with_context(|| cluster.logs())?;
    match client.create_topic("after", TopicType::Normal, 1).await {
        Ok(_) => bail!("a write succeeded with a majority of voters damaged"),
        Err(e) => ensure!(e.code == "unavailable", "{e}"),
    }
    Ok(())
}

/// Replicas that differ while every file checks out (a message body altered and its checksum
/// recomputed on one node): `cluster check` compares the voters' state digests at one applied
/// index and fails, naming the nodes, instead of reporting ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_check_fails_on_diverged_replicas() -> Result<()> {
    let (mut cluster, _) = cluster_with_messages().await?;
    let (ok, doc) = cluster_check(&cluster)?;
    ensure!(ok, "cluster check on a healthy cluster: {doc}");
    let bin = cluster.bin.clone();
    let node = cluster.node(3);
    node.kill();
    alter_one_message(&node.data_dir.join("queues"))?;
    node.start(&bin)?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let (ok, doc) = cluster_check(&cluster)?;
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    ensure!(!ok, "cluster check passed on diverged replicas: {doc}");
    ensure!(
        doc["error"]["code"] == "diverged"
            && message.contains("node 3")
            && message.contains("node 1"),
        "the check does not name the diverged nodes: {doc}"
    );
    Ok(())
}

/// Changes one byte of one message body in a queue file under `queues`, and rewrites its
/// frame's checksum so that the file still checks out.
fn alter_one_message(queues: &Path) -> Result<()> {
    for dir in std::fs::read_dir(queues)? {
        for file in std::fs::read_dir(dir?.path())? {
            let file = file?.path();
            if std::fs::read(&file)?
                .windows(BODY.len())
                .any(|w| w == BODY.as_bytes())
            {
                return alter_body_in(&file);
            }
        }
    }
    bail!(
        "no message body in any queue file under {}",
        queues.display()
    )
}

fn alter_body_in(file: &Path) -> Result<()> {
    let mut bytes = std::fs::read(file)?;
    let at = bytes
        .windows(BODY.len())
        .position(|w| w == BODY.as_bytes())
        .context("no message body in the queue file")?;
    bytes[at] = b'P';
    // Frames: [len u32 LE][crc32 of payload u32 LE][payload]; find the one holding `at`.
    let mut start = 0usize;
    loop {
        let len = u32::from_le_bytes(bytes[start..start + 4].try_into()?) as usize;
        let end = start + 8 + len;
        if at < end {
            let crc = crc32fast::hash(&bytes[start + 8..end]);
            bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            break;
        }
        start = end;
    }
    std::fs::write(file, bytes)?;
    Ok(())
}

/// A follower down for 20 s: the leader's log grows by a bounded number of lines (reconnection
/// backs off; the peer's going and coming back are logged once each), and the peer's state is
/// a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_for_20s_costs_a_bounded_number_of_log_lines() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let down = if leader == 1 { 2 } else { 1 };
    let lines_before = cluster.nodes[&leader].log().lines().count();
    cluster.node(down).kill();
    // The fault itself: the peer stays down this long (a duration to measure over, not a wait
    // for a condition).
    tokio::time::sleep(Duration::from_secs(20)).await;
    let log = cluster.nodes[&leader].log();
    let added: Vec<&str> = log.lines().skip(lines_before).collect();
    eprintln!(
        "leader log lines while a peer was down for 20 s: {}",
        added.len()
    );
    ensure!(
        added.len() <= 150,
        "{} log lines in 20 s with one peer down; the last ones:\n{}",
        added.len(),
        added[added.len().saturating_sub(10)..].join("\n")
    );
    ensure!(
        added.iter().any(|l| l.contains("peer unreachable")),
        "the peer's going was not logged"
    );
    let metrics_addr = cluster.nodes[&leader].metrics_addr.clone();
    let (_, metrics) = txmq_cluster_tests::http_get(&metrics_addr, "/metrics").await?;
    let series = format!("txmq_peer_reachable{{peer=\"{down}\"}} 0");
    ensure!(metrics.contains(&series), "no {series} in /metrics");
    let bin = cluster.bin.clone();
    cluster.node(down).start(&bin)?;
    wait_for(
        "the leader to log the peer back",
        Duration::from_secs(15),
        || {
            let back = cluster.nodes[&leader]
                .log()
                .contains("peer reachable again");
            async move { back.then_some(()) }
        },
    )
    .await?;
    Ok(())
}

/// SIGTERM stops a follower and a leader within a bound: the follower starts no election on
/// its way out (the term stays), the leader hands over, each exits successfully and releases
/// its data dir, so a restart works at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_followers_and_leaders_promptly() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let follower = if leader == 1 { 2 } else { 1 };
    let term_before = cluster.client_of(leader)?.cluster_status().await?.term;
    let bin = cluster.bin.clone();

    let node = cluster.node(follower);
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(10))?;
    ensure!(status.success(), "follower exited {status}");
    node.start(&bin)?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let after = cluster.client_of(leader)?.cluster_status().await?;
    ensure!(
        after.leader_id == leader && after.term == term_before,
        "stopping a follower changed leadership: leader {leader} term {term_before} -> leader {} term {}",
        after.leader_id,
        after.term
    );

    let node = cluster.node(leader);
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(10))?;
    ensure!(status.success(), "leader exited {status}");
    ensure!(
        node.log().contains("handing leadership over"),
        "the leader did not hand over:\n{}",
        node.log()
    );
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    ensure!(new_leader != leader);
    cluster.node(leader).start(&bin)?;
    wait_for("the old leader to rejoin", Duration::from_secs(30), || {
        let client = cluster.client_of(leader);
        async move {
            let status = client.ok()?.cluster_status().await.ok()?;
            (status.leader_id != 0).then_some(())
        }
    })
    .await?;
    Ok(())
}

/// Messages of (nearly) the maximum size, several on one queue: reads and receives size their
/// responses by bytes, so each such message is delivered — one per response — with delivery
/// attempt 1 (a lease the response had no room for is given back, not burnt), nothing is
/// dead-lettered, and small messages behind them come through too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_maximum_size_are_read_and_received() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let client = cluster.client()?;
    client.create_topic("big", TopicType::Normal, 1).await?;
    let big = 4 * 1024 * 1024 - 256;
    let mut sent = BTreeSet::new();
    for (i, size) in [big, big, 100, big, 100].into_iter().enumerate() {
        let body = vec![b'a' + i as u8; size];
        let m = client
            .send(SendRequest {
                topic: "big".into(),
                body: body.into(),
                ..Default::default()
            })
            .await?;
        sent.insert(m.message_id);
    }
    // Read by offset: every message, a response at a time.
    let read = ids_served_by_one_queue(&client, "big").await?;
    ensure!(
        read == sent,
        "read {} of {} messages",
        read.len(),
        sent.len()
    );
    // Receive as a group: everything, each at its first attempt.
    let mut received = BTreeSet::new();
    for _ in 0..20 {
        let batch = client
            .receive(txmq_client::ReceiveRequest {
                group: "g".into(),
                topic: "big".into(),
                max: 10,
                invisible_ms: 60_000,
                wait_ms: 1_000,
            })
            .await?;
        for m in &batch {
            ensure!(
                m.delivery_attempt == 1,
                "{} delivered at attempt {}",
                m.message_id,
                m.delivery_attempt
            );
            received.insert(m.message_id.clone());
        }
        let receipts: Vec<String> = batch.iter().map(|m| m.receipt_handle.clone()).collect();
        if !receipts.is_empty() {
            client.ack("g", "big", receipts).await?;
        }
        if received.len() == sent.len() {
            break;
        }
    }
    ensure!(
        received == sent,
        "received {} of {} messages",
        received.len(),
        sent.len()
    );
    let group = client.describe_group("g", "big").await?;
    ensure!(group.dead_lettered == 0 && group.lag == 0, "{group:?}");
    Ok(())
}

/// Every message id of a one-queue topic, read in as many requests as it takes.
async fn ids_served_by_one_queue(
    client: &txmq_client::Client,
    topic: &str,
) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut from = 0;
    for _ in 0..100 {
        let batch = client
            .read(txmq_client::ReadRequest {
                topic: topic.into(),
                queue: Some(0),
                from_offset: from,
                max: 1000,
            })
            .await?;
        let Some(last) = batch.last() else {
            return Ok(ids);
        };
        from = last.offset + 1;
        ids.extend(batch.into_iter().map(|m| m.message_id));
    }
    bail!("topic {topic} did not end within 100 reads")
}

/// Peer messages are bounded by what a legitimate peer sends: a follower that missed 24 MiB
/// messages catches up (the leader splits its big AppendEntries requests below the bound), and
/// a 40 MiB message to the peer port is refused without hurting the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_messages_are_bounded_and_big_catch_ups_still_work() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let lagging = if leader == 1 { 2 } else { 1 };
    let client = cluster.client()?;
    client.create_topic("bulk", TopicType::Normal, 1).await?;
    cluster.node(lagging).kill();
    let mut sent = BTreeSet::new();
    for i in 0..24u8 {
        let m = client
            .send(SendRequest {
                topic: "bulk".into(),
                body: vec![i; 4 * 1024 * 1024 - 256].into(),
                ..Default::default()
            })
            .await?;
        sent.insert(m.message_id);
    }
    let bin = cluster.bin.clone();
    cluster.node(lagging).start(&bin)?;
    let lagging_client = cluster.client_of(lagging)?;
    let caught_up = wait_for(
        "the lagging follower to catch up",
        Duration::from_secs(90),
        || {
            let c = lagging_client.clone();
            let sent = sent.clone();
            async move {
                ids_served_by_one_queue(&c, "bulk")
                    .await
                    .ok()
                    .filter(|ids| *ids == sent)
            }
        },
    )
    .await;
    if let Err(e) = caught_up {
        let status = client.cluster_status().await;
        let served = ids_served_by_one_queue(&lagging_client, "bulk").await;
        bail!(
            "{e}: status {status:?}; the follower serves {:?} of {} messages\n{}",
            served.map(|s| s.len()),
            sent.len(),
            cluster.logs()
        );
    }

    let peer = format!("http://{}", cluster.nodes[&leader].peer_addr);
    let mut hostile = txmq_proto::peer::peer_client::PeerClient::connect(peer)
        .await?
        .max_encoding_message_size(64 * 1024 * 1024);
    let huge = txmq_proto::peer::RaftMessage {
        data: vec![0u8; 40 * 1024 * 1024].into(),
    };
    match hostile.append_entries(huge).await {
        Ok(_) => bail!("the peer port accepted a 40 MiB message"),
        Err(status) => ensure!(
            matches!(
                status.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{status:?}"
        ),
    }
    let m = client
        .send(SendRequest {
            topic: "bulk".into(),
            body: b"after".to_vec().into(),
            ..Default::default()
        })
        .await?;
    ensure!(!m.message_id.is_empty());
    Ok(())
}

const MIB: u64 = 1024 * 1024;

/// Options for the disk-full tests: node 3's data dir is a 64 MiB tmpfs; no high-water
/// trimming (this is about the disk filling regardless).
fn small_disk_on_node_3() -> ClusterOptions {
    ClusterOptions {
        extra_args: ["--disk-high-water", "1.0"].map(String::from).to_vec(),
        tmpfs_data_dirs: [(3, 64 * MIB)].into(),
        ..Default::default()
    }
}

async fn readyz(cluster: &Cluster, id: u64) -> Result<(u16, String)> {
    txmq_cluster_tests::http_get(&cluster.nodes[&id].metrics_addr, "/readyz").await
}

/// Phase: 512 KiB messages until node `full`'s /readyz says its disk is nearly full (writes
/// keep succeeding through the others meanwhile). Returns what was acknowledged.
async fn fill_disk_of(cluster: &mut Cluster, full: u64) -> Result<BTreeSet<String>> {
    let client = cluster.client()?;
    client.create_topic("fill", TopicType::Normal, 1).await?;
    // A send in flight on a leader whose disk fills is neither refused nor done until it is
    // free again: give each send a short deadline, and count only those acknowledged.
    let endpoints: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| n.client_addr.clone())
        .collect();
    let options = txmq_client::ClientOptions {
        retry_deadline: Duration::from_secs(5),
        ..Default::default()
    };
    let client = txmq_client::Client::with_options(endpoints, options).unwrap_or(client);
    let mut sent = BTreeSet::new();
    for i in 0..200u32 {
        let outcome = client
            .send(SendRequest {
                topic: "fill".into(),
                body: vec![(i % 251) as u8; 512 * 1024].into(),
                ..Default::default()
            })
            .await;
        if let Ok(m) = outcome {
            sent.insert(m.message_id);
        }
        let (code, body) = readyz(cluster, full).await?;
        if code == 503 && body.contains("disk nearly full") {
            return Ok(sent);
        }
    }
    bail!(
        "node {full}'s disk never reported full:\n{}",
        cluster.logs()
    )
}

/// Phase: with node `full`'s disk full, writes go on through the others, the full node is not
/// the leader, its /healthz is 200 and its /readyz names the disk; after space returns it takes
/// entries again by itself, catches up and is ready.
async fn writes_go_on_then_the_full_node_recovers(
    cluster: &mut Cluster,
    full: u64,
    mut sent: BTreeSet<String>,
) -> Result<()> {
    let client = cluster.client()?;
    for i in 0..10u8 {
        let m = client
            .send(SendRequest {
                topic: "fill".into(),
                body: vec![i; 1024].into(),
                ..Default::default()
            })
            .await
            .context("a write while one node's disk is full")?;
        sent.insert(m.message_id);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    ensure!(leader != full, "the node with a full disk still leads");
    let (code, _) =
        txmq_cluster_tests::http_get(&cluster.nodes[&full].metrics_addr, "/healthz").await?;
    ensure!(
        code == 200,
        "a full disk is recoverable: /healthz must stay 200, got {code}"
    );
    let (code, body) = readyz(cluster, full).await?;
    ensure!(
        code == 503 && body.contains("disk nearly full"),
        "{code} {body}"
    );

    cluster.resize_tmpfs(full, 1024 * MIB)?;
    wait_for(
        "the full node to be ready again",
        Duration::from_secs(60),
        || {
            let ready = readyz(cluster, full);
            async move { ready.await.ok().filter(|(code, _)| *code == 200) }
        },
    )
    .await
    .with_context(|| cluster.logs())?;
    let full_client = cluster.client_of(full)?;
    wait_for("the full node to catch up", Duration::from_secs(60), || {
        let c = full_client.clone();
        let sent = sent.clone();
        async move {
            ids_served_by_one_queue(&c, "fill")
                .await
                .ok()
                .filter(|ids| *ids == sent)
        }
    })
    .await?;
    Ok(())
}

/// Restarting node 3 if it leads moves leadership elsewhere.
async fn make_node_3_a_follower(cluster: &mut Cluster) -> Result<()> {
    if cluster.wait_for_leader(Duration::from_secs(30)).await? == 3 {
        let bin = cluster.bin.clone();
        cluster.node(3).kill();
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        cluster.node(3).start(&bin)?;
    }
    Ok(())
}

/// A follower's small disk fills: it stops taking entries (never a storage error that would
/// stop it for good), says why on /readyz, and resumes by itself once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_full_disk_stops_taking_entries_and_resumes_by_itself() -> Result<()> {
    let mut cluster = Cluster::start(3, small_disk_on_node_3()).await?;
    make_node_3_a_follower(&mut cluster).await?;
    let sent = fill_disk_of(&mut cluster, 3).await?;
    writes_go_on_then_the_full_node_recovers(&mut cluster, 3, sent).await
}

/// The leader's small disk fills: it hands leadership over, writes go on, and it resumes by
/// itself once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_a_full_disk_hands_over_and_resumes_by_itself() -> Result<()> {
    let mut cluster = Cluster::start(3, small_disk_on_node_3()).await?;
    let bin = cluster.bin.clone();
    for _ in 0..20 {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        if leader == 3 {
            break;
        }
        cluster.node(leader).kill();
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        cluster.node(leader).start(&bin)?;
    }
    ensure!(
        cluster.wait_for_leader(Duration::from_secs(30)).await? == 3,
        "could not make node 3 the leader"
    );
    let sent = fill_disk_of(&mut cluster, 3).await?;
    writes_go_on_then_the_full_node_recovers(&mut cluster, 3, sent).await
}

/// A storage error the node cannot get past by itself (here: a full disk with the reserve
/// turned off with `--disk-reserve-bytes 0`, so a write really fails) stops its Raft; the node
/// then says why and exits with status 1 for its supervisor to restart it, instead of staying
/// up as a process that looks alive and serves stale reads; the others keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_storage_error_makes_the_node_exit_with_the_reason() -> Result<()> {
    let options = ClusterOptions {
        extra_args: ["--disk-high-water", "1.0", "--disk-reserve-bytes", "0"]
            .map(String::from)
            .to_vec(),
        tmpfs_data_dirs: [(3, 32 * MIB)].into(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    make_node_3_a_follower(&mut cluster).await?;
    let client = cluster.client()?;
    client.create_topic("fill", TopicType::Normal, 1).await?;
    for i in 0..150u32 {
        client
            .send(SendRequest {
                topic: "fill".into(),
                body: vec![(i % 251) as u8; 512 * 1024].into(),
                ..Default::default()
            })
            .await?;
        let node = cluster.nodes.get_mut(&3).context("node 3")?;
        if node.is_running() {
            continue;
        }
        let status = node.wait_exit(Duration::from_secs(10))?;
        ensure!(status.code() == Some(1), "node 3 exited with {status}");
        let logs = cluster.logs();
        ensure!(
            logs.contains("Raft stopped on its own") && logs.contains("restart"),
            "node 3 exited without saying why:\n{logs}"
        );
        // The other two still form a majority and take writes.
        client
            .send(SendRequest {
                topic: "fill".into(),
                body: b"after".to_vec().into(),
                ..Default::default()
            })
            .await?;
        return Ok(());
    }
    bail!(
        "node 3 never stopped on its failed storage:\n{}",
        cluster.logs()
    )
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after its closing ')'.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / per_second)
}

/// 1,100 idle connections against a leader whose open-file limit is 1,024: it admits only
/// what its descriptors allow, does not spin on accept errors, its Raft keeps committing and
/// applying, and once the idle connections are cut (they never sent a byte) a normal client
/// is served by it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_exhaust_a_nodes_descriptors() -> Result<()> {
    let options = ClusterOptions {
        open_files: Some(1024),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let addr = cluster.nodes[&leader].client_addr.clone();
    let pid = cluster.nodes[&leader].pid().context("leader pid")?;
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(std::net::TcpStream::connect(&addr)?);
    }
    // Not a wait for a condition: the accept burst's own CPU must be over before the window
    // below measures the idle cost.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Not spinning: a busy accept loop used a whole core (a correctness property, so a wide
    // margin: under a fifth of a core over three seconds while the cluster is idle).
    let before = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(3)).await; // the measurement window
    let used = cpu_seconds(pid)? - before;
    ensure!(
        used < 0.6,
        "the node used {used:.2} CPU seconds in 3 s with idle connections"
    );

    // Raft goes on: writes through the other nodes commit and the leader applies them.
    let others: Vec<String> = cluster
        .nodes
        .values()
        .filter(|n| n.id != leader)
        .map(|n| n.client_addr.clone())
        .collect();
    let client = txmq_client::Client::new(others)?;
    client.create_topic("busy", TopicType::Normal, 1).await?;
    for i in 0..20u8 {
        client
            .send(SendRequest {
                topic: "busy".into(),
                body: vec![i; 100].into(),
                ..Default::default()
            })
            .await?;
    }
    let status = client.cluster_status().await?;
    let target = status
        .nodes
        .iter()
        .map(|n| n.commit_index)
        .max()
        .unwrap_or(0);
    wait_for(
        "the leader to apply the writes",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            async move {
                let s = client.cluster_status().await.ok()?;
                s.nodes
                    .iter()
                    .any(|n| n.id == leader && n.applied_index >= target)
                    .then_some(())
            }
        },
    )
    .await?;

    // The idle connections never sent a byte: cut after the first-byte deadline, after which
    // the leader serves a normal client itself (the sockets are still open on our side).
    let direct = cluster.client_of(leader)?;
    wait_for(
        "the leader to serve a normal client",
        Duration::from_secs(30),
        || {
            let direct = direct.clone();
            async move { direct.describe_topic("busy").await.ok() }
        },
    )
    .await?;
    drop(idle);
    Ok(())
}

/// The disk high-water mark is decided by the fullest voter, not by the leader's own disk: a
/// follower on a small volume makes the leader (on a roomy one) delete the oldest messages,
/// logged with the node and counted, before that follower runs out of space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fullest_voters_disk_decides_the_high_water_trim() -> Result<()> {
    let options = ClusterOptions {
        extra_args: [
            "--disk-high-water",
            "0.85",
            // The Raft log holds every message too until a snapshot lets it be purged, and
            // trimming cannot shrink it: keep it short, as a small volume needs.
            "--snapshot-logs",
            "20",
            "--logs-to-keep",
            "10",
        ]
        .map(String::from)
        .to_vec(),
        tmpfs_data_dirs: [(3, 256 * MIB)].into(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    make_node_3_a_follower(&mut cluster).await?;
    let client = cluster.client()?;
    // The other nodes' (shared, big) volume must be below the mark for this test to say
    // anything: otherwise their own disks would decide too.
    let status = client.cluster_status().await?;
    for n in status.nodes.iter().filter(|n| n.id != 3) {
        let used = 1.0 - n.disk_free_bytes as f64 / n.disk_total_bytes.max(1) as f64;
        ensure!(
            used < 0.8,
            "node {}'s volume is {used:.2} full already",
            n.id
        );
    }
    client.create_topic("bulk", TopicType::Normal, 1).await?;
    let mut trimmed = false;
    // About 5 MiB/s: the leader looks at the voters' disks once a second, and the 10% of this
    // small volume between the mark and the reserve (about 23 MiB) must not fill before node 3
    // has applied the trim and deleted the files. At 10 MiB/s a debug build sharing two cores
    // with the other fault tests (CI) missed that by a few MiB now and then.
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    for i in 0..400u32 {
        pace.tick().await;
        client
            .send(SendRequest {
                topic: "bulk".into(),
                body: vec![(i % 251) as u8; 1024 * 1024 - 256].into(),
                ..Default::default()
            })
            .await?;
        let info = client.describe_topic("bulk").await?;
        if info.queue_info.first().is_some_and(|q| q.low_offset > 0) {
            trimmed = true;
            break;
        }
    }
    ensure!(trimmed, "no message was deleted:\n{}", cluster.logs());
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let status = client.cluster_status().await?;
    let disks: Vec<String> = status
        .nodes
        .iter()
        .map(|n| format!("{}: {}/{}", n.id, n.disk_free_bytes, n.disk_total_bytes))
        .collect();
    eprintln!("leader {leader}, disks {disks:?}");
    let log = cluster.nodes[&leader].log();
    ensure!(
        log.lines()
            .any(|l| l.contains("above the high-water mark") && l.contains("node=3")),
        "the leader did not say which voter's disk decided:\n{}",
        cluster.logs()
    );
    let (_, metrics) =
        txmq_cluster_tests::http_get(&cluster.nodes[&leader].metrics_addr, "/metrics").await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("txmq_storage_high_water_trims_total ") && !l.ends_with(" 0")),
        "no trim counted"
    );
    let (code, body) = readyz(&cluster, 3).await?;
    ensure!(code == 200, "node 3 ran out of space anyway: {body}");
    Ok(())
}
