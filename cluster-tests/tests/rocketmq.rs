//! The official RocketMQ 5 Python client (PyPI `rocketmq-python-client`, pinned in
//! scripts/test.sh) against a real 3-node cluster's RocketMQ port: sends, receives, acks,
//! redelivery, change of invisible duration, transactions (commit, rollback, check-back),
//! interop with txmq's own API both ways, and a leader killed between runs.
//!
//! The client runs in a venv the test command makes; `TXMQ_ROCKETMQ_PYTHON` names its
//! interpreter. Without it these tests fail (they never skip).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use txmq_client::{Client, ReadRequest, ReceiveRequest, SendRequest, TopicType};
use txmq_cluster_tests::{Cluster, ClusterOptions, wait_for_transaction};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rocketmq/official_python.py");

/// Runs an official client's driver (`command`, already given its arguments); its JSON
/// result, or what it wrote to stderr when it failed.
fn run_driver(mut command: Command, what: &str) -> Result<Value, String> {
    let output = command
        .output()
        .map_err(|e| format!("running the {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the {what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "the {what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The official Python client's script, for one scenario against `endpoint`.
fn python_command(endpoint: &str, args: &[&str]) -> Result<Command> {
    let interpreter = std::env::var("TXMQ_ROCKETMQ_PYTHON").context(
        "TXMQ_ROCKETMQ_PYTHON is not set: run these tests through ./scripts/test.sh, which \
         installs the official RocketMQ Python client in a venv",
    )?;
    let mut command = Command::new(interpreter);
    command.arg(SCRIPT).arg(endpoint).args(args);
    Ok(command)
}

/// Runs one scenario of the official Python client against `endpoint`; its JSON result.
fn python(endpoint: &str, args: &[&str]) -> Result<Value> {
    run_driver(
        python_command(endpoint, args)?,
        "official RocketMQ Python client",
    )
    .map_err(anyhow::Error::msg)
}

/// Fails unless `group` has nothing more to receive from `topic` (through txmq's own API);
/// `what` says what that shows.
async fn nothing_left(client: &Client, group: &str, topic: &str, what: &str) -> Result<()> {
    let left = client
        .receive(ReceiveRequest {
            group: group.into(),
            topic: topic.into(),
            max: 10,
            ..Default::default()
        })
        .await?;
    ensure!(left.is_empty(), "{what}: {left:?}");
    Ok(())
}

async fn rocketmq_cluster() -> Result<(Cluster, Client)> {
    let options = ClusterOptions {
        rocketmq: true,
        extra_args: [
            "--txn-first-check-delay",
            "2s",
            "--txn-check-interval",
            "2s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    Ok((cluster, client))
}

fn rocketmq_addr(cluster: &Cluster, id: u64) -> Result<String> {
    cluster.nodes[&id]
        .rocketmq_addr
        .clone()
        .context("the node has no RocketMQ port")
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_sends_receives_and_interoperates() -> Result<()> {
    let (cluster, client) = rocketmq_cluster().await?;
    let endpoint = rocketmq_addr(&cluster, 1)?;
    client.create_topic("rn", TopicType::Normal, 2).await?;
    let sent = python(&endpoint, &["send", "rn", "3"])?;
    let sent_ids = strings(&sent["message_ids"]);
    ensure!(sent_ids.len() == 3, "{sent}");
    // Stored by txmq with the client's message ids, readable through txmq's own API.
    let stored = client
        .read(ReadRequest {
            topic: "rn".into(),
            max: 100,
            ..Default::default()
        })
        .await?;
    let stored_ids: BTreeSet<String> = stored
        .iter()
        .filter_map(|m| m.properties.get("rmq.message-id").cloned())
        .collect();
    ensure!(stored_ids == sent_ids, "{stored_ids:?} vs {sent_ids:?}");
    // A message sent through txmq's API reaches the RocketMQ consumer too.
    client
        .send(SendRequest {
            topic: "rn".into(),
            body: b"from-txmq".to_vec().into(),
            key: "native-key".into(),
            tag: "native".into(),
            ..Default::default()
        })
        .await?;
    let got = python(&endpoint, &["receive", "rn", "g1", "4"])?;
    let messages = got["messages"].as_array().context("messages")?;
    ensure!(messages.len() == 4, "{got}");
    let received_ids: BTreeSet<String> = messages
        .iter()
        .filter_map(|m| m["message_id"].as_str().map(str::to_string))
        .collect();
    ensure!(sent_ids.is_subset(&received_ids), "{got}");
    for m in messages {
        ensure!(m["delivery_attempt"] == 1, "{m}");
        if m["body"] == "normal-1" {
            ensure!(m["tag"] == "plain" && m["properties"]["n"] == "1", "{m}");
            ensure!(
                strings(&m["keys"]) == BTreeSet::from(["key-1".to_string()]),
                "{m}"
            );
        }
        if m["body"] == "from-txmq" {
            ensure!(m["tag"] == "native", "{m}");
            ensure!(
                strings(&m["keys"]) == BTreeSet::from(["native-key".to_string()]),
                "{m}"
            );
        }
    }
    // Acked by the RocketMQ consumer: nothing is left for the group in txmq.
    nothing_left(&client, "g1", "rn", "acked messages came back").await?;
    // And a message sent with the RocketMQ client is consumed by txmq's own consumer.
    let native = client
        .receive(ReceiveRequest {
            group: "native-group".into(),
            topic: "rn".into(),
            max: 10,
            ..Default::default()
        })
        .await?;
    ensure!(
        native.iter().any(|m| m.body.as_ref() == b"normal-0"),
        "{native:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_comes_back_with_a_higher_delivery_attempt() -> Result<()> {
    let (cluster, client) = rocketmq_cluster().await?;
    let endpoint = rocketmq_addr(&cluster, 2)?;
    client.create_topic("once", TopicType::Normal, 1).await?;
    let sent = python(&endpoint, &["send", "once", "1"])?;
    let id = sent["message_ids"][0].as_str().context("id")?.to_string();
    let result = python(&endpoint, &["redeliver", "once", "g"])?;
    let attempts = result["attempts"].as_array().context("attempts")?;
    ensure!(attempts.len() == 2, "{result}");
    ensure!(
        attempts.iter().all(|a| a["message_id"] == id.as_str()),
        "{result}"
    );
    ensure!(
        attempts[0]["delivery_attempt"] == 1 && attempts[1]["delivery_attempt"] == 2,
        "{result}"
    );
    // Extended, then acked: gone for the group.
    nothing_left(
        &client,
        "g",
        "once",
        "the extended then acked message came back",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_gets_the_messages_its_tag_filter_admits() -> Result<()> {
    let (cluster, client) = rocketmq_cluster().await?;
    let endpoint = rocketmq_addr(&cluster, 3)?;
    client.create_topic("pushed", TopicType::Normal, 2).await?;
    for (i, tag) in ["keep", "skip", "keep", "other"].iter().enumerate() {
        client
            .send(SendRequest {
                topic: "pushed".into(),
                body: format!("{tag}-{i}").into_bytes().into(),
                tag: tag.to_string(),
                ..Default::default()
            })
            .await?;
    }
    let got = python(&endpoint, &["push", "pushed", "pusher", "2", "keep"])?;
    ensure!(
        strings(&got["bodies"]) == BTreeSet::from(["keep-0".to_string(), "keep-2".to_string()]),
        "{got}"
    );
    ensure!(
        got["bodies"].as_array().map(Vec::len) == Some(2),
        "each once: {got}"
    );
    // The skipped ones were consumed for the group, as RocketMQ does: nothing is left.
    nothing_left(
        &client,
        "pusher",
        "pushed",
        "skipped messages were not consumed for the group",
    )
    .await?;
    Ok(())
}

/// Commit, rollback and a check-back answered by the client's TransactionChecker; what a
/// RocketMQ consumer then receives.
async fn transactions_decide_as_the_client_says(
    cluster: &Cluster,
    client: &Client,
    via: u64,
    group: &str,
) -> Result<()> {
    let endpoint = rocketmq_addr(cluster, via)?;
    let result = python(&endpoint, &["transactions", "rt", "60", "rt-probe"])?;
    let txn = |name: &str| {
        result[name]["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let timeout = Duration::from_secs(30);
    wait_for_transaction(client, &txn("commit"), "committed", timeout).await?;
    wait_for_transaction(client, &txn("rollback"), "rolled_back", timeout).await?;
    let checked = wait_for_transaction(client, &txn("check"), "committed", timeout).await?;
    ensure!(checked.reason == "check", "{checked:?}");
    let check_id = result["check"]["message_id"].as_str().context("id")?;
    ensure!(strings(&result["checked"]).contains(check_id), "{result}");
    let delivered = result["delivered"].as_array().context("delivered")?;
    ensure!(
        delivered.iter().any(|m| m["message_id"] == check_id),
        "{result}"
    );
    let got = python(&endpoint, &["receive", "rt", group, "2"])?;
    let bodies: BTreeSet<String> = got["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_string))
        .collect();
    ensure!(
        bodies == BTreeSet::from(["txn-commit".to_string(), "txn-check".to_string()]),
        "{got}"
    );
    for m in got["messages"].as_array().context("messages")? {
        ensure!(
            strings(&m["keys"]).contains("second"),
            "every key kept: {m}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_transactions_commit_roll_back_and_answer_checks_across_a_failover()
-> Result<()> {
    let (mut cluster, client) = rocketmq_cluster().await?;
    client.create_topic("rt", TopicType::Transaction, 2).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let other = (1..=3).find(|id| *id != leader).context("a follower")?;
    transactions_decide_as_the_client_says(&cluster, &client, other, "before").await?;
    // The leader dies: the client keeps working through the others; checks continue.
    cluster.node(leader).kill();
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    transactions_decide_as_the_client_says(&cluster, &client, other, "after").await?;
    Ok(())
}

/// QueryRoute for `topic` through txmq's generated RocketMQ client over `channel`.
async fn route_status(channel: tonic::transport::Channel, topic: &str) -> Result<i32> {
    use txmq_proto::rocketmq as rmq;
    let mut client = rmq::messaging_service_client::MessagingServiceClient::new(channel);
    let response = client
        .query_route(rmq::QueryRouteRequest {
            topic: Some(rmq::Resource {
                resource_namespace: String::new(),
                name: topic.into(),
            }),
            endpoints: None,
        })
        .await?
        .into_inner();
    Ok(response.status.map_or(0, |s| s.code))
}

/// With TLS on, the RocketMQ port serves TLS; with `--rocketmq-allow-plaintext` it also takes
/// plaintext on the same port (told apart by the first byte), as Java (TLS by default) and
/// Python (plaintext by default) clients need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rocketmq_port_serves_tls_and_plaintext_when_allowed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    txmq_cluster_tests::secure::create_certs(&certs)?;
    let path = |name: &str| certs.join(name).display().to_string();
    let options = ClusterOptions {
        rocketmq: true,
        extra_args: vec![
            "--tls-cert".into(),
            path("node.pem"),
            "--tls-key".into(),
            path("node.key"),
            "--rocketmq-allow-plaintext".into(),
        ],
        client: txmq_cluster_tests::secure::client_options(&certs, "", "")?,
        ..Default::default()
    };
    let mut cluster = Cluster::start(1, options).await?;
    let client = cluster.client()?;
    client.create_topic("both", TopicType::Normal, 1).await?;
    let endpoint = rocketmq_addr(&cluster, 1)?;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(
            certs.join("ca.pem"),
        )?))
        .domain_name("localhost");
    let secure = tonic::transport::Channel::from_shared(format!("https://{endpoint}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    ensure!(route_status(secure, "both").await? == 20000, "over TLS");
    let plain = tonic::transport::Channel::from_shared(format!("http://{endpoint}"))?
        .connect()
        .await?;
    ensure!(route_status(plain, "both").await? == 20000, "in plaintext");
    // And the official client, in plaintext (its default), sends through the same port.
    let sent = python(&endpoint, &["send", "both", "1"])?;
    ensure!(strings(&sent["message_ids"]).len() == 1, "{sent}");
    Ok(())
}

/// Runs one scenario of the official Rust client's driver (interop/rocketmq-rust, built by the
/// test command; `TXMQ_ROCKETMQ_RUST_CLIENT` names the binary).
fn rust_client(endpoint: &str, args: &[&str]) -> Result<Value> {
    let binary = std::env::var("TXMQ_ROCKETMQ_RUST_CLIENT").context(
        "TXMQ_ROCKETMQ_RUST_CLIENT is not set: run these tests through ./scripts/test.sh, which \
         builds interop/rocketmq-rust with the official RocketMQ Rust client",
    )?;
    let mut command = Command::new(binary);
    command.arg(args[0]).arg(endpoint).args(&args[1..]);
    run_driver(command, "official RocketMQ Rust client").map_err(anyhow::Error::msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_rust_client_sends_receives_and_decides_transactions() -> Result<()> {
    let (cluster, client) = rocketmq_cluster().await?;
    let endpoint = rocketmq_addr(&cluster, 1)?;
    client
        .create_topic("rust-normal", TopicType::Normal, 2)
        .await?;
    client
        .create_topic("rust-txn", TopicType::Transaction, 2)
        .await?;
    let sent = rust_client(&endpoint, &["send", "rust-normal", "3"])?;
    let sent_ids = strings(&sent["message_ids"]);
    ensure!(sent_ids.len() == 3, "{sent}");
    let got = rust_client(&endpoint, &["receive", "rust-normal", "rust-group", "3"])?;
    let messages = got["messages"].as_array().context("messages")?;
    let got_ids: BTreeSet<String> = messages
        .iter()
        .filter_map(|m| m["message_id"].as_str().map(str::to_string))
        .collect();
    ensure!(got_ids == sent_ids, "{got}");
    ensure!(
        messages
            .iter()
            .all(|m| m["tag"] == "rust" && m["delivery_attempt"] == 1),
        "{got}"
    );
    let result = rust_client(&endpoint, &["transactions", "rust-txn", "60"])?;
    let txn = |name: &str| {
        result[name]["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let timeout = Duration::from_secs(30);
    wait_for_transaction(&client, &txn("commit"), "committed", timeout).await?;
    wait_for_transaction(&client, &txn("rollback"), "rolled_back", timeout).await?;
    let checked = wait_for_transaction(&client, &txn("check"), "committed", timeout).await?;
    ensure!(checked.reason == "check", "{checked:?}");
    let check_id = result["check"]["message_id"].as_str().context("id")?;
    ensure!(strings(&result["checked"]).contains(check_id), "{result}");
    let delivered = result["delivered"].as_array().context("delivered")?;
    ensure!(
        delivered.iter().any(|m| m["message_id"] == check_id),
        "{result}"
    );
    let got = rust_client(&endpoint, &["receive", "rust-txn", "rust-txn-group", "2"])?;
    let bodies: BTreeSet<String> = got["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_string))
        .collect();
    ensure!(
        bodies == BTreeSet::from(["rust-txn-commit".to_string(), "rust-txn-check".to_string()]),
        "{got}"
    );
    Ok(())
}

/// Runs a scenario of the Python client signing with `keys` (access key, secret key); its
/// stderr when it fails.
fn python_signed(endpoint: &str, keys: (&str, &str), args: &[&str]) -> Result<Value, String> {
    let mut command = python_command(endpoint, args).map_err(|e| e.to_string())?;
    command.env("RMQ_AK", keys.0).env("RMQ_SK", keys.1);
    run_driver(command, "official RocketMQ Python client")
}

/// With txmq's authentication on, RocketMQ clients sign their requests with an access key made
/// by an administrator; the request acts as that user, under its rights. Unsigned, wrongly
/// signed and unauthorized requests are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_act_as_their_user_and_others_are_refused() -> Result<()> {
    use txmq_cluster_tests::secure::{ADMIN, ADMIN_PASSWORD};
    let dir = tempfile::tempdir()?;
    let admin_file = dir.path().join("admin");
    std::fs::write(&admin_file, format!("{ADMIN}:{ADMIN_PASSWORD}\n"))?;
    let options = ClusterOptions {
        rocketmq: true,
        extra_args: vec![
            "--auth-admin-file".into(),
            admin_file.display().to_string(),
            "--txn-first-check-delay".into(),
            "2s".into(),
        ],
        client: txmq_client::ClientOptions {
            credentials: Some(txmq_client::Credentials {
                user: ADMIN.into(),
                password: ADMIN_PASSWORD.into(),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let admin = cluster.client()?;
    admin.create_topic("rt", TopicType::Transaction, 2).await?;
    admin.create_topic("other", TopicType::Normal, 1).await?;
    admin.create_user("alice", "alice-password-1").await?;
    admin
        .grant(
            "alice",
            txmq_client::AccessRight {
                kind: "produce".into(),
                topics: "rt".into(),
                groups: String::new(),
            },
        )
        .await?;
    // The driver waits for its check answer to land by receiving through "rt-probe".
    admin
        .grant(
            "alice",
            txmq_client::AccessRight {
                kind: "consume".into(),
                topics: "rt".into(),
                groups: "rt-probe".into(),
            },
        )
        .await?;
    let key = admin.create_access_key("alice", false).await?;
    ensure!(
        key.access_key == "alice" && key.secret_key.len() >= 32,
        "{key:?}"
    );
    ensure!(
        !format!("{:?}", admin.list_users().await?).contains(&key.secret_key),
        "user list shows the secret"
    );
    let endpoint = rocketmq_addr(&cluster, 1)?;
    let alice = ("alice", key.secret_key.as_str());
    // Alice's transactions work, check-back included.
    let result = python_signed(&endpoint, alice, &["transactions", "rt", "60", "rt-probe"])
        .map_err(anyhow::Error::msg)?;
    let check = result["check"]["transaction_id"].as_str().context("id")?;
    let checked = wait_for_transaction(&admin, check, "committed", Duration::from_secs(30)).await?;
    ensure!(checked.reason == "check", "{checked:?}");
    let check_id = result["check"]["message_id"].as_str().context("id")?;
    let delivered = result["delivered"].as_array().context("delivered")?;
    ensure!(
        delivered.iter().any(|m| m["message_id"] == check_id),
        "{result}"
    );
    // No right on "other": forbidden. A wrong secret, or none: unauthorized.
    let denied = python_signed(&endpoint, alice, &["send", "other", "1"]);
    ensure!(
        matches!(&denied, Err(e) if e.contains("FORBIDDEN") || e.contains("40300")),
        "{denied:?}"
    );
    // (The client only logs why its route was refused; the nodes' audit log says it.)
    let wrong = python_signed(&endpoint, ("alice", "not-the-secret"), &["send", "rt", "1"]);
    ensure!(wrong.is_err(), "{wrong:?}");
    let unsigned = python_signed(&endpoint, ("", ""), &["send", "rt", "1"]);
    ensure!(unsigned.is_err(), "{unsigned:?}");
    let logs = cluster.logs();
    ensure!(
        logs.contains("the signature does not match access key 'alice'")
            && logs.contains("signed without an access key"),
        "the refusals are not in the audit log:\n{logs}"
    );
    ensure!(!logs.contains(&key.secret_key), "a node logged the secret");
    Ok(())
}

/// ForwardMessageToDeadLetterQueue (what a PushConsumer calls when its own retries are used
/// up) moves the delivered message to the group's dead-letter topic at once; the group never
/// sees it again, and a stale receipt handle cannot move anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_can_move_its_message_to_the_dead_letters() -> Result<()> {
    use futures::StreamExt;
    use txmq_proto::rocketmq as rmq;
    let (cluster, client) = rocketmq_cluster().await?;
    client.create_topic("dl", TopicType::Normal, 1).await?;
    client
        .send(SendRequest {
            topic: "dl".into(),
            body: b"poison".to_vec().into(),
            ..Default::default()
        })
        .await?;
    let endpoint = rocketmq_addr(&cluster, 2)?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{endpoint}"))?
        .connect()
        .await?;
    let mut rocketmq = rmq::messaging_service_client::MessagingServiceClient::new(channel);
    let resource = |name: &str| rmq::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    };
    let receive = rmq::ReceiveMessageRequest {
        group: Some(resource("g")),
        message_queue: Some(rmq::MessageQueue {
            topic: Some(resource("dl")),
            ..Default::default()
        }),
        batch_size: 1,
        invisible_duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    };
    let mut stream = rocketmq.receive_message(receive).await?.into_inner();
    let mut handle = None;
    while let Some(part) = stream.next().await {
        if let Some(rmq::receive_message_response::Content::Message(m)) = part?.content {
            handle = m.system_properties.and_then(|s| s.receipt_handle);
        }
    }
    let handle = handle.context("no message received")?;
    let forward = rmq::ForwardMessageToDeadLetterQueueRequest {
        group: Some(resource("g")),
        topic: Some(resource("dl")),
        receipt_handle: handle,
        delivery_attempt: 1,
        max_delivery_attempts: 1,
        ..Default::default()
    };
    let status = |r: rmq::ForwardMessageToDeadLetterQueueResponse| r.status.map_or(0, |s| s.code);
    let first = rocketmq
        .forward_message_to_dead_letter_queue(forward.clone())
        .await?;
    ensure!(status(first.into_inner()) == 20000, "the move was refused");
    let again = rocketmq
        .forward_message_to_dead_letter_queue(forward)
        .await?;
    ensure!(
        status(again.into_inner()) == 40013,
        "a used handle moved something"
    );
    let dead = client
        .read(ReadRequest {
            topic: "dlq.g".into(),
            max: 10,
            ..Default::default()
        })
        .await?;
    ensure!(
        dead.len() == 1 && dead[0].body.as_ref() == b"poison",
        "{dead:?}"
    );
    nothing_left(
        &client,
        "g",
        "dl",
        "the group got the dead-lettered message again",
    )
    .await?;
    Ok(())
}
