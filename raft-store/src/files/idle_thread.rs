//! Background work that must not compete with the write path for the CPU.
//!
//! Building a snapshot encodes every metadata row — with a full window of decided
//! transactions, 50,000 records, ~15 MB — in one burst of a few hundred milliseconds, on every
//! node at about the same log index. At normal priority those bursts took the cores from the
//! appends, replication and applies, and every write in the meantime waited: under a steady
//! transactional load at half the maximum rate the client's p99 was ~70 ms with snapshots and
//! ~14 ms without. Nice 10 brought it to ~37 ms, nice 19 to ~32 ms (a niced thread still keeps
//! the CPU for its time slice when a write-path thread wakes up); `SCHED_IDLE` to ~28 ms: such
//! a thread runs only on a core nothing else wants and gives it up at once. It is not starved
//! in practice — the write path itself waits on fsyncs and the network, and at the maximum
//! transaction rate a snapshot still took 0.3–0.55 s — but on a host whose cores are busy all
//! the time a snapshot waits, and the log grows meanwhile.

use std::io;

/// Runs `work` on a new thread named `name` that gets a core only when no other thread wants
/// it, and returns its result.
pub async fn run_when_idle<T, F>(name: &str, work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_this_threads_priority();
            let _ = done.send(work());
        })?;
    result
        .await
        .map_err(|_| io::Error::other("a background thread ended without a result"))
}

/// Puts the calling thread in the `SCHED_IDLE` class (on Linux a scheduling policy is per
/// thread), or failing that at the lowest nice value. Best effort: where neither can be set the
/// work runs at normal priority.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; the call only reads `param`.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
        // SAFETY: as above; setpriority changes only this thread's nice value.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            tracing::debug!(
                "could not lower a background thread's priority: {}",
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_work_runs_in_the_idle_class_and_returns_its_result() {
        // SAFETY: reads the calling thread's own policy.
        let (policy, answer) = run_when_idle("test-background", || {
            (unsafe { libc::sched_getscheduler(0) }, 42)
        })
        .await
        .expect("the background thread answers");
        assert_eq!(answer, 42);
        assert_eq!(policy, libc::SCHED_IDLE);
        // SAFETY: as above, for the test's own thread: unchanged.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }
}
