//! [`Publisher`]: many concurrent sends to one topic, carried in few requests.
//!
//! Each `send` waits for its own message's position, exactly like [`Client::send`], but the
//! messages that callers hand in while earlier requests are on their way travel together in
//! one `SendBatch` request (one Raft operation). Nothing waits on a timer: a lone send goes out
//! at once; under load, batches grow by themselves — like Kafka's producer batching without
//! `linger.ms`. Delivery is at-least-once, as for `send`: a batch retried after an ambiguous
//! failure may be stored twice.

use txmq_proto::client::{BatchMessage, SendBatchRequest, SendRequest, SendResponse};

use crate::batcher::{BatchOptions, Batcher};
use crate::{Client, ClientError};

/// Batches concurrent sends to one topic. Cheap to clone; all clones share the batches.
#[derive(Clone)]
pub struct Publisher {
    topic: String,
    batcher: Batcher<BatchMessage, SendResponse>,
}

impl Publisher {
    pub fn new(client: Client, topic: impl Into<String>, options: BatchOptions) -> Self {
        let topic = topic.into();
        let batch_topic = topic.clone();
        let batcher = Batcher::start(
            &options,
            |m: &BatchMessage| m.body.len(),
            move |messages| send_batch(client.clone(), batch_topic.clone(), messages),
        );
        Self { topic, batcher }
    }

    /// Sends one message (its `topic` must be the publisher's) and returns where it landed.
    pub async fn send(&self, req: SendRequest) -> Result<SendResponse, ClientError> {
        if req.topic != self.topic {
            return Err(ClientError::new(
                "invalid_argument",
                format!(
                    "this publisher sends to '{}', not '{}'",
                    self.topic, req.topic
                ),
            ));
        }
        self.batcher
            .submit(BatchMessage {
                body: req.body,
                key: req.key,
                tag: req.tag,
                properties: req.properties,
            })
            .await
    }
}

/// One `SendBatch`: all stored (each its position) or all failed with the same error.
async fn send_batch(
    client: Client,
    topic: String,
    messages: Vec<BatchMessage>,
) -> Vec<Result<SendResponse, ClientError>> {
    let n = messages.len();
    let request = SendBatchRequest {
        topic: topic.clone(),
        messages,
    };
    match client.send_batch(request).await {
        Ok(resp) => resp
            .positions
            .into_iter()
            .map(|p| {
                Ok(SendResponse {
                    message_id: p.message_id,
                    topic: topic.clone(),
                    queue: p.queue,
                    offset: p.offset,
                })
            })
            .collect(),
        Err(e) => vec![Err(e); n],
    }
}
