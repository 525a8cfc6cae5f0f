//! `txmq consume` and `txmq group …`: consumer groups from the command line.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use txmq_client::{
    Client, ClientError, GroupInfo, ReceiveRequest, ResetGroupRequest, reset_group_request,
};

use super::Output;
use super::message::message_json;
use crate::config::HumanDuration;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    #[arg(long)]
    pub group: String,
    /// At most this many messages (1 to 1000).
    #[arg(long, default_value_t = 32)]
    pub max: u32,
    /// Wait up to this long for messages when none are available (long poll).
    #[arg(long, default_value = "0s")]
    pub wait: HumanDuration,
    /// How long received messages stay invisible to the rest of the group.
    #[arg(long, default_value = "30s")]
    pub invisible: HumanDuration,
    /// Do not acknowledge: the messages come back after the invisible duration.
    #[arg(long)]
    pub no_ack: bool,
    /// Keep receiving (and acknowledging) until Ctrl-C, like `nats sub`: each round waits up
    /// to `--wait` (at least 5 s) for messages.
    #[arg(long)]
    pub follow: bool,
}

/// How long one `--follow` round waits for messages at least.
const FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Every consumer group with its lag.
    List,
    /// One group's position, lag and in-flight count per queue.
    Describe { group: String, topic: String },
    /// Move a group's position: earliest, latest, an offset (every queue), or a time
    /// (RFC 3339 like 2026-11-22T10:00:00Z, or @UNIX_MILLIS).
    Reset {
        group: String,
        topic: String,
        #[arg(long)]
        to: String,
    },
    /// Forget a group's progress on a topic (it starts again from the oldest retained
    /// message if it receives again).
    Delete { group: String, topic: String },
    /// Change a group's settings.
    Config {
        group: String,
        topic: String,
        /// Deliveries before a message goes to the dead-letter topic `dlq.<group>`.
        #[arg(long)]
        max_delivery_attempts: u32,
    },
}

pub async fn consume(client: &Client, args: ConsumeArgs, out: Output) -> Result<(), ClientError> {
    if !args.follow {
        let got = consume_once(client, &args, args.wait.0, out).await?;
        if got == 0 && !out.json() {
            eprintln!("no messages for group '{}' on '{}'", args.group, args.topic);
        }
        return Ok(());
    }
    let wait = args.wait.0.max(FOLLOW_WAIT);
    let shutdown = super::serve::shutdown_signal();
    tokio::pin!(shutdown);
    let mut waiting_said = false;
    loop {
        let round = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = consume_once(client, &args, wait, out) => r,
        };
        match round {
            Ok(0) if !waiting_said && !out.json() => {
                eprintln!(
                    "waiting for messages on '{}' as group '{}'… (Ctrl-C to stop)",
                    args.topic, args.group
                );
                waiting_said = true;
            }
            Ok(0) => {}
            Ok(_) => waiting_said = false,
            // A failover or a restarting node: the client already retried; say so and go on.
            Err(e) if e.is_retryable() => eprintln!("receive failed ({}); retrying", e.message),
            Err(e) => return Err(e),
        }
    }
}

/// One receive (and its ack); how many messages it printed.
async fn consume_once(
    client: &Client,
    args: &ConsumeArgs,
    wait: std::time::Duration,
    out: Output,
) -> Result<usize, ClientError> {
    let req = ReceiveRequest {
        group: args.group.clone(),
        topic: args.topic.clone(),
        max: args.max,
        invisible_ms: args.invisible.0.as_millis() as u64,
        wait_ms: wait.as_millis() as u64,
    };
    let messages = client.receive(req).await?;
    for m in &messages {
        let mut doc = message_json(m);
        doc["receipt_handle"] = json!(m.receipt_handle);
        out.print(&doc, || {
            format!(
                "{}\tq{}@{}\tattempt {}\t{}",
                m.message_id,
                m.queue,
                m.offset,
                m.delivery_attempt,
                String::from_utf8_lossy(&m.body)
            )
        });
    }
    if !args.no_ack && !messages.is_empty() {
        let receipts = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        let results = client.ack(&args.group, &args.topic, receipts).await?;
        if let Some(bad) = results
            .iter()
            .find(|r| r.outcome != "acked" && r.outcome != "already_acked")
        {
            return Err(ClientError::new(
                "failed_precondition",
                format!(
                    "acknowledging {} failed: {}",
                    bad.receipt_handle, bad.outcome
                ),
            ));
        }
    }
    Ok(messages.len())
}

