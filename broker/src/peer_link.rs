//! How this node treats a peer it cannot reach: a failed attempt is reported to openraft only
//! after a pause that grows with every failure in a row (exponential, capped, jittered), so
//! openraft — which retries at once — makes a few attempts a second at most; and the peer's
//! state is logged when it goes, when it comes back and in a reminder every minute — not once
//! per failed attempt. The pause comes after the failure, never before an attempt: openraft
//! builds a replication session's payload before calling us, and entries purged while a
//! session slept would be read as missing forever. Openraft
//! logs every failed replication attempt, and without a wait it attempts again as soon as the
//! connection is refused: thousands of lines a second while one peer is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use txmq_raft_store::NodeId;

/// The first retry delay after a failure, doubled per further failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between attempts: also how late a returning peer is noticed at most.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often a peer that stays unreachable is mentioned again.
const REMINDER: Duration = Duration::from_secs(60);

/// One peer's reachability, shared by every connection this node makes to it.
#[derive(Debug)]
pub struct PeerLink {
    target: NodeId,
    state: Mutex<LinkState>,
}

#[derive(Debug, Default)]
struct LinkState {
    /// Consecutive failed attempts (0: reachable).
    failures: u32,
    down_since: Option<Instant>,
    reminded_at: Option<Instant>,
}

impl PeerLink {
    pub fn new(target: NodeId) -> Self {
        metrics::gauge!("txmq_peer_reachable", "peer" => target.to_string()).set(1.0);
        Self {
            target,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt failed to reach the peer: how long to pause before reporting it (longer
    /// with every failure in a row).
    pub fn failed(&self, error: &dyn std::fmt::Display) -> Duration {
        let now = Instant::now();
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        let pause = retry_delay(state.failures);
        match state.down_since {
            None => {
                state.down_since = Some(now);
                state.reminded_at = Some(now);
                metrics::gauge!("txmq_peer_reachable", "peer" => self.target.to_string()).set(0.0);
                tracing::warn!(peer = self.target, %error, "peer unreachable; retrying with backoff");
            }
            Some(since) if state.reminded_at.is_none_or(|r| now - r >= REMINDER) => {
                state.reminded_at = Some(now);
                tracing::warn!(
                    peer = self.target,
                    down_for = ?(now - since),
                    attempts = state.failures,
                    %error,
                    "peer still unreachable"
                );
            }
            Some(_) => {}
        }
        pause
    }

    /// An attempt reached the peer.
    pub fn succeeded(&self) {
        let mut state = self.lock();
        if let Some(since) = state.down_since {
            metrics::gauge!("txmq_peer_reachable", "peer" => self.target.to_string()).set(1.0);
            tracing::info!(peer = self.target, down_for = ?since.elapsed(), "peer reachable again");
        }
        *state = LinkState::default();
    }
}

/// The wait after `failures` consecutive failures: doubling from [`FIRST_DELAY`], capped at
/// [`MAX_DELAY`], less up to a quarter at random so that nodes retrying one peer spread out.
fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = FIRST_DELAY.saturating_mul(1 << exponent).min(MAX_DELAY);
    // The clock's nanoseconds, mixed with the pid, are random enough to spread retries.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mixed = (nanos ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let fraction = (mixed >> 11) as f64 / (1u64 << 53) as f64;
    full - (full / 4).mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_a_quarter_off() {
        for failures in 1..40u32 {
            let full = FIRST_DELAY
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(MAX_DELAY);
            let d = retry_delay(failures);
            assert!(
                d <= full && d >= full * 3 / 4,
                "{failures}: {d:?} of {full:?}"
            );
        }
        assert!(retry_delay(30) >= MAX_DELAY * 3 / 4);
    }

    #[test]
    fn failures_pause_longer_and_a_success_resets() {
        let link = PeerLink::new(7);
        let first = link.failed(&"refused");
        let mut last = first;
        for _ in 0..5 {
            last = link.failed(&"refused");
        }
        assert!(
            first <= FIRST_DELAY && last > Duration::from_millis(500),
            "{first:?} {last:?}"
        );
        assert!(link.lock().down_since.is_some());
        link.succeeded();
        assert_eq!(link.lock().failures, 0);
        assert!(link.failed(&"refused") <= FIRST_DELAY);
    }
}
