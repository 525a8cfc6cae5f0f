//! One producer instance's check channel, from its registration to its disconnect: the first
//! message registers the instance's producer group, checks for that group flow to it, and its
//! answers become decisions (source `check`) until it disconnects.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use txmq_proto::client as pb;
use txmq_state::limits;

use super::CheckerRegistry;

/// How long a new check channel may take to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// A registered check channel; unregistered when [`CheckSession::relay_answers`] ends.
pub struct CheckSession {
    registry: Arc<CheckerRegistry>,
    group: String,
    instance: String,
    key: u64,
}

impl CheckSession {
    /// Reads the registration (the channel's first message) and registers the instance;
    /// returns the session and the checks to send it.
    pub async fn open(
        registry: &Arc<CheckerRegistry>,
        inbound: &mut Streaming<pb::CheckerMessage>,
        may_check: super::TopicFilter,
    ) -> Result<(CheckSession, mpsc::Receiver<pb::CheckRequest>), Status> {
        let must_register = "the first message of a check channel must register a producer group";
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.next())
            .await
            .map_err(|_| Status::deadline_exceeded(must_register))?;
        let register = match first {
            Some(Ok(pb::CheckerMessage {
                kind: Some(pb::checker_message::Kind::Register(r)),
            })) => r,
            Some(Err(s)) => return Err(s),
            _ => return Err(Status::invalid_argument(must_register)),
        };
        limits::validate_name("producer group", &register.group)
            .map_err(Status::invalid_argument)?;
        let (key, checks) = registry
            .register(
                &register.group,
                may_check,
                Some(register.instance_id.clone()),
            )
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        tracing::info!(group = %register.group, instance = %register.instance_id, "checker connected");
        let session = CheckSession {
            registry: registry.clone(),
            group: register.group,
            instance: register.instance_id,
            key,
        };
        Ok((session, checks))
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Hands each answer to `decide` (in order, one at a time) until the instance disconnects,
    /// then unregisters it. Messages that are not answers are ignored.
    pub async fn relay_answers<F, Fut>(self, mut inbound: Streaming<pb::CheckerMessage>, decide: F)
    where
        F: Fn(pb::CheckAnswer) -> Fut,
        Fut: Future<Output = ()>,
    {
        while let Some(Ok(message)) = inbound.next().await {
            if let Some(pb::checker_message::Kind::Answer(answer)) = message.kind {
                decide(answer).await;
            }
        }
        self.registry.unregister(&self.group, self.key);
        tracing::info!(group = %self.group, instance = %self.instance, "checker disconnected");
    }
}
