//! Whether the data volume has room for new Raft log entries.
//!
//! Why a gate rather than an error: a failed log append stops openraft for good, and a write
//! that hits a full disk can leave half a frame behind. So before writing, an append checks that
//! the volume keeps a reserve of free space after it, and otherwise *waits* (the node's disk
//! monitor closes the gate too, and opens it again once space is back). Meanwhile the node takes
//! no new entries (a follower falls behind; a leader hands leadership over), the entries its log
//! already holds are applied and checkpointed within the reserve, reads go on, and once space
//! returns the node catches up by itself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often a waiting append looks again.
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub struct SpaceGate {
    /// The volume to watch (none: never checked, the gate only follows `close`/`open`).
    dir: Option<PathBuf>,
    /// Free bytes to keep after an append (0: no reserve).
    reserve: AtomicU64,
    closed: AtomicBool,
}

impl SpaceGate {
    /// A gate watching the volume holding `dir`.
    pub fn watching(dir: PathBuf) -> Self {
        Self {
            dir: Some(dir),
            ..Self::default()
        }
    }

    pub fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Release);
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Returns once the gate is open and writing `bytes` leaves the reserve free; closes the
    /// gate while it does not (the disk monitor opens it again).
    pub async fn wait_for_room(&self, bytes: u64) {
        loop {
            if !self.is_closed() {
                if self.has_room(bytes) {
                    return;
                }
                self.close();
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    fn has_room(&self, bytes: u64) -> bool {
        let reserve = self.reserve.load(Ordering::Acquire);
        match (&self.dir, reserve) {
            (Some(dir), r) if r > 0 => {
                DiskSpace::of(dir).is_none_or(|space| space.free_bytes >= r + bytes)
            }
            _ => true,
        }
    }
}

/// Free and total bytes of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    /// Available to this (unprivileged) process.
    pub free_bytes: u64,
}

impl DiskSpace {
    /// The volume holding `dir` (`None` when it cannot be read).
    pub fn of(dir: &std::path::Path) -> Option<DiskSpace> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 || stat.f_blocks == 0 {
            return None;
        }
        let block = stat.f_frsize as u64;
        Some(DiskSpace {
            total_bytes: stat.f_blocks as u64 * block,
            free_bytes: stat.f_bavail as u64 * block,
        })
    }

    pub fn used_fraction(&self) -> f64 {
        1.0 - self.free_bytes as f64 / self.total_bytes.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiting_append_goes_on_once_the_gate_opens() {
        let gate = Arc::new(SpaceGate::default());
        gate.wait_for_room(1).await;
        gate.close();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_for_room(1).await }
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!waiter.is_finished(), "passed a closed gate");
        gate.open();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("still waiting after the gate opened")
            .expect("waiter panicked");
    }

    #[tokio::test]
    async fn an_append_that_would_eat_into_the_reserve_closes_the_gate_and_waits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gate = Arc::new(SpaceGate::watching(dir.path().to_path_buf()));
        let free = DiskSpace::of(dir.path()).expect("statvfs").free_bytes;
        gate.set_reserve(1);
        gate.wait_for_room(1024).await;
        gate.set_reserve(free);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_for_room(free).await }
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!waiter.is_finished() && gate.is_closed());
        waiter.abort();
    }
}
