//! The client commands of `txmq`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use txmq_client::{
    AddNodeRequest, Client, ClusterStatusResponse, ReadRequest, SendRequest, TopicInfo, TopicType,
};

use super::Output;
use super::message::{MessageArgs, message_json};
use crate::config::HumanDuration;

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(TopicCreateArgs),
    /// List topics.
    List,
    /// Show one topic with its queues' offsets.
    Describe { name: String },
    /// Delete a topic: its messages and its consumer groups' progress go too. Refused while
    /// any of its transactions is pending.
    Delete {
        name: String,
        /// Confirm: the topic's messages cannot be brought back.
        #[arg(long)]
        yes: bool,
    },
    /// Change a topic's retention.
    Update {
        name: String,
        /// Keep messages this long (e.g. 72h).
        #[arg(long)]
        retention: Option<HumanDuration>,
        /// Keep at most this many bytes per queue (0: no size limit).
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TopicTypeArg {
    Normal,
    Transaction,
}

#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    pub name: String,
    /// The message type of the topic, fixed at creation.
    #[arg(long = "type", value_enum)]
    pub kind: TopicTypeArg,
    /// Number of queues (default 4).
    #[arg(long, default_value_t = 4)]
    pub queues: u32,
    /// How long messages are kept (default 72h).
    #[arg(long)]
    pub retention: Option<crate::config::HumanDuration>,
    /// Keep at most this many bytes (default: no size limit).
    #[arg(long)]
    pub retention_bytes: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    pub topic: String,
    #[command(flatten)]
    pub message: MessageArgs,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    pub topic: String,
    /// Only this queue (default: every queue).
    #[arg(long)]
    pub queue: Option<u32>,
    /// Start at this offset in each queue.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// At most this many messages (1 to 1000; per queue and round with --follow).
    #[arg(long, default_value_t = 32)]
    pub max: u32,
    /// Keep printing messages as they are committed (like `tail -f`), until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
}

/// How often `read --follow` looks for new messages when there were none.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes, roles, term, commit and applied index, leader.
    Status,
    /// Add a node: as a learner first, promoted to voter once it caught up.
    AddNode(AddNodeArgs),
    /// Remove a node from the cluster; its id is retired for good.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
    /// Check that the cluster serves transactions now: a leader, every voter answering, and
    /// one transaction committed and read back. Exits non-zero when not (after --timeout).
    Check(super::cluster_check::CheckArgs),
    /// Remove every member whose id is above N, highest first (nothing when there is none).
    /// For clusters whose ids are StatefulSet ordinal + 1: the Helm chart runs this before a
    /// scale-down, so the pods that go away have left the membership first.
    RemoveAbove {
        /// The number of nodes to keep (ids 1..=N stay).
        #[arg(long)]
        keep: u64,
    },
}

#[derive(Debug, Args)]
pub struct AddNodeArgs {
    /// The new node's id (never one used before in this cluster).
    #[arg(long)]
    pub id: u64,
    /// The new node's peer address.
    #[arg(long)]
    pub peer_addr: String,
    /// The new node's client address (for status output).
    #[arg(long, default_value = "")]
    pub client_addr: String,
    /// Keep it a learner (no vote).
    #[arg(long)]
    pub learner_only: bool,
}

pub(super) type CmdResult = Result<(), txmq_client::ClientError>;

fn topic_type_name(t: i32) -> &'static str {
    match TopicType::try_from(t) {
        Ok(TopicType::Normal) => "normal",
        Ok(TopicType::Transaction) => "transaction",
        _ => "unknown",
    }
}

