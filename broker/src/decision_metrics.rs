//! Counting decisions: per request, not per transaction.
//!
//! A batched request decides hundreds of transactions; looking up a labelled counter in the
//! metrics registry for each of them was a visible share of the leader's CPU. A tally adds them
//! up and touches each counter once.

use crate::clock::now_ms;

/// Decisions of one request (or one scheduler tick), recorded together.
#[derive(Default)]
pub struct DecisionTally {
    /// (outcome, source) → decisions.
    counts: Vec<(&'static str, &'static str, u64)>,
    committed: u64,
    /// Seconds from half message to decision, for each final decision whose start is known.
    waits: Vec<f64>,
}

impl DecisionTally {
    /// Adds one decision: `state` is the transaction's state after it (`pending` for an
    /// `unknown` answer), `created_ms` when its half message was stored, if known.
    pub fn add(&mut self, state: &'static str, source: &'static str, created_ms: Option<u64>) {
        match self
            .counts
            .iter_mut()
            .find(|(s, src, _)| *s == state && *src == source)
        {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((state, source, 1)),
        }
        if state == "pending" {
            return;
        }
        if state == "committed" {
            self.committed += 1;
        }
        if let Some(created_ms) = created_ms {
            self.waits
                .push(now_ms().saturating_sub(created_ms) as f64 / 1000.0);
        }
    }

    /// Records the tally in the metrics.
    pub fn record(self) {
        for (state, source, n) in self.counts {
            metrics::counter!("txmq_txn_decisions_total", "outcome" => state, "source" => source)
                .increment(n);
        }
        if self.committed > 0 {
            metrics::counter!("txmq_messages_produced_total", "type" => "transaction")
                .increment(self.committed);
        }
        if !self.waits.is_empty() {
            let histogram = metrics::histogram!("txmq_txn_time_to_decision_seconds");
            for seconds in self.waits {
                histogram.record(seconds);
            }
        }
    }
}
