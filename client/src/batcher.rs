//! Batching of concurrent requests: callers submit one item each and wait for its own result;
//! the items that queue up while earlier batches are on their way leave together in one
//! request. Nothing waits on a timer: with no request out, a lone item goes out at once. While
//! one is out, a further request goes out only once [`BatchOptions::concurrent_request_items`]
//! items wait (or a full batch); otherwise they wait for the request out and leave together
//! after it. Spare capacity then makes fuller requests instead of more of them: every request
//! costs the client and the broker about the same CPU whatever it carries, and a moderate load
//! that kept every slot busy used nearly as much CPU as the maximum one (docs/performance-history.md).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

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
    /// Items that must be waiting before a further request goes out while one is in flight
    /// (a full batch always may); fewer wait for a request to come back.
    pub concurrent_request_items: usize,
    /// Items waiting for a request, at most (then submitting waits: back-pressure).
    pub queue: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 4,
            concurrent_request_items: 32,
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

/// Whether a batch of `items` (`full` or not) goes out now, with `in_flight` requests out.
pub(crate) fn may_send(o: &BatchOptions, in_flight: usize, items: usize, full: bool) -> bool {
    in_flight == 0
        || (in_flight < o.max_in_flight.max(1) && (full || items >= o.concurrent_request_items))
}

/// The items of one request, gathered from the queue.
struct Gathered<Req, Resp> {
    batch: Vec<(Req, Reply<Resp>)>,
    bytes: usize,
}

impl<Req, Resp> Gathered<Req, Resp> {
    fn full(&self, o: &BatchOptions) -> bool {
        self.batch.len() >= o.max_batch.max(1) || self.bytes >= o.max_batch_bytes
    }

    fn push(&mut self, item: (Req, Reply<Resp>), size: fn(&Req) -> usize) {
        self.bytes += size(&item.0);
        self.batch.push(item);
    }

    /// Takes in everything already queued, up to a request's limits.
    fn drain(
        &mut self,
        rx: &mut mpsc::Receiver<(Req, Reply<Resp>)>,
        o: &BatchOptions,
        size: fn(&Req) -> usize,
    ) {
        while !self.full(o) {
            match rx.try_recv() {
                Ok(item) => self.push(item, size),
                Err(_) => break,
            }
        }
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
    // Requests out; each request's task lowers it when it ends.
    let (in_flight_tx, mut in_flight) = watch::channel(0usize);
    while let Some(first) = rx.recv().await {
        let mut next = Gathered {
            bytes: size(&first.0),
            batch: vec![first],
        };
        next.drain(&mut rx, &o, size);
        loop {
            let full = next.full(&o);
            if may_send(&o, *in_flight.borrow_and_update(), next.batch.len(), full) {
                break;
            }
            // Wait for a request to come back, or for more items (maybe enough for another).
            tokio::select! {
                _ = in_flight.changed() => {}
                more = rx.recv(), if !full => match more {
                    Some(item) => next.push(item, size),
                    None => break,
                },
            }
            next.drain(&mut rx, &o, size);
        }
        in_flight_tx.send_modify(|n| *n += 1);
        let slot = InFlight(in_flight_tx.clone());
        let send = send.clone();
        tokio::spawn(async move {
            let _slot = slot;
            answer(next.batch, send).await;
        });
    }
}

/// Sends one batch and answers each item's caller.
async fn answer<Req, Resp, F, Fut>(batch: Vec<(Req, Reply<Resp>)>, send: Arc<F>)
where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Vec<Result<Resp, ClientError>>>,
{
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
}

/// One request out: frees its slot when the request ends, however it ends.
struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type Sent = mpsc::UnboundedReceiver<(Vec<u32>, oneshot::Sender<()>)>;

    /// A batcher whose requests are held until the test ends them: yields each request's items
    /// and the sender that answers it.
    fn held_batcher(o: &BatchOptions) -> (Batcher<u32, u32>, Sent) {
        let (sent_tx, sent) = mpsc::unbounded_channel();
        let batcher = Batcher::start(
            o,
            |_| 1,
            move |items: Vec<u32>| {
                let (end_tx, end) = oneshot::channel();
                let _ = sent_tx.send((items.clone(), end_tx));
                async move {
                    let _ = end.await;
                    items.into_iter().map(Ok).collect()
                }
            },
        );
        (batcher, sent)
    }

    /// The next request sent, or None if none goes out within a (virtual) second.
    async fn next_request(sent: &mut Sent) -> Option<(Vec<u32>, oneshot::Sender<()>)> {
        tokio::time::timeout(Duration::from_secs(1), sent.recv())
            .await
            .ok()
            .flatten()
    }

    #[test]
    fn a_further_request_needs_enough_items_or_a_full_batch() {
        let o = BatchOptions::default();
        assert!(may_send(&o, 0, 1, false));
        assert!(!may_send(&o, 1, o.concurrent_request_items - 1, false));
        assert!(may_send(&o, 1, o.concurrent_request_items, false));
        assert!(may_send(&o, 1, 1, true));
        assert!(!may_send(&o, o.max_in_flight, o.max_batch, true));
    }

    #[tokio::test(start_paused = true)]
    async fn items_wait_for_the_request_out_unless_enough_of_them_wait() {
        let o = BatchOptions {
            max_in_flight: 2,
            concurrent_request_items: 3,
            ..BatchOptions::default()
        };
        let (batcher, mut sent) = held_batcher(&o);
        let submit = |item: u32| {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit(item).await })
        };

        // Phase 1: nothing out, a lone item goes out at once.
        let first = submit(1);
        let (items, end_first) = next_request(&mut sent).await.expect("sent at once");
        assert_eq!(items, vec![1]);

        // Phase 2: with one request out, two items wait; a third makes enough for a second.
        let waiting: Vec<_> = (2..=3).map(submit).collect();
        assert!(
            next_request(&mut sent).await.is_none(),
            "a small second request went out"
        );
        let third = submit(4);
        let (items, end_second) = next_request(&mut sent).await.expect("second request");
        assert_eq!(items, vec![2, 3, 4]);

        // Phase 3: at the in-flight limit nothing more goes out; with one request back and
        // one still out, a lone item still waits for company or for the other one.
        let fourth = submit(5);
        assert!(
            next_request(&mut sent).await.is_none(),
            "a third request went out"
        );
        end_first.send(()).expect("the first request waits");
        assert_eq!(first.await.expect("task").expect("answered"), 1);
        assert!(
            next_request(&mut sent).await.is_none(),
            "a lone item went out beside a request still out"
        );
        end_second.send(()).expect("the second request waits");
        let (items, end_third) = next_request(&mut sent).await.expect("after both came back");
        assert_eq!(items, vec![5]);

        // Every caller gets its own item's answer.
        end_third.send(()).expect("the third request waits");
        for (task, want) in waiting.into_iter().chain([third, fourth]).zip([2, 3, 4, 5]) {
            assert_eq!(task.await.expect("task").expect("answered"), want);
        }
    }
}
