//! One RocketMQ client's Telemetry stream: the client announces its settings, txmq answers them
//! (completed with its limits), and — for a producer — the stream is its check-back channel:
//! each topic it publishes to is registered as a producer group (RocketMQ producers have no
//! group; like the RocketMQ proxy, txmq uses the topic's name) and checks of that group arrive
//! as `RecoverOrphanedTransactionCommand`s. The producer answers with EndTransaction.
//!
//! The stream stays open as long as the client keeps it; registrations end with it. A
//! registration dropped by this node (its registry is cleared when it stops leading) is made
//! again, so the stream keeps receiving checks, which the leader routes to whichever node
//! holds it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Status, Streaming};
use txmq_proto::rocketmq as rmq;
use txmq_proto::rocketmq::telemetry_command::Command;

use super::{codes, convert};
use crate::checkers::CheckerRegistry;

/// Commands queued for one client before the stream counts as stuck (checks wait, then drop).
const OUTBOUND: usize = 64;
/// The most topics one stream registers for check-backs (a producer announces the topics it
/// publishes to; the rest of a longer list gets no checks from this stream, and a warning).
const MAX_TOPICS_PER_STREAM: usize = 64;
/// How long before a dropped registration is made again.
const REREGISTER: Duration = Duration::from_millis(200);

pub type TelemetryStream =
    tokio_stream::wrappers::ReceiverStream<Result<rmq::TelemetryCommand, Status>>;

/// What a session needs from the node.
#[derive(Clone)]
pub struct TelemetryContext {
    pub checkers: Arc<CheckerRegistry>,
    /// The largest body a client may send (its settings say so).
    pub max_body: usize,
}

/// Serves one Telemetry stream until the client closes it.
/// `may_check` says which topics' checks the client may answer (its user's produce rights).
pub fn serve(
    inbound: Streaming<rmq::TelemetryCommand>,
    client_id: String,
    context: TelemetryContext,
    may_check: crate::checkers::TopicFilter,
) -> TelemetryStream {
    let (outbound, stream) = mpsc::channel(OUTBOUND);
    tokio::spawn(run(inbound, (client_id, may_check), context, outbound));
    tokio_stream::wrappers::ReceiverStream::new(stream)
}

type Outbound = mpsc::Sender<Result<rmq::TelemetryCommand, Status>>;

async fn run(
    mut inbound: Streaming<rmq::TelemetryCommand>,
    (client_id, may_check): (String, crate::checkers::TopicFilter),
    context: TelemetryContext,
    outbound: Outbound,
) {
    let mut counted_as: Option<&'static str> = None;
    let mut forwarders: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(Ok(command)) = inbound.next().await {
        let Some(Command::Settings(settings)) = command.command else {
            // Thread stack traces and verification results: txmq never asks for them.
            continue;
        };
        let topics = published_topics(&settings);
        if counted_as.is_none() {
            let kind = client_type_name(&settings);
            super::metrics::client_connected(kind, 1);
            counted_as = Some(kind);
        }
        let reply = rmq::TelemetryCommand {
            status: codes::ok(),
            command: Some(Command::Settings(answer(settings, context.max_body))),
        };
        if outbound.send(Ok(reply)).await.is_err() {
            break;
        }
        forwarders.retain(|topic, task| {
            topics.contains(topic) || {
                task.abort();
                false
            }
        });
        for topic in topics {
            forwarders.entry(topic.clone()).or_insert_with(|| {
                tracing::info!(client = %client_id, %topic, "RocketMQ producer connected for check-backs");
                tokio::spawn(forward_checks(
                    context.checkers.clone(),
                    (topic, may_check.clone()),
                    client_id.clone(),
                    outbound.clone(),
                ))
            });
        }
    }
    for task in forwarders.into_values() {
        task.abort();
    }
    if let Some(kind) = counted_as {
        super::metrics::client_connected(kind, -1);
    }
    tracing::debug!(client = %client_id, "RocketMQ Telemetry stream closed");
}

/// The client's type as the protocol names it (`CLIENT_TYPE_UNSPECIFIED` when unknown).
fn client_type_name(settings: &rmq::Settings) -> &'static str {
    settings
        .client_type
        .and_then(|t| rmq::ClientType::try_from(t).ok())
        .unwrap_or(rmq::ClientType::Unspecified)
        .as_str_name()
}

