//! [`Publisher`]: many concurrent sends to one topic, carried in few requests.
//!
//! Each `send` waits for its own message's position, exactly like [`Client::send`], but the
//! messages that callers hand in while earlier requests are on their way travel together in
//! one `SendBatch` request (one Raft operation). Nothing waits on a timer: a lone send goes out
//! at once; under load, batches grow by themselves — like Kafka's producer batching without
//! `linger.ms`. Delivery is at-least-once, as for `send`: a batch retried after an ambiguous
//! failure may be stored twice.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use txmq_proto::client::{BatchMessage, SendBatchRequest, SendRequest, SendResponse};

use crate::{Client, ClientError};

/// Tuning of a [`Publisher`].
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Messages per request, at most (the broker accepts up to 1000).
    pub max_batch: usize,
    /// Body bytes per request, at most (keep it under the broker's --max-message-bytes).
    pub max_batch_bytes: usize,
    /// Requests in flight at once; further messages queue and form the next batch.
    pub max_in_flight: usize,
    /// Messages waiting for a request, at most (then `send` waits: back-pressure).
    pub queue: usize,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 4,
            queue: 8192,
        }
    }
}

type Reply = oneshot::Sender<Result<SendResponse, ClientError>>;

struct Queued {
    message: BatchMessage,
    reply: Reply,
}

/// Batches concurrent sends to one topic. Cheap to clone; all clones share the batches.
#[derive(Clone)]
pub struct Publisher {
    topic: String,
    tx: mpsc::Sender<Queued>,
}

impl Publisher {
    pub fn new(client: Client, topic: impl Into<String>, options: PublisherOptions) -> Self {
        let topic = topic.into();
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        tokio::spawn(run(client, topic.clone(), rx, options));
        Self { topic, tx }
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
        let (reply, rx) = oneshot::channel();
        let message = BatchMessage {
            body: req.body,
            key: req.key,
            tag: req.tag,
            properties: req.properties,
        };
        self.tx
            .send(Queued { message, reply })
            .await
            .map_err(|_| ClientError::new("unavailable", "the publisher stopped"))?;
        rx.await
            .map_err(|_| ClientError::new("unavailable", "the publisher stopped"))?
    }
}

async fn run(client: Client, topic: String, mut rx: mpsc::Receiver<Queued>, o: PublisherOptions) {
    let in_flight = Arc::new(Semaphore::new(o.max_in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the previous requests were out joins this one.
        let mut bytes = first.message.body.len();
        let mut batch = vec![first];
        while batch.len() < o.max_batch.max(1) && bytes < o.max_batch_bytes {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += q.message.body.len();
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let (client, topic) = (client.clone(), topic.clone());
        tokio::spawn(async move {
            let _permit = permit;
            send_batch(&client, topic, batch).await;
        });
    }
}

async fn send_batch(client: &Client, topic: String, batch: Vec<Queued>) {
    let (messages, replies): (Vec<BatchMessage>, Vec<Reply>) =
        batch.into_iter().map(|q| (q.message, q.reply)).unzip();
    let request = SendBatchRequest {
        topic: topic.clone(),
        messages,
    };
    match client.send_batch(request).await {
        Ok(resp) if resp.positions.len() == replies.len() => {
            for (reply, p) in replies.into_iter().zip(resp.positions) {
                let _ = reply.send(Ok(SendResponse {
                    message_id: p.message_id,
                    topic: topic.clone(),
                    queue: p.queue,
                    offset: p.offset,
                }));
            }
        }
        Ok(resp) => {
            let e = ClientError::new(
                "internal",
                format!(
                    "the broker returned {} positions for {} messages",
                    resp.positions.len(),
                    replies.len()
                ),
            );
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
