//! What a bench run counted: operations that succeeded and failed (by error code, with the
//! first failure's message, so a run that fails says why), and when to give up early.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use txmq_client::ClientError;

/// Past this long with failures and not one success, a run stops: nothing it would measure
/// means anything, and the first error already says why.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

/// When operations count: those starting from `measured_from` (after the warm-up) up to
/// `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measured_from: Instant,
    pub deadline: Instant,
}

impl Window {
    /// Whether an operation starting `at` counts (is past the warm-up).
    pub fn counts(&self, at: Instant) -> bool {
        at >= self.measured_from
    }
}

/// The counts of a run, shared by its workers.
#[derive(Default)]
pub struct Tally {
    /// Transactions begun by all workers: numbers them for the rollback ratio.
    pub transactions: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    /// What the scenario counts (acknowledged sends, committed transactions, acked messages).
    pub counted: AtomicU64,
    /// Every failure (warm-up included) by error code, and the first one.
    failures: Mutex<Failures>,
    /// Set when the run gives up early; workers stop at their next operation.
    stopped: AtomicBool,
}

#[derive(Default)]
struct Failures {
    by_code: BTreeMap<String, u64>,
    first: Option<ClientError>,
}

impl Tally {
    pub fn succeeded(&self, counted: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.counted.fetch_add(counted, Ordering::Relaxed);
    }

    /// Notes a failure; `measured`: it counts in the summary's error total.
    pub fn failed(&self, error: ClientError, measured: bool) {
        if measured {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        *f.by_code.entry(error.code.clone()).or_default() += 1;
        f.first.get_or_insert(error);
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The first failure of the run, if any.
    pub fn first_error(&self) -> Option<ClientError> {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.first.clone()
    }

    /// Failures by code, as JSON (`{"unavailable": 3, ...}`).
    pub fn errors_by_code(&self) -> Value {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        json!(f.by_code)
    }

    /// Stops the run when, `elapsed` into it, operations have failed and none has succeeded.
    /// Returns whether the run is (now) stopped.
    pub fn give_up_if_all_failing(&self, elapsed: Duration) -> bool {
        let failing = {
            let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            f.first.is_some()
        };
        if failing && self.ok() == 0 && elapsed >= GIVE_UP_AFTER {
            self.stopped.store(true, Ordering::Relaxed);
        }
        self.is_stopped()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Whether failures dominate the measured operations (the run exits non-zero then).
    pub fn failed_run(&self) -> bool {
        let (ok, errors) = (self.ok(), self.errors());
        self.is_stopped() || errors > ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_code_and_the_first_is_kept() {
        let tally = Tally::default();
        tally.failed(
            ClientError::new("failed_precondition", "wrong topic type"),
            true,
        );
        tally.failed(ClientError::new("unavailable", "no leader"), true);
        tally.failed(ClientError::new("failed_precondition", "again"), false);
        assert_eq!(tally.errors(), 2, "warm-up failures are not in the total");
        assert_eq!(
            tally.errors_by_code(),
            json!({"failed_precondition": 2, "unavailable": 1})
        );
        assert_eq!(
            tally.first_error().map(|e| e.message),
            Some("wrong topic type".to_string())
        );
        assert!(tally.failed_run(), "2 errors, 0 ok");
    }

    #[test]
    fn a_run_gives_up_only_when_everything_fails_long_enough() {
        let tally = Tally::default();
        tally.failed(ClientError::new("unavailable", "down"), true);
        assert!(!tally.give_up_if_all_failing(Duration::from_secs(1)));
        assert!(tally.give_up_if_all_failing(GIVE_UP_AFTER));
        let healthy = Tally::default();
        healthy.succeeded(1);
        healthy.failed(ClientError::new("unavailable", "one blip"), true);
        assert!(!healthy.give_up_if_all_failing(GIVE_UP_AFTER * 10));
        assert!(
            !healthy.failed_run(),
            "1 error, 1 ok: errors do not dominate"
        );
    }
}
