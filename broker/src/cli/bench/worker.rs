//! One bench worker: runs the scenario's operation in a loop until the run's deadline (or the
//! run gives up), recording each measured operation's latency.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;
use txmq_client::{
    Client, ClientError, LocalTransactionState, Publisher, ReceiveRequest, SendHalfRequest,
    SendRequest, TransactionProducer,
};

use super::Scenario;
use super::schedule::Schedule;
use super::tally::{Tally, Window};

/// What a worker needs; cloned for each worker.
#[derive(Clone)]
pub struct Worker {
    pub client: Client,
    pub publisher: Option<Publisher>,
    pub producer: TransactionProducer,
    pub scenario: Scenario,
    pub topic: String,
    pub group: String,
    pub body: prost::bytes::Bytes,
    pub rollback_ratio: f64,
    pub window: Window,
    pub schedule: Arc<Schedule>,
    pub tally: Arc<Tally>,
}

impl Worker {
    /// Runs until the deadline; returns the latencies (µs) of its measured operations.
    pub async fn run(self) -> Histogram<u64> {
        // Two significant digits (1 % resolution): a worker's histogram stays ~20 KiB, so 256
        // workers' histograms fit in the cache instead of costing the load generator a cache
        // miss per request.
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)
            .expect("static histogram bounds are valid");
        while let Some(started) = self.next_start().await {
            let measured = self.window.counts(started);
            match self.operation().await {
                Ok(counted) if measured => {
                    let _ = latency.record(started.elapsed().as_micros().max(1) as u64);
                    self.tally.succeeded(counted);
                }
                // Warm-up operations are done for their effect on the cluster only.
                Ok(_) => {}
                Err(e) => self.tally.failed(e, measured),
            }
        }
        latency
    }

    /// When the next operation starts (waiting for its scheduled time with `--rate`); `None`
    /// once the run is over.
    async fn next_start(&self) -> Option<Instant> {
        if self.tally.is_stopped() {
            return None;
        }
        match self.schedule.next() {
            Some(at) if at < self.window.deadline => {
                tokio::time::sleep_until(at.into()).await;
                if self.window.counts(at) {
                    self.schedule.started(at);
                }
                Some(at)
            }
            Some(_) => None,
            None => (Instant::now() < self.window.deadline).then(Instant::now),
        }
    }

    /// One operation of the scenario; what it counts.
    async fn operation(&self) -> Result<u64, ClientError> {
        match self.scenario {
            Scenario::Publish => {
                let req = SendRequest {
                    topic: self.topic.clone(),
                    body: self.body.clone(),
                    ..Default::default()
                };
                match &self.publisher {
                    Some(p) => p.send(req).await.map(|_| 1),
                    None => self.client.send(req).await.map(|_| 1),
                }
            }
            Scenario::Txn => self.transaction().await,
            Scenario::Consume => self.receive_and_ack().await,
        }
    }

    /// A half message and its decision; counts a committed transaction.
    async fn transaction(&self) -> Result<u64, ClientError> {
        let k = self.tally.transactions.fetch_add(1, Ordering::Relaxed);
        let req = SendHalfRequest {
            topic: self.topic.clone(),
            body: self.body.clone(),
            ..Default::default()
        };
        let half = self.producer.send_half(req, None).await?;
        let decision = if rolls_back(k, self.rollback_ratio) {
            LocalTransactionState::Rollback
        } else {
            LocalTransactionState::Commit
        };
        let end = self.producer.end(&half.transaction_id, decision).await?;
        Ok(u64::from(end.state == "committed"))
    }

    /// One receive (up to 32 messages, waiting up to a second) and the ack of what came.
    async fn receive_and_ack(&self) -> Result<u64, ClientError> {
        let req = ReceiveRequest {
            group: self.group.clone(),
            topic: self.topic.clone(),
            max: 32,
            invisible_ms: 30_000,
            wait_ms: 1_000,
        };
        let messages = self.client.receive(req).await?;
        if messages.is_empty() {
            return Ok(0);
        }
        let receipts = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        let acked = self.client.ack(&self.group, &self.topic, receipts).await?;
        Ok(acked.iter().filter(|a| a.outcome == "acked").count() as u64)
    }
}

/// Whether the `k`-th transaction of the run (counted over all workers) rolls back: exactly
/// `floor(k × ratio)` of the first `k` do, spread evenly (0.5: every other one; 0.1: every
/// tenth), so any stretch of the run, however short, has the asked share.
pub fn rolls_back(k: u64, ratio: f64) -> bool {
    ((k + 1) as f64 * ratio).floor() > (k as f64 * ratio).floor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollback_ratio_holds_in_every_stretch_of_transactions() {
        for ratio in [0.0, 0.1, 0.25, 0.5, 0.9, 1.0] {
            for (start, len) in [(0u64, 10u64), (7, 20), (1_000, 1_000)] {
                let rolled = (start..start + len)
                    .filter(|&k| rolls_back(k, ratio))
                    .count();
                let expected = ratio * len as f64;
                assert!(
                    (rolled as f64 - expected).abs() <= 1.0,
                    "ratio {ratio}: {rolled} of {len} from {start} rolled back"
                );
            }
        }
    }
}
