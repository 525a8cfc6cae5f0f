//! Observability on a real cluster: health endpoints and gRPC health, the Prometheus exposition
//! of every node checked by `promtool`, a real Prometheus server scraping the cluster after a
//! transactional workload, the alert rules checked and unit-tested, and readiness without quorum.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use txmq_client::{
    CheckRequest, LocalTransactionState, ReceiveRequest, SendHalfRequest, SendRequest, TopicType,
    TransactionChecker, TransactionProducer,
};
use txmq_cluster_tests::{
    Cluster, ClusterOptions, free_port, http_get, required_tool, url_encode, wait_for,
    wait_for_transaction,
};

/// Families the brief asks for; each must appear in the cluster's exposition.
const REQUIRED: &[&str] = &[
    "txmq_build_info",
    "txmq_raft_has_leader",
    "txmq_raft_is_leader",
    "txmq_raft_term",
    "txmq_raft_commit_index",
    "txmq_raft_applied_index",
    "txmq_raft_leader_changes_total",
    "txmq_raft_proposals_total",
    "txmq_raft_log_fsync_duration_seconds",
    "txmq_raft_log_append_duration_seconds",
    "txmq_raft_peer_lag_entries",
    "txmq_txn_half_messages_total",
    "txmq_txn_decisions_total",
    "txmq_txn_checks_sent_total",
    "txmq_txn_checks_answered_total",
    "txmq_txn_pending",
    "txmq_txn_oldest_pending_age_seconds",
    "txmq_txn_time_to_decision_seconds",
    "txmq_messages_produced_total",
    "txmq_messages_delivered_total",
    "txmq_messages_acked_total",
    "txmq_consumer_lag_messages",
    "txmq_consumer_in_flight_messages",
    "txmq_grpc_requests_total",
    "txmq_grpc_request_duration_seconds",
    "txmq_storage_size_bytes",
];

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
}

struct Commit;
impl TransactionChecker for Commit {
    async fn check(&self, _: &CheckRequest) -> LocalTransactionState {
        LocalTransactionState::Commit
    }
}

