//! The wait of a long-polling receive: until this node applies something new, a lease comes
//! due, or the consumer's wait is over.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use txmq_raft_store::StateReader;

use crate::clock::now_ms;

/// The longest single nap: a lease may come due without anything being applied.
const MAX_NAP: Duration = Duration::from_secs(1);

/// One receive's remaining wait.
pub struct LongPoll {
    applied: watch::Receiver<u64>,
    deadline: Instant,
    wait: Duration,
}

impl LongPoll {
    pub fn new(reader: &StateReader, wait: Duration) -> Self {
        LongPoll {
            applied: reader.watch_applied_index(),
            deadline: Instant::now() + wait,
            wait,
        }
    }

    /// Sleeps until this node applies an entry, `wake_at_ms` (when a lease expires) or the
    /// deadline, whichever is first; false once the deadline has passed (answer empty).
    pub async fn wait(&mut self, wake_at_ms: Option<u64>) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let until_wake = wake_at_ms
            .map(|w| Duration::from_millis(w.saturating_sub(now_ms())))
            .unwrap_or(self.wait);
        let nap = until_wake.min(self.deadline - now).min(MAX_NAP);
        let _ = tokio::time::timeout(nap, self.applied.changed()).await;
        true
    }
}