/// The topics a producer's settings publish to (none for consumers).
fn published_topics(settings: &rmq::Settings) -> Vec<String> {
    let Some(rmq::settings::PubSub::Publishing(p)) = &settings.pub_sub else {
        return Vec::new();
    };
    let mut topics: Vec<String> = p
        .topics
        .iter()
        .map(|t| t.name.clone())
        .filter(|name| txmq_state::limits::validate_name("topic", name).is_ok())
        .collect();
    topics.sort();
    topics.dedup();
    if topics.len() > MAX_TOPICS_PER_STREAM {
        tracing::warn!(
            topics = topics.len(),
            "a RocketMQ producer publishes to more topics than one stream takes checks for; \
             only the first {MAX_TOPICS_PER_STREAM} get check-backs through it"
        );
        topics.truncate(MAX_TOPICS_PER_STREAM);
    }
    topics
}

/// The client's settings as txmq confirms them: its own body limit (a client refuses larger
/// bodies itself; with none it refuses every body), metrics export off.
fn answer(mut settings: rmq::Settings, max_body: usize) -> rmq::Settings {
    if let Some(rmq::settings::PubSub::Publishing(p)) = settings.pub_sub.as_mut() {
        p.max_body_size = i32::try_from(max_body).unwrap_or(i32::MAX);
    }
    settings.metric = Some(rmq::Metric {
        on: false,
        endpoints: None,
    });
    settings
}

/// Unregisters an instance when its forwarder ends (or is aborted).
struct Registration {
    checkers: Arc<CheckerRegistry>,
    group: String,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.checkers.unregister(&self.group, self.key);
    }
}

/// Registers the stream for `group`'s checks and pushes each as a recovery command, until the
/// stream closes; a registration the registry drops is made again.
async fn forward_checks(
    checkers: Arc<CheckerRegistry>,
    (group, may_check): (String, crate::checkers::TopicFilter),
    client_id: String,
    outbound: Outbound,
) {
    while !outbound.is_closed() {
        let Ok((key, mut checks)) =
            checkers.register(&group, may_check.clone(), Some(client_id.clone()))
        else {
            tokio::time::sleep(REREGISTER * 25).await;
            continue;
        };
        let _registration = Registration {
            checkers: checkers.clone(),
            group: group.clone(),
            key,
        };
        while let Some(check) = checks.recv().await {
            let command = rmq::TelemetryCommand {
                status: codes::ok(),
                command: Some(Command::RecoverOrphanedTransactionCommand(
                    rmq::RecoverOrphanedTransactionCommand {
                        message: Some(convert::checked_message(&check)),
                        transaction_id: check.transaction_id.clone(),
                    },
                )),
            };
            if outbound.send(Ok(command)).await.is_err() {
                return;
            }
            super::metrics::check_pushed();
        }
        tokio::time::sleep(REREGISTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_answered_with_a_body_limit_and_metrics_off() {
        let settings = rmq::Settings {
            client_type: Some(rmq::ClientType::Producer as i32),
            pub_sub: Some(rmq::settings::PubSub::Publishing(rmq::Publishing {
                topics: vec![rmq::Resource {
                    resource_namespace: String::new(),
                    name: "orders".into(),
                }],
                max_body_size: 0,
                validate_message_type: true,
            })),
            metric: Some(rmq::Metric {
                on: true,
                endpoints: None,
            }),
            ..Default::default()
        };
        assert_eq!(published_topics(&settings), vec!["orders"]);
        assert_eq!(client_type_name(&settings), "PRODUCER");
        let many = rmq::Settings {
            pub_sub: Some(rmq::settings::PubSub::Publishing(rmq::Publishing {
                topics: (0..500)
                    .map(|i| rmq::Resource {
                        resource_namespace: String::new(),
                        name: format!("t{i}"),
                    })
                    .collect(),
                max_body_size: 0,
                validate_message_type: false,
            })),
            ..Default::default()
        };
        assert_eq!(published_topics(&many).len(), MAX_TOPICS_PER_STREAM);
        let answered = answer(settings, 4 << 20);
        match answered.pub_sub {
            Some(rmq::settings::PubSub::Publishing(p)) => {
                assert_eq!(p.max_body_size, 4 << 20);
                assert!(p.validate_message_type);
            }
            other => panic!("publishing settings expected, got {other:?}"),
        }
        assert_eq!(answered.metric.map(|m| m.on), Some(false));
    }
}
