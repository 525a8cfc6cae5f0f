//! Failed logins limited per source address, so guessing passwords is slow and cannot burn the
//! node's cores on password hashes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins one address may make per window before it is refused without a check.
pub const MAX_FAILURES: u32 = 10;
/// The window: an address's failures are forgotten this long after its first one.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked; past it the oldest windows are dropped (a flood of addresses cannot grow
/// the table without bound).
const MAX_TRACKED: usize = 10_000;

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

impl LoginLimiter {
    /// `Err(wait)` when `addr` used up its failures: refuse it for `wait`.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&addr) {
            Some(f) if f.count >= MAX_FAILURES && now < f.since + WINDOW => {
                Err(f.since + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_TRACKED && !table.contains_key(&addr) {
            table.retain(|_, f| now < f.since + WINDOW);
            if table.len() >= MAX_TRACKED {
                table.clear();
            }
        }
        let entry = table.entry(addr).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now >= entry.since + WINDOW {
            *entry = Failures {
                since: now,
                count: 0,
            };
        }
        entry.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let limiter = LoginLimiter::default();
        let addr: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(addr, start).is_ok());
            limiter.failed(addr, start);
        }
        let wait = limiter.check(addr, start + Duration::from_secs(1));
        assert_eq!(wait, Err(WINDOW - Duration::from_secs(1)));
        assert!(limiter.check(other, start).is_ok());
        assert!(limiter.check(addr, start + WINDOW).is_ok());
        limiter.failed(addr, start + WINDOW);
        assert!(limiter.check(addr, start + WINDOW).is_ok());
    }
}
