//! `txmq message show|find`: looking a message up by id or by key (what RocketMQ's
//! `mqadmin queryMsgById` / `queryMsgByKey` give).

use clap::Subcommand;
use serde_json::json;
use txmq_client::{Client, ClientError, ReadRequest};

use super::Output;
use super::message::message_json;
use super::output::human_time;

/// The most messages one read page asks for while searching by key.
const PAGE: u32 = 1000;

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// One message by its id: topic, queue, offset, key, tag, properties, body, and for a
    /// transactional message its transaction's state and history.
    Show { message_id: String },
    /// Messages of a topic with this key (reads the topic's retained messages from the node
    /// asked, page by page: on a big topic this takes a while).
    Find {
        topic: String,
        #[arg(long)]
        key: String,
        /// Stop after this many matches.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

pub async fn run(client: &Client, cmd: MessageCommand, out: Output) -> Result<(), ClientError> {
    match cmd {
        MessageCommand::Show { message_id } => show(client, &message_id, out).await,
        MessageCommand::Find { topic, key, limit } => find(client, &topic, &key, limit, out).await,
    }
}

async fn show(client: &Client, id: &str, out: Output) -> Result<(), ClientError> {
    let found = client.get_message(id).await?;
    let Some(m) = found.message else {
        return Err(ClientError::new("not_found", format!("no message {id}")));
    };
    let mut doc = message_json(&m);
    if let Some(t) = &found.transaction {
        doc["transaction"] = json!({
            "transaction_id": t.transaction_id, "state": t.state, "reason": t.reason,
            "group": t.group,
            "history": t.history.iter().map(|e| json!({"at_ms": e.at_ms, "event": e.event, "description": e.description})).collect::<Vec<_>>(),
        });
    }
    out.print(&doc, || {
        let mut s = format!(
            "{} in {} q{}@{}  born {}\n  key '{}'  tag '{}'  properties {:?}\n  body: {}",
            m.message_id,
            m.topic,
            m.queue,
            m.offset,
            human_time(m.born_at_ms),
            m.key,
            m.tag,
            m.properties,
            String::from_utf8_lossy(&m.body)
        );
        if let Some(t) = &found.transaction {
            s.push_str(&format!(
                "\n  transaction {} {} ({}), group {}",
                t.transaction_id, t.state, t.reason, t.group
            ));
            for e in &t.history {
                s.push_str(&format!("\n    {}  {}", human_time(e.at_ms), e.description));
            }
        }
        s
    });
    Ok(())
}

async fn find(
    client: &Client,
    topic: &str,
    key: &str,
    limit: usize,
    out: Output,
) -> Result<(), ClientError> {
    let info = client.describe_topic(topic).await?;
    let mut found = 0;
    for q in &info.queue_info {
        let mut from = q.low_offset;
        while from < q.next_offset && found < limit {
            let req = ReadRequest {
                topic: topic.into(),
                queue: Some(q.queue),
                from_offset: from,
                max: PAGE,
            };
            let page = client.read(req).await?;
            let Some(last) = page.last() else { break };
            from = last.offset + 1;
            for m in page.iter().filter(|m| m.key == key).take(limit - found) {
                out.print(&message_json(m), || {
                    format!(
                        "{}\tq{}@{}\t{}\t{}",
                        m.message_id,
                        m.queue,
                        m.offset,
                        human_time(m.born_at_ms),
                        String::from_utf8_lossy(&m.body)
                    )
                });
                found += 1;
            }
        }
    }
    if found == 0 && !out.json() {
        eprintln!("no retained message of '{topic}' has key '{key}'");
    }
    Ok(())
}
