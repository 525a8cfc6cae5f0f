//! Batching of concurrent requests: callers submit one item each and wait for its own result;
//! the items that queue up while earlier batches are on their way leave together in one
//! request. Nothing waits on a timer: a lone item goes out at once, batches grow under load.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ClientError;

/// Tuning of batching ([`crate::Publisher`], [`crate::TransactionProducer::with_batching`]).
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Items per request, at most (the broker accepts up to 1000).
    pub max_batch: usize,
    /// Body bytes per request, at most (keep it under the broker's --max-message-bytes).
    pub max_batch_bytes: usize,
    /// Requests in flight at once; further items queue and form the next batch.
    pub max_in_flight: usize,
    /// Items waiting for a request, at most (then submitting waits: back-pressure).
    pub queue: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 4,
            queue: 8192,
        }
    }
}

type Reply<Resp> = oneshot::Sender<Result<Resp, ClientError>>;

/// Sends batches of `Req` with a function that answers each item in order.
pub(crate) struct Batcher<Req, Resp> {
    tx: mpsc::Sender<(Req, Reply<Resp>)>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// `send` gets a batch and returns one result per item, in order (fewer results fail the
    /// remaining items); `size` is an item's body size.
    pub fn start<F, Fut>(options: &BatchOptions, size: fn(&Req) -> usize, send: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<Resp, ClientError>>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        tokio::spawn(run(rx, options.clone(), size, Arc::new(send)));
        Self { tx }
    }

    pub async fn submit(&self, item: Req) -> Result<Resp, ClientError> {
        let (reply, rx) = oneshot::channel();
        let stopped = || ClientError::new("unavailable", "the batching task stopped");
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run<Req, Resp, F, Fut>(
    mut rx: mpsc::Receiver<(Req, Reply<Resp>)>,
    o: BatchOptions,
    size: fn(&Req) -> usize,
    send: Arc<F>,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Result<Resp, ClientError>>> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(o.max_in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the previous requests were out joins this one.
        let mut bytes = size(&first.0);
        let mut batch = vec![first];
        while batch.len() < o.max_batch.max(1) && bytes < o.max_batch_bytes {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += size(&item.0);
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let send = send.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (items, replies): (Vec<Req>, Vec<Reply<Resp>>) = batch.into_iter().unzip();
            let expected = items.len();
            let mut results = send(items).await.into_iter();
            for reply in replies {
                let result = results.next().unwrap_or_else(|| {
                    Err(ClientError::new(
                        "internal",
                        format!("the broker answered fewer than the {expected} items sent"),
                    ))
                });
                let _ = reply.send(result);
            }
        });
    }
}
