//! Scenarios and load with the official RocketMQ Rust client against a txmq RocketMQ port.
//!
//! ```text
//! rocketmq-rust-interop send ENDPOINT TOPIC COUNT
//! rocketmq-rust-interop transactions ENDPOINT TOPIC WAIT_SECONDS
//! rocketmq-rust-interop receive ENDPOINT TOPIC GROUP COUNT
//! rocketmq-rust-interop bench ENDPOINT TOPIC normal|transaction CONCURRENCY SECONDS
//! ```
//!
//! Each prints one JSON document; a client failure exits non-zero with the reason.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq::model::transaction::{Transaction, TransactionResolution};
use rocketmq::{Producer, SimpleConsumer};
use serde_json::{json, Value};

fn client_option(endpoint: &str) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(endpoint);
    option.set_enable_tls(false);
    option.set_timeout(Duration::from_secs(10));
    option
}

fn producer_option(topic: &str) -> ProducerOption {
    let mut option = ProducerOption::default();
    option.set_topics(vec![topic]);
    option
}

fn failed(what: &str, e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e:?}")
}

async fn send(endpoint: &str, topic: &str, count: usize) -> Result<Value> {
    let mut producer = Producer::new(producer_option(topic), client_option(endpoint))
        .map_err(|e| failed("new producer", e))?;
    producer.start().await.map_err(|e| failed("start", e))?;
    let mut ids = Vec::new();
    for i in 0..count {
        let message = MessageBuilder::builder()
            .set_topic(topic)
            .set_tag("rust")
            .set_keys(vec![format!("rust-key-{i}")])
            .set_body(format!("rust-{i}").into_bytes())
            .build()
            .map_err(|e| failed("build", e))?;
        let receipt = producer
            .send(message)
            .await
            .map_err(|e| failed("send", e))?;
        ids.push(receipt.message_id().to_string());
    }
    producer
        .shutdown()
        .await
        .map_err(|e| failed("shutdown", e))?;
    Ok(json!({ "message_ids": ids }))
}