pub fn group_json(g: &GroupInfo) -> Value {
    json!({
        "group": g.group,
        "topic": g.topic,
        "max_delivery_attempts": g.max_delivery_attempts,
        "lag": g.lag,
        "in_flight": g.in_flight,
        "skipped_by_retention": g.skipped_by_retention,
        "dead_lettered": g.dead_lettered,
        "dead_letter_topic": g.dead_letter_topic,
        "queues": g.queues.iter().map(|q| json!({
            "queue": q.queue, "position": q.ack_offset, "next_offset": q.next_offset, "low_offset": q.low_offset,
            "end_offset": q.end_offset, "lag": q.lag, "in_flight": q.in_flight, "behind_retention": q.behind_retention,
        })).collect::<Vec<_>>(),
    })
}

fn group_text(g: &GroupInfo) -> String {
    let mut s = format!(
        "{} on {}: lag {}, in flight {}, dead-lettered {} (to {}), skipped by retention {}",
        g.group,
        g.topic,
        g.lag,
        g.in_flight,
        g.dead_lettered,
        g.dead_letter_topic,
        g.skipped_by_retention
    );
    for q in &g.queues {
        s.push_str(&format!(
            "\n  queue {}: position {} of {}..{}  lag {}  in flight {}",
            q.queue, q.ack_offset, q.low_offset, q.end_offset, q.lag, q.in_flight
        ));
    }
    s
}

fn reset_target(to: &str) -> Result<reset_group_request::To, ClientError> {
    use reset_group_request::To;
    Ok(match to {
        "earliest" => To::Earliest(true),
        "latest" => To::Latest(true),
        t if t.starts_with('@') => To::TimestampMs(t[1..].parse().map_err(|_| {
            ClientError::new("invalid_argument", format!("'{t}' is not @UNIX_MILLIS"))
        })?),
        t => match t.parse::<u64>() {
            Ok(offset) => To::Offset(offset),
            Err(_) => {
                let time = humantime::parse_rfc3339_weak(t).map_err(|_| {
                    ClientError::new(
                        "invalid_argument",
                        format!("--to '{t}' is not earliest, latest, an offset, an RFC 3339 time or @UNIX_MILLIS"),
                    )
                })?;
                let ms = time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                To::TimestampMs(ms)
            }
        },
    })
}

pub async fn group(client: &Client, cmd: GroupCommand, out: Output) -> Result<(), ClientError> {
    let info = match cmd {
        GroupCommand::List => {
            let groups = client.list_groups().await?;
            let doc = json!({"groups": groups.iter().map(group_json).collect::<Vec<_>>()});
            out.print(&doc, || {
                groups.iter().map(group_text).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        GroupCommand::Describe { group, topic } => client.describe_group(&group, &topic).await?,
        GroupCommand::Delete { group, topic } => {
            client.delete_group(&group, &topic).await?;
            let doc = json!({"deleted_group": group, "topic": topic});
            out.print(&doc, || format!("deleted group {group} on {topic}"));
            return Ok(());
        }
        GroupCommand::Reset { group, topic, to } => {
            let req = ResetGroupRequest {
                group,
                topic,
                to: Some(reset_target(&to)?),
            };
            client.reset_group(req).await?
        }
        GroupCommand::Config {
            group,
            topic,
            max_delivery_attempts,
        } => {
            client
                .configure_group(&group, &topic, max_delivery_attempts)
                .await?
        }
    };
    out.print(&group_json(&info), || group_text(&info));
    Ok(())
}
