//! Hostile input against real nodes: garbage, HTTP/1 and oversized frames on every port, and
//! every request field at and past its limits. Each gets a clear error or a closed connection,
//! no node dies, and the cluster still agrees and serves afterwards.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Result, ensure};
use txmq_client::{
    AckResult, Client, ClientError, EndTransactionRequest, ReceiveRequest, SendHalfRequest,
    SendRequest, SendRequestExt, TopicType,
};
use txmq_cluster_tests::{Cluster, ClusterOptions};

/// The HTTP/2 connection preface, then a frame header announcing a 16 MiB HEADERS frame (far
/// past the 16 KiB a server accepts unless it said otherwise).
fn oversized_frame() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 1, 4, 0, 0, 0, 1]); // HEADERS, 16 MiB
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    bytes
}

/// Sends `bytes` and reads until the server closes or stops answering; returns what came back.
fn poke(addr: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || answer.len() > 1 << 20 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(answer)
}

fn refused<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    code: &str,
    what: &str,
) -> Result<()> {
    match result {
        Err(e) if e.code == code && !e.message.is_empty() => Ok(()),
        other => anyhow::bail!("{what}: expected {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_port_is_refused_and_the_cluster_carries_on() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let mut garbage = vec![0u8; 64 * 1024];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 7) as u8;
    }
    let http1 = b"GET / HTTP/1.1\r\nHost: txmq\r\nContent-Length: 999999999\r\n\r\nxyz".to_vec();
    let node = &cluster.nodes[&1];
    let ports = [
        ("client", node.client_addr.clone()),
        ("peer", node.peer_addr.clone()),
        ("metrics", node.metrics_addr.clone()),
    ];
    for (port, addr) in &ports {
        for (what, bytes) in [
            ("garbage", &garbage),
            ("HTTP/1", &http1),
            ("oversized frame", &oversized_frame()),
        ] {
            let answer = poke(addr, bytes)?;
            ensure!(
                answer.len() < 1 << 20,
                "{port} port answered {what} with {} bytes",
                answer.len()
            );
        }
    }
    for id in 1..=3 {
        ensure!(
            cluster.node(id).is_running(),
            "node {id} died of hostile input"
        );
    }
    let client = cluster.client()?;
    client.create_topic("after", TopicType::Normal, 1).await?;
    client.send(SendRequest::new("after", "still here")).await?;
    let (ok, out) = cluster.cli(&["--endpoints", &cluster.endpoints_csv(), "cluster", "check"])?;
    ensure!(ok, "cluster check after hostile input: {out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_at_and_past_its_limits_gets_a_clear_error() -> Result<()> {
    let options = ClusterOptions {
        extra_args: ["--max-message-bytes", "65536"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let c = cluster.client()?;
    c.create_topic("t", TopicType::Normal, 2).await?;
    c.create_topic("tx", TopicType::Transaction, 1).await?;
    let long = "n".repeat(129);
    refused(
        c.create_topic(&long, TopicType::Normal, 1).await,
        "invalid_argument",
        "long topic name",
    )?;
    refused(
        c.create_topic("a b", TopicType::Normal, 1).await,
        "invalid_argument",
        "space in a name",
    )?;
    refused(
        c.create_topic("q", TopicType::Normal, 100_000).await,
        "invalid_argument",
        "queues",
    )?;
    let at_limit = SendRequest::new("t", vec![7u8; 65536]);
    c.send(at_limit).await?;
    refused(
        c.send(SendRequest::new("t", vec![7u8; 65537])).await,
        "invalid_argument",
        "body past the limit",
    )?;
    let too_big = SendRequest::new("t", vec![7u8; 8 << 20]);
    refused(
        c.send(too_big).await,
        "resource_exhausted",
        "an 8 MiB request",
    )?;
    let mut many = SendRequest::new("t", "p");
    many.properties = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    refused(c.send(many).await, "invalid_argument", "65 properties")?;
    let mut huge_key = SendRequest::new("t", "p");
    huge_key.properties = [("k".repeat(1025), "v".to_string())].into_iter().collect();
    refused(
        c.send(huge_key).await,
        "invalid_argument",
        "a 1025-byte property name",
    )?;
    let mut key = SendRequest::new("t", "p");
    key.key = "k".repeat(1025);
    refused(c.send(key).await, "invalid_argument", "a 1025-byte key")?;
    receipts_ids_and_durations(&c).await?;
    let (ok, out) = cluster.cli(&["--endpoints", &cluster.endpoints_csv(), "cluster", "check"])?;
    ensure!(ok, "cluster check after bad requests: {out}");
    let read = c
        .read(txmq_client::ReadRequest {
            topic: "t".into(),
            max: 10,
            ..Default::default()
        })
        .await?;
    ensure!(
        read.len() == 1,
        "only the message at the limit was stored: {}",
        read.len()
    );
    Ok(())
}

async fn receipts_ids_and_durations(c: &Client) -> Result<()> {
    let receive = |invisible_ms| ReceiveRequest {
        topic: "t".into(),
        group: "g".into(),
        max: 1,
        invisible_ms,
        ..Default::default()
    };
    refused(
        c.receive(receive(u64::MAX)).await,
        "invalid_argument",
        "an endless invisible duration",
    )?;
    let results = c
        .ack("g", "t", vec!["not-a-receipt".into(), "x".repeat(10_000)])
        .await;
    match results {
        Ok(r) => ensure!(
            r.len() == 2 && r.iter().all(|a: &AckResult| a.outcome == "invalid"),
            "{r:?}"
        ),
        Err(e) => ensure!(e.code == "invalid_argument", "{e:?}"),
    }
    let change = c
        .change_invisible_duration("g", "t", "garbage", Duration::from_secs(10))
        .await;
    ensure!(change.is_err(), "a garbage receipt changed something");
    let end = EndTransactionRequest {
        transaction_id: "T-not-an-id".into(),
        group: "pg".into(),
        decision: 1,
        operator: false,
    };
    refused(
        c.end_transaction(end).await,
        "invalid_argument",
        "a malformed transaction id",
    )?;
    let half = SendHalfRequest {
        topic: "tx".into(),
        group: "".into(),
        body: b"b".to_vec().into(),
        ..Default::default()
    };
    refused(
        c.send_half(half).await,
        "invalid_argument",
        "an empty producer group",
    )?;
    refused(
        c.get_message("zz").await,
        "invalid_argument",
        "a malformed message id",
    )?;
    Ok(())
}