/// Commit one, roll back one, leave one for the check-back, which the checker commits.
async fn transactions(endpoint: &str, topic: &str, wait: Duration) -> Result<Value> {
    let checked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen = checked.clone();
    let mut producer = Producer::new_transaction_producer(
        producer_option(topic),
        client_option(endpoint),
        Box::new(move |_transaction_id, message| {
            if let Ok(mut seen) = seen.lock() {
                seen.insert(message.message_id().to_string());
            }
            TransactionResolution::COMMIT
        }),
    )
    .map_err(|e| failed("new transactional producer", e))?;
    producer.start().await.map_err(|e| failed("start", e))?;
    let mut out = serde_json::Map::new();
    for name in ["commit", "rollback", "check"] {
        let message = MessageBuilder::transaction_message_builder(
            topic,
            format!("rust-txn-{name}").into_bytes(),
        )
        .set_tag(name)
        .build()
        .map_err(|e| failed("build", e))?;
        let transaction = producer
            .send_transaction_message(message)
            .await
            .map_err(|e| failed("send half", e))?;
        out.insert(
            name.into(),
            json!({"message_id": transaction.message_id(), "transaction_id": transaction.transaction_id()}),
        );
        match name {
            "commit" => transaction
                .commit()
                .await
                .map_err(|e| failed("commit", e))?,
            "rollback" => transaction
                .rollback()
                .await
                .map_err(|e| failed("rollback", e))?,
            _ => {}
        }
    }
    let check_id = out["check"]["message_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let checked = await_check(&checked, &check_id, wait).await;
    out.insert("checked".into(), json!(checked));
    // The client calls the checker first and sends its answer afterwards: shutting down as soon
    // as the checker has run can drop that answer. Both committed messages reaching a consumer
    // show the answer has landed.
    if checked.contains(&check_id) {
        let mut probe = receive(endpoint, topic, "rust-txn-probe", 2).await?;
        out.insert("delivered".into(), probe["messages"].take());
    }
    producer
        .shutdown()
        .await
        .map_err(|e| failed("shutdown", e))?;
    Ok(Value::Object(out))
}

/// Waits (at most `wait`) for the checker to have been asked about `message_id`; the ids it
/// was asked about.
async fn await_check(
    checked: &Mutex<HashSet<String>>,
    message_id: &str,
    wait: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let asked = || {
        checked
            .lock()
            .map(|s| s.contains(message_id))
            .unwrap_or(false)
    };
    while Instant::now() < deadline && !asked() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    checked
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

async fn receive(endpoint: &str, topic: &str, group: &str, want: usize) -> Result<Value> {
    let mut option = SimpleConsumerOption::default();
    option.set_topics(vec![topic]);
    option.set_consumer_group(group);
    let mut client = client_option(endpoint);
    client.set_long_polling_timeout(Duration::from_secs(5));
    let mut consumer =
        SimpleConsumer::new(option, client).map_err(|e| failed("new consumer", e))?;
    consumer.start().await.map_err(|e| failed("start", e))?;
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want && Instant::now() < deadline {
        let messages = consumer
            .receive_with(topic, &filter, 16, Duration::from_secs(30))
            .await
            .map_err(|e| failed("receive", e))?;
        for m in messages {
            got.push(json!({
                "message_id": m.message_id(),
                "body": String::from_utf8_lossy(m.body()),
                "tag": m.tag(),
                "keys": m.keys(),
                "delivery_attempt": m.delivery_attempt(),
            }));
            consumer.ack(&m).await.map_err(|e| failed("ack", e))?;
        }
    }
    consumer
        .shutdown()
        .await
        .map_err(|e| failed("shutdown", e))?;
    Ok(json!({ "messages": got }))
}

/// `concurrency` tasks sending (and, for transactions, committing) for `seconds` through one
/// producer; throughput and latency of each operation (send, or send + commit).
async fn bench(
    endpoint: &str,
    topic: &str,
    kind: &str,
    concurrency: usize,
    seconds: u64,
) -> Result<Value> {
    let transactional = match kind {
        "normal" => false,
        "transaction" => true,
        other => bail!("bench kind must be normal or transaction, not {other}"),
    };
    let mut producer = if transactional {
        Producer::new_transaction_producer(
            producer_option(topic),
            client_option(endpoint),
            Box::new(|_, _| TransactionResolution::COMMIT),
        )
    } else {
        Producer::new(producer_option(topic), client_option(endpoint))
    }
    .map_err(|e| failed("new producer", e))?;
    producer.start().await.map_err(|e| failed("start", e))?;
    let producer = Arc::new(producer);
    let end = Instant::now() + Duration::from_secs(seconds);
    let body = vec![b'x'; 256];
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (producer, topic, body) = (producer.clone(), topic.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            let mut first_error = None;
            while Instant::now() < end {
                let started = Instant::now();
                let ok = one_operation(&producer, &topic, &body, transactional).await;
                match ok {
                    Ok(()) => {
                        let _ = latencies.record(started.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut all = hdrhistogram::Histogram::<u64>::new(3).context("histogram")?;
    let (mut errors, mut first_error) = (0u64, None);
    for task in tasks {
        let (latencies, e, first) = task.await?;
        all.add(latencies).context("merging latencies")?;
        errors += e;
        first_error = first_error.or(first);
    }
    Ok(json!({
        "kind": kind,
        "concurrency": concurrency,
        "seconds": seconds,
        "ok": all.len(),
        "per_second": all.len() as f64 / seconds as f64,
        "p50_ms": all.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": all.value_at_quantile(0.99) as f64 / 1000.0,
        "errors": errors,
        "first_error": first_error,
    }))
}

async fn one_operation(
    producer: &Producer,
    topic: &str,
    body: &[u8],
    transactional: bool,
) -> Result<()> {
    if transactional {
        let message = MessageBuilder::transaction_message_builder(topic, body.to_vec())
            .build()
            .map_err(|e| failed("build", e))?;
        let transaction = producer
            .send_transaction_message(message)
            .await
            .map_err(|e| failed("send half", e))?;
        transaction.commit().await.map_err(|e| failed("commit", e))
    } else {
        let message = MessageBuilder::builder()
            .set_topic(topic)
            .set_body(body.to_vec())
            .build()
            .map_err(|e| failed("build", e))?;
        producer
            .send(message)
            .await
            .map_err(|e| failed("send", e))?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .context("missing argument (see the usage in src/main.rs)")
    };
    let number = |i: usize| -> Result<u64> { Ok(arg(i)?.parse()?) };
    let result = match arg(0)? {
        "send" => send(arg(1)?, arg(2)?, number(3)? as usize).await?,
        "transactions" => transactions(arg(1)?, arg(2)?, Duration::from_secs(number(3)?)).await?,
        "receive" => receive(arg(1)?, arg(2)?, arg(3)?, number(4)? as usize).await?,
        "bench" => bench(arg(1)?, arg(2)?, arg(3)?, number(4)? as usize, number(5)?).await?,
        other => bail!("unknown scenario {other}"),
    };
    println!("{result}");
    Ok(())
}
