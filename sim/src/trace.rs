//! The run's trace: every event (faults, client requests and their outcomes, leadership) in
//! order, with its simulated time. Its hash proves a seed replays the same run; `--trace`
//! prints it.

use std::sync::Mutex;

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[derive(Debug)]
struct TraceInner {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Trace {
    inner: Mutex<TraceInner>,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Self {
        Trace {
            inner: Mutex::new(TraceInner {
                hash: 0xcbf2_9ce4_8422_2325,
                events: 0,
                lines: keep_lines.then(Vec::new),
            }),
        }
    }

    pub fn record(&self, at_ms: u64, text: impl FnOnce() -> String) {
        let line = format!("{at_ms:>7} {}", text());
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.hash = fnv1a(t.hash, line.as_bytes());
        t.hash = fnv1a(t.hash, b"\n");
        t.events += 1;
        if let Some(lines) = &mut t.lines {
            lines.push(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).hash
    }

    pub fn events(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).events
    }

    pub fn lines(&self) -> Vec<String> {
        let t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.lines.clone().unwrap_or_default()
    }
}