fn topic_json(t: &TopicInfo) -> Value {
    json!({
        "name": t.name,
        "type": topic_type_name(t.r#type),
        "queues": t.queues,
        "retention_ms": t.retention_ms,
        "retention_bytes": t.retention_bytes,
        "created_at_ms": t.created_at_ms,
        "queue_info": t.queue_info.iter().map(|q| json!({
            "queue": q.queue, "low_offset": q.low_offset, "next_offset": q.next_offset
        })).collect::<Vec<_>>(),
    })
}

fn topic_text(t: &TopicInfo) -> String {
    let total: u64 = t
        .queue_info
        .iter()
        .map(|q| q.next_offset - q.low_offset)
        .sum();
    format!(
        "{}\t{}\t{} queues\t{} messages",
        t.name,
        topic_type_name(t.r#type),
        t.queues,
        total
    )
}

pub(super) async fn topic(client: &Client, cmd: TopicCommand, out: Output) -> CmdResult {
    match cmd {
        TopicCommand::Create(args) => {
            let kind = match args.kind {
                TopicTypeArg::Normal => TopicType::Normal,
                TopicTypeArg::Transaction => TopicType::Transaction,
            };
            let req = txmq_proto::client::CreateTopicRequest {
                name: args.name,
                r#type: kind as i32,
                queues: args.queues,
                retention_ms: args.retention.map(|d| d.0.as_millis() as u64).unwrap_or(0),
                retention_bytes: args.retention_bytes.unwrap_or(0),
            };
            let t = client.create_topic_with(req).await?;
            out.print(&topic_json(&t), || format!("created {}", topic_text(&t)));
        }
        TopicCommand::List => {
            let topics = client.list_topics().await?;
            let doc = json!({"topics": topics.iter().map(topic_json).collect::<Vec<_>>()});
            out.print(&doc, || {
                topics.iter().map(topic_text).collect::<Vec<_>>().join("\n")
            });
        }
        TopicCommand::Delete { name, yes } => {
            if !yes {
                return Err(txmq_client::ClientError::new(
                    "invalid_argument",
                    format!(
                        "deleting '{name}' removes its messages for good; add --yes to confirm"
                    ),
                ));
            }
            let messages = client.delete_topic(&name).await?;
            let doc = json!({"deleted": name, "messages": messages});
            out.print(&doc, || format!("deleted {name} ({messages} messages)"));
        }
        TopicCommand::Update {
            name,
            retention,
            retention_bytes,
        } => {
            let req = txmq_client::UpdateTopicRequest {
                name,
                retention_ms: retention.map(|d| d.0.as_millis() as u64),
                retention_bytes,
            };
            let t = client.update_topic(req).await?;
            out.print(&topic_json(&t), || format!("updated {}", topic_text(&t)));
        }
        TopicCommand::Describe { name } => {
            let t = client.describe_topic(&name).await?;
            out.print(&topic_json(&t), || {
                let mut s = topic_text(&t);
                for q in &t.queue_info {
                    s.push_str(&format!(
                        "\n  queue {}: offsets {}..{}",
                        q.queue, q.low_offset, q.next_offset
                    ));
                }
                s
            });
        }
    }
    Ok(())
}

pub(super) async fn send(client: &Client, args: SendArgs, out: Output) -> CmdResult {
    let (body, key, tag, properties) = args.message.into_parts()?;
    let req = SendRequest {
        topic: args.topic,
        body,
        key,
        tag,
        properties,
    };
    let r = client.send(req).await?;
    let doc =
        json!({"message_id": r.message_id, "topic": r.topic, "queue": r.queue, "offset": r.offset});
    out.print(&doc, || {
        format!(
            "sent {} to {} queue {} offset {}",
            r.message_id, r.topic, r.queue, r.offset
        )
    });
    Ok(())
}

pub(super) async fn read(client: &Client, args: ReadArgs, out: Output) -> CmdResult {
    if args.follow {
        return read_follow(client, args, out).await;
    }
    let req = ReadRequest {
        topic: args.topic,
        queue: args.queue,
        from_offset: args.from,
        max: args.max,
    };
    for m in &client.read(req).await? {
        print_read(m, out);
    }
    Ok(())
}

fn print_read(m: &txmq_client::Message, out: Output) {
    out.print(&message_json(m), || {
        format!(
            "{}\tq{}@{}\t{}\t{}",
            m.message_id,
            m.queue,
            m.offset,
            m.key,
            String::from_utf8_lossy(&m.body)
        )
    });
}

/// `read --follow`: every queue (or the one asked) from `--from`, then new messages as they
/// are committed, until Ctrl-C.
async fn read_follow(client: &Client, args: ReadArgs, out: Output) -> CmdResult {
    let info = client.describe_topic(&args.topic).await?;
    let queues: Vec<u32> = match args.queue {
        Some(q) => vec![q],
        None => (0..info.queues).collect(),
    };
    let mut next: Vec<u64> = vec![args.from; queues.len()];
    let shutdown = super::serve::shutdown_signal();
    tokio::pin!(shutdown);
    let mut waiting_said = false;
    loop {
        let mut got = 0;
        for (i, &queue) in queues.iter().enumerate() {
            let req = ReadRequest {
                topic: args.topic.clone(),
                queue: Some(queue),
                from_offset: next[i],
                max: args.max,
            };
            for m in &client.read(req).await? {
                print_read(m, out);
                next[i] = m.offset + 1;
                got += 1;
            }
        }
        if got > 0 {
            waiting_said = false;
            continue;
        }
        if !waiting_said && !out.json() {
            eprintln!("waiting for messages on '{}'… (Ctrl-C to stop)", args.topic);
            waiting_said = true;
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

fn status_json(s: &ClusterStatusResponse) -> Value {
    json!({
        "leader_id": s.leader_id,
        "term": s.term,
        "answered_by": s.answered_by,
        "nodes": s.nodes.iter().map(|n| json!({
            "id": n.id, "role": n.role, "voter": n.voter, "client_addr": n.client_addr, "peer_addr": n.peer_addr,
            "term": n.term, "commit_index": n.commit_index, "applied_index": n.applied_index,
            "disk_total_bytes": n.disk_total_bytes, "disk_free_bytes": n.disk_free_bytes,
            "pid": (n.pid != 0).then_some(n.pid),
        })).collect::<Vec<_>>(),
    })
}

fn status_text(s: &ClusterStatusResponse) -> String {
    let leader = if s.leader_id == 0 {
        "none".to_string()
    } else {
        s.leader_id.to_string()
    };
    let mut text = format!("leader: {leader}  term: {}\n", s.term);
    text.push_str(
        "ID  ROLE         PID      CLIENT                 PEER                   COMMIT   APPLIED  DISK FREE",
    );
    for n in &s.nodes {
        let disk = match n.disk_total_bytes {
            0 => "-".to_string(),
            total => format!("{} of {} MiB", n.disk_free_bytes >> 20, total >> 20),
        };
        let pid = match n.pid {
            0 => "-".to_string(),
            pid => pid.to_string(),
        };
        text.push_str(&format!(
            "\n{:<3} {:<12} {:<8} {:<22} {:<22} {:<8} {:<8} {disk}",
            n.id, n.role, pid, n.client_addr, n.peer_addr, n.commit_index, n.applied_index
        ));
    }
    text
}

pub(super) async fn cluster(client: &Client, cmd: ClusterCommand, out: Output) -> CmdResult {
    let status = match cmd {
        ClusterCommand::Check(args) => return super::cluster_check::check(client, args, out).await,
        ClusterCommand::Status => client.cluster_status().await?,
        ClusterCommand::AddNode(a) => {
            let req = AddNodeRequest {
                id: a.id,
                peer_addr: a.peer_addr,
                client_addr: a.client_addr,
                learner_only: a.learner_only,
            };
            client.add_node(req).await?
        }
        ClusterCommand::RemoveNode { id } => client.remove_node(id).await?,
        ClusterCommand::RemoveAbove { keep } => remove_above(client, keep).await?,
    };
    out.print(&status_json(&status), || status_text(&status));
    Ok(())
}

/// Removes members with ids above `keep`, one at a time from the highest, so each step is a
/// single, quorum-checked membership change.
async fn remove_above(
    client: &Client,
    keep: u64,
) -> Result<ClusterStatusResponse, txmq_client::ClientError> {
    if keep == 0 {
        return Err(txmq_client::ClientError {
            code: "invalid_argument".into(),
            message: "--keep must be 1 or more (a cluster needs a voter)".into(),
        });
    }
    let mut status = client.cluster_status().await?;
    let mut doomed: Vec<u64> = status
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id > keep)
        .collect();
    doomed.sort_unstable_by(|a, b| b.cmp(a));
    for id in doomed {
        status = client.remove_node(id).await?;
    }
    Ok(status)
}
