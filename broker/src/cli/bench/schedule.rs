//! When each operation of a rate-limited run starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When each operation of a rate-limited run is due: the k-th operation of all workers at
/// `start + k / rate`. An open loop: a slow reply does not delay the next operation's scheduled
/// start, so its latency (counted from that start) includes the wait for a free worker instead
/// of hiding it (coordinated omission).
pub struct Schedule {
    start: Instant,
    interval: Option<Duration>,
    issued: AtomicU64,
    /// The longest any operation started after its scheduled time (µs): the workers were all
    /// busy, so the load generator, not only the cluster, held it up.
    most_late_us: AtomicU64,
}

impl Schedule {
    /// `rate` operations per second; 0: no schedule (each worker starts its next operation as
    /// soon as the last one ends).
    pub fn new(start: Instant, rate: f64) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        Self {
            start,
            interval,
            issued: AtomicU64::new(0),
            most_late_us: AtomicU64::new(0),
        }
    }

    /// Notes that the operation scheduled `at` starts now.
    pub fn started(&self, at: Instant) {
        let late = Instant::now().saturating_duration_since(at).as_micros() as u64;
        self.most_late_us.fetch_max(late, Ordering::Relaxed);
    }

    /// The longest delay between an operation's scheduled and actual start, in milliseconds.
    pub fn most_late_ms(&self) -> f64 {
        self.most_late_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// The scheduled start of the next operation, or `None` when the run is not rate-limited.
    pub fn next(&self) -> Option<Instant> {
        let interval = self.interval?;
        let k = self.issued.fetch_add(1, Ordering::Relaxed);
        Some(self.start + interval.mul_f64(k as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_spaces_the_scheduled_starts_evenly_across_workers() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 200.0);
        let starts: Vec<Duration> = (0..5)
            .map(|_| schedule.next().map(|at| at - start))
            .collect::<Option<_>>()
            .expect("a rate-limited schedule gives every operation a start");
        let expected: Vec<Duration> = (0..5).map(|k| Duration::from_millis(5 * k)).collect();
        assert_eq!(starts, expected);
    }

    #[test]
    fn a_late_start_is_remembered_as_the_longest_delay() {
        let schedule = Schedule::new(Instant::now(), 1000.0);
        let at = Instant::now() - Duration::from_millis(250);
        schedule.started(at);
        schedule.started(Instant::now() + Duration::from_secs(1)); // early: no delay
        assert!(
            schedule.most_late_ms() >= 250.0,
            "{}",
            schedule.most_late_ms()
        );
        assert!(schedule.most_late_ms() < 10_000.0);
    }

    #[test]
    fn no_rate_means_no_schedule() {
        assert_eq!(Schedule::new(Instant::now(), 0.0).next(), None);
    }
}
