//! A push-style consumer: a loop that receives for a group, runs your handler on each message
//! with bounded concurrency, acks what succeeded and schedules a retry for what did not.
//!
//! Delivery is at least once: a handler must be idempotent (a message can come again after a
//! crash, a timeout, or a lost ack). After the group's maximum delivery attempts a failing
//! message goes to the group's dead-letter topic (`dlq.<group>`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use txmq_proto::client::{Message, ReceiveRequest};

use crate::{Client, ClientError};

/// What the handler says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Done: acknowledge it.
    Success,
    /// Failed: deliver it again after a back-off.
    Retry,
}

/// Tuning of a [`PushConsumer`].
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Messages handled at once.
    pub concurrency: usize,
    /// How long a received message stays invisible while it is handled.
    pub invisible: Duration,
    /// Long-poll wait of each receive.
    pub wait: Duration,
    /// First retry back-off; doubles per attempt, capped at 5 minutes.
    pub retry_backoff: Duration,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            invisible: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// Consumes one topic as one group.
#[derive(Clone)]
pub struct PushConsumer {
    client: Client,
    group: String,
    topic: String,
    options: PushOptions,
}

impl PushConsumer {
    pub fn new(
        client: Client,
        group: impl Into<String>,
        topic: impl Into<String>,
        options: PushOptions,
    ) -> Self {
        Self {
            client,
            group: group.into(),
            topic: topic.into(),
            options,
        }
    }

    /// Runs until `stop` turns true; then waits for the handlers in flight.
    pub async fn run<H, Fut>(
        &self,
        handler: H,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ClientError>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        while !*stop.borrow() {
            let free = permits.available_permits().max(1) as u32;
            let req = ReceiveRequest {
                group: self.group.clone(),
                topic: self.topic.clone(),
                max: free,
                invisible_ms: self.options.invisible.as_millis() as u64,
                wait_ms: self.options.wait.as_millis() as u64,
            };
            let messages = tokio::select! {
                r = self.client.receive(req) => r?,
                _ = stop.changed() => break,
            };
            for message in messages {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (handler, this) = (handler.clone(), self.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let attempt = message.delivery_attempt;
                    let receipt = message.receipt_handle.clone();
                    let outcome = handler(message).await;
                    this.settle(&receipt, attempt, outcome).await;
                });
            }
        }
        // Wait for handlers in flight.
        let _ = permits
            .acquire_many(self.options.concurrency.max(1) as u32)
            .await;
        Ok(())
    }

    async fn settle(&self, receipt: &str, attempt: u32, outcome: ConsumeResult) {
        let result = match outcome {
            ConsumeResult::Success => self
                .client
                .ack(&self.group, &self.topic, vec![receipt.to_string()])
                .await
                .map(|_| ()),
            ConsumeResult::Retry => {
                let backoff = self
                    .options
                    .retry_backoff
                    .saturating_mul(1 << attempt.saturating_sub(1).min(16));
                let backoff = backoff.min(Duration::from_secs(300));
                self.client
                    .change_invisible_duration(&self.group, &self.topic, receipt, backoff)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            // Not fatal: the message comes back after its invisible duration.
            tracing::warn!(group = %self.group, topic = %self.topic, "settling a message failed: {e}");
        }
    }
}