/// A Prometheus server process, killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &std::path::Path, targets: &[String]) -> Result<Prometheus> {
        let bin = required_tool("prometheus")?;
        let config = dir.join("prometheus.yml");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: txmq\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Prometheus { child, addr })
    }

    /// The single scalar value of an instant query, if any.
    async fn value(&self, query: &str) -> Option<f64> {
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", url_encode(query)),
        )
        .await
        .ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_a_real_prometheus_scrape() -> Result<()> {
    let promtool = required_tool("promtool")?;
    let options = ClusterOptions {
        extra_args: [
            "--txn-first-check-delay",
            "500ms",
            "--txn-check-interval",
            "500ms",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;

    // Phase 1: every node is alive and ready, over HTTP and over grpc.health.v1.
    for node in cluster.nodes.values() {
        let addr = node.metrics_addr.clone();
        wait_for("/readyz", Duration::from_secs(10), || {
            let addr = addr.clone();
            async move {
                http_get(&addr, "/readyz")
                    .await
                    .ok()
                    .filter(|(s, _)| *s == 200)
            }
        })
        .await?;
        ensure!(http_get(&node.metrics_addr, "/healthz").await?.0 == 200);
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", node.client_addr))?
                .connect()
                .await?;
        let health = tonic_health::pb::health_client::HealthClient::new(channel);
        // The gRPC status follows readiness within about a second (the node re-checks it when
        // its Raft metrics change, or every second), so it may still say NOT_SERVING just after
        // /readyz turned 200.
        wait_for("grpc.health.v1 SERVING", Duration::from_secs(10), || {
            let mut health = health.clone();
            async move {
                let reply = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: "txmq.v1.Txmq".into(),
                    })
                    .await
                    .ok()?;
                (reply.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
            }
        })
        .await?;
    }

    // Phase 2: a transactional workload, plain sends and a consumer.
    let client = cluster.client()?;
    client
        .create_topic("pay", TopicType::Transaction, 2)
        .await?;
    client.create_topic("plain", TopicType::Normal, 2).await?;
    let producer = TransactionProducer::new(client.clone(), "shop");
    let _checker = producer.start_checker(Arc::new(Commit), "obs");
    let half = |i: usize| SendHalfRequest {
        topic: "pay".into(),
        body: format!("t{i}").into_bytes().into(),
        ..Default::default()
    };
    for i in 0..20 {
        producer
            .send_in_transaction(half(i), |_| async { LocalTransactionState::Commit })
            .await?;
    }
    for i in 0..5 {
        producer
            .send_in_transaction(half(i), |_| async { LocalTransactionState::Rollback })
            .await?;
    }
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(producer.send_half(half(i), None).await?.transaction_id);
    }
    for i in 0..10 {
        client
            .send(SendRequest {
                topic: "plain".into(),
                body: format!("p{i}").into_bytes().into(),
                ..Default::default()
            })
            .await?;
    }
    let got = client
        .receive(ReceiveRequest {
            group: "obs".into(),
            topic: "plain".into(),
            max: 100,
            invisible_ms: 30_000,
            wait_ms: 2_000,
        })
        .await?;
    client
        .ack(
            "obs",
            "plain",
            got.iter().map(|m| m.receipt_handle.clone()).collect(),
        )
        .await?;
    for id in &pending {
        wait_for_transaction(&client, id, "committed", Duration::from_secs(15)).await?;
    }
    // The gauges computed from state appear with their first refresh (every 2 s).
    let metrics_addrs: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| n.metrics_addr.clone())
        .collect();
    wait_for(
        "every family in the cluster's expositions",
        Duration::from_secs(15),
        || {
            let addrs = metrics_addrs.clone();
            async move {
                let mut all = String::new();
                for addr in &addrs {
                    all.push_str(&http_get(addr, "/metrics").await.ok()?.1);
                }
                let present = |f: &&str| all.contains(&format!("# TYPE {f} "));
                REQUIRED.iter().all(present).then_some(())
            }
        },
    )
    .await?;

    // Phase 3: each node's exposition passes `promtool check metrics`; all families are there.
    let mut all = String::new();
    for node in cluster.nodes.values() {
        let (status, body) = http_get(&node.metrics_addr, "/metrics").await?;
        ensure!(status == 200, "node {} /metrics: {status}", node.id);
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        use std::io::Write;
        check
            .stdin
            .take()
            .context("stdin")?
            .write_all(body.as_bytes())?;
        let out = check.wait_with_output()?;
        ensure!(
            out.status.success(),
            "promtool check metrics on node {}: {}{}",
            node.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        all.push_str(&body);
    }
    for family in REQUIRED {
        ensure!(
            all.contains(&format!("# TYPE {family} ")),
            "no {family} in the exposition"
        );
    }

    // Phase 4: a real Prometheus scrapes all three nodes and sees the workload.
    let dir = tempfile::tempdir()?;
    let targets: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| n.metrics_addr.clone())
        .collect();
    let prometheus = Prometheus::start(dir.path(), &targets)?;
    let checks = [
        ("count(up{job=\"txmq\"} == 1)", 3.0),
        ("max(txmq_raft_has_leader)", 1.0),
        ("sum(txmq_raft_is_leader)", 1.0),
        ("sum(txmq_txn_half_messages_total)", 28.0),
        ("sum(txmq_txn_decisions_total{outcome=\"committed\"})", 23.0),
        (
            "sum(txmq_txn_decisions_total{outcome=\"rolled_back\",source=\"producer\"})",
            5.0,
        ),
        (
            "sum(txmq_txn_checks_answered_total{answer=\"commit\"})",
            3.0,
        ),
        ("sum(txmq_messages_produced_total{type=\"normal\"})", 10.0),
        ("sum(txmq_messages_acked_total)", 10.0),
    ];
    for (query, want) in checks {
        let p = &prometheus;
        wait_for(
            &format!("Prometheus: {query} >= {want}"),
            Duration::from_secs(30),
            || async move { p.value(query).await.filter(|v| *v >= want) },
        )
        .await
        .with_context(|| {
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        })?;
    }
    drop(prometheus);

    // Phase 5: the shipped alert rules are valid and their unit tests pass.
    let deploy = deploy_dir().join("prometheus");
    for args in [
        vec!["check", "rules", "../../helm/txmq/files/alerts.yaml"],
        vec!["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&deploy)
            .output()?;
        ensure!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Phase 6: without a quorum a node stays alive but is not ready.
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    cluster.node(ids[0]).kill();
    cluster.node(ids[1]).kill();
    let last = cluster.nodes[&ids[2]].metrics_addr.clone();
    wait_for(
        "/readyz to fail without quorum",
        Duration::from_secs(20),
        || {
            let last = last.clone();
            async move {
                http_get(&last, "/readyz")
                    .await
                    .ok()
                    .filter(|(s, _)| *s == 503)
            }
        },
    )
    .await?;
    ensure!(
        http_get(&last, "/healthz").await?.0 == 200,
        "healthz must not depend on quorum"
    );
    Ok(())
}
