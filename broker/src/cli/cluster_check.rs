//! `txmq cluster check`: is this cluster able to serve a transaction right now? The Helm
//! chart's test pod and the container tests run it; operators run it after a change.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use txmq_client::{
    Client, ClientError, ClusterStatusResponse, EndTransactionRequest, LocalTransactionState,
    ReadRequest, SendHalfRequest, TopicType,
};
use txmq_proto::client::StateDigestResponse;

use super::Output;
use crate::config::HumanDuration;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The transaction topic the check writes one committed message to (created if missing,
    /// with a retention of one hour and 1 MiB: the check's messages do not pile up).
    #[arg(long, default_value = "txmq-check")]
    pub topic: String,
    /// Keep trying for this long (a cluster that is still forming passes once it formed).
    #[arg(long, default_value = "60s")]
    pub timeout: HumanDuration,
}

const GROUP: &str = "txmq-check";
/// The check topic keeps its messages this long, and at most this much of them.
const CHECK_RETENTION_MS: u64 = 3_600_000;
const CHECK_RETENTION_BYTES: u64 = 1024 * 1024;

pub async fn check(client: &Client, args: CheckArgs, out: Output) -> Result<(), ClientError> {
    let deadline = Instant::now() + args.timeout.0;
    loop {
        match check_once(client, &args.topic).await {
            Ok(report) => {
                out.print(&report, || {
                    format!(
                        "ok: leader {}, {} voters answering, transaction {} committed and read back at {}:{}, \
                         every voter's state digest {} at applied index {}",
                        report["leader_id"],
                        report["voters"],
                        report["transaction_id"].as_str().unwrap_or_default(),
                        report["queue"],
                        report["offset"],
                        report["digest"].as_str().unwrap_or_default(),
                        report["applied_index"]
                    )
                });
                return Ok(());
            }
            // Divergence does not heal by waiting: say so at once.
            Err(e) if e.code == "diverged" || Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("cluster check not passing yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn check_once(client: &Client, topic: &str) -> Result<Value, ClientError> {
    let status = client.cluster_status().await?;
    let voters = healthy_voters(&status)?;
    ensure_check_topic(client, topic).await?;
    let half = client
        .send_half(SendHalfRequest {
            topic: topic.into(),
            group: GROUP.into(),
            body: format!("txmq cluster check, leader {}", status.leader_id)
                .into_bytes()
                .into(),
            ..Default::default()
        })
        .await?;
    let end = client
        .end_transaction(EndTransactionRequest {
            transaction_id: half.transaction_id.clone(),
            group: GROUP.into(),
            decision: LocalTransactionState::Commit.to_pb() as i32,
            operator: false,
        })
        .await?;
    let (Some(queue), Some(offset)) = (end.queue, end.offset) else {
        return Err(failed(format!(
            "transaction {} ended {} without a position",
            end.transaction_id, end.state
        )));
    };
    if end.state != "committed" {
        return Err(failed(format!(
            "transaction {} is {}, not committed",
            end.transaction_id, end.state
        )));
    }
    let read = client
        .read(ReadRequest {
            topic: topic.into(),
            queue: Some(queue),
            from_offset: offset,
            max: 1,
        })
        .await?;
    if read.first().map(|m| m.message_id.as_str()) != Some(end.message_id.as_str()) {
        return Err(failed(format!(
            "committed message {} not readable at {queue}:{offset}",
            end.message_id
        )));
    }
    let digest = compare_digests(client, &status).await?;
    Ok(json!({
        "leader_id": status.leader_id,
        "voters": voters,
        "applied_index": digest.applied_index,
        "digest": format!("{:08x}", digest.digest),
        "transaction_id": end.transaction_id,
        "message_id": end.message_id,
        "queue": queue,
        "offset": offset,
    }))
}

/// Creates the check's topic when missing.
async fn ensure_check_topic(client: &Client, topic: &str) -> Result<(), ClientError> {
    let spec = txmq_client::CreateTopicRequest {
        name: topic.into(),
        r#type: TopicType::Transaction as i32,
        queues: 1,
        retention_ms: CHECK_RETENTION_MS,
        retention_bytes: CHECK_RETENTION_BYTES,
    };
    match client.create_topic_with(spec).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == "already_exists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long the replicas may take to stand at one applied index together.
const ALIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// Every voter's state digest at one applied index, and that they are equal: replicas that
/// applied the same log must hold the same state, so a difference is divergence (a node that
/// lost or altered data), named node by node. Asked of each voter directly (no failover).
async fn compare_digests(
    client: &Client,
    status: &ClusterStatusResponse,
) -> Result<StateDigestResponse, ClientError> {
    let voters: Vec<(u64, Client)> = status
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| {
            if n.client_addr.is_empty() {
                return Err(failed(format!(
                    "voter {} has no known client address",
                    n.id
                )));
            }
            Ok((n.id, client.for_endpoints([n.client_addr.as_str()])?))
        })
        .collect::<Result<_, ClientError>>()?;
    let deadline = Instant::now() + ALIGN_TIMEOUT;
    loop {
        let mut digests = Vec::with_capacity(voters.len());
        for (id, client) in &voters {
            let digest = client.state_digest_from(0).await.map_err(|e| {
                failed(format!(
                    "voter {id} did not give its state digest: {}",
                    e.message
                ))
            })?;
            digests.push(digest);
        }
        let first = &digests[0];
        if digests
            .iter()
            .all(|d| d.applied_index == first.applied_index)
        {
            if digests.iter().all(|d| d.digest == first.digest) {
                return Ok(*first);
            }
            return Err(diverged(&digests));
        }
        if Instant::now() >= deadline {
            let at: Vec<String> = digests
                .iter()
                .map(|d| format!("node {} at {}", d.node_id, d.applied_index))
                .collect();
            return Err(failed(format!(
                "the voters' state digests could not be compared: they did not stand at one \
                 applied index together within {ALIGN_TIMEOUT:?} ({})",
                at.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn diverged(digests: &[StateDigestResponse]) -> ClientError {
    let detail: Vec<String> = digests
        .iter()
        .map(|d| format!("node {}: {:08x}", d.node_id, d.digest))
        .collect();
    ClientError::new(
        "diverged",
        format!(
            "replicas diverge: different state digests at applied index {} ({}); a node lost or \
             altered data — see docs/operations.md, \"Damaged storage\"",
            digests[0].applied_index,
            detail.join(", ")
        ),
    )
}

/// A leader is known and every voter answers as leader or follower.
fn healthy_voters(status: &ClusterStatusResponse) -> Result<usize, ClientError> {
    if status.leader_id == 0 {
        return Err(failed("no leader is known".into()));
    }
    let voters: Vec<_> = status.nodes.iter().filter(|n| n.voter).collect();
    if let Some(n) = voters
        .iter()
        .find(|n| n.role != "leader" && n.role != "follower")
    {
        return Err(failed(format!("voter {} is {}", n.id, n.role)));
    }
    Ok(voters.len())
}

fn failed(message: String) -> ClientError {
    ClientError::new("failed_precondition", message)
}
