//! The node's data volume: free and total bytes (for readiness, metrics and the leader's
//! high-water trimming across voters), and the reserve below which new Raft log entries wait
//! at the store's [`SpaceGate`] instead of failing on a full disk.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use txmq_raft_store::log::space_gate::DiskSpace;
use txmq_raft_store::log::space_gate::SpaceGate;

const CHECK_EVERY: Duration = Duration::from_millis(500);
const MIB: u64 = 1024 * 1024;

/// The reserve for a volume of `total_bytes`: 5 % of it, at least 16 MiB and at most 256 MiB —
/// room for the node to apply and checkpoint what its log already holds once it stops taking
/// new entries.
pub fn default_reserve(total_bytes: u64) -> u64 {
    (total_bytes / 20).clamp(16 * MIB, 256 * MIB)
}

/// Watches the data volume and opens or closes the log's space gate.
pub struct DiskMonitor {
    data_dir: PathBuf,
    /// `--disk-reserve-bytes`, or the default for the volume.
    reserve_setting: Option<u64>,
    gate: Arc<SpaceGate>,
    latest: Mutex<Option<DiskSpace>>,
    /// Whether the gate is closed, for whoever must react (the node stands aside as leader).
    full: tokio::sync::watch::Sender<bool>,
}

impl DiskMonitor {
    pub fn new(data_dir: PathBuf, reserve_setting: Option<u64>, gate: Arc<SpaceGate>) -> Arc<Self> {
        let monitor = Arc::new(Self {
            data_dir,
            reserve_setting,
            gate,
            latest: Mutex::new(None),
            full: tokio::sync::watch::Sender::new(false),
        });
        monitor.check();
        monitor
    }

    /// Whether the volume is nearly full (new log entries wait), as it changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.full.subscribe()
    }

    /// The space last seen.
    pub fn latest(&self) -> Option<DiskSpace> {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve(&self, space: DiskSpace) -> u64 {
        self.reserve_setting
            .unwrap_or_else(|| default_reserve(space.total_bytes))
    }

    /// Why the node takes no new entries, while its volume is nearly full.
    pub fn full_reason(&self) -> Option<String> {
        if !self.gate.is_closed() {
            return None;
        }
        let space = self.latest()?;
        Some(format!(
            "disk nearly full: {} MiB free in {}, below the reserve of {} MiB; new log entries \
             wait until space is freed",
            space.free_bytes / MIB,
            self.data_dir.display(),
            self.reserve(space) / MIB
        ))
    }

    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            self.check();
        }
    }

    /// Closes the gate below the reserve, opens it again a little above it (so that it does not
    /// flap around the line).
    fn check(&self) {
        let Some(space) = DiskSpace::of(&self.data_dir) else {
            return;
        };
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(space);
        metrics::gauge!("txmq_disk_free_bytes").set(space.free_bytes as f64);
        metrics::gauge!("txmq_disk_total_bytes").set(space.total_bytes as f64);
        let reserve = self.reserve(space);
        self.gate.set_reserve(reserve);
        let closed = self.gate.is_closed();
        if !closed && space.free_bytes < reserve {
            self.gate.close();
            tracing::error!(
                free_mib = space.free_bytes / MIB,
                reserve_mib = reserve / MIB,
                data_dir = %self.data_dir.display(),
                "disk nearly full: this node takes no new log entries until space is freed \
                 (reads go on; it catches up by itself afterwards)"
            );
        } else if closed && space.free_bytes >= reserve + (reserve / 4).max(4 * MIB) {
            self.gate.open();
            tracing::warn!(
                free_mib = space.free_bytes / MIB,
                "disk space is back: this node takes log entries again"
            );
        }
        let full = self.gate.is_closed();
        self.full
            .send_if_modified(|f| std::mem::replace(f, full) != full);
        metrics::gauge!("txmq_storage_full").set(if full { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reserve_is_five_percent_within_bounds() {
        assert_eq!(default_reserve(64 * MIB), 16 * MIB);
        assert_eq!(default_reserve(1024 * MIB), 51 * MIB + 204 * 1024 + 819);
        assert_eq!(default_reserve(1024 * 1024 * MIB), 256 * MIB);
    }

    #[test]
    fn the_gate_closes_below_the_reserve_and_opens_above_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gate = Arc::new(SpaceGate::default());
        let free = DiskSpace::of(dir.path()).expect("statvfs").free_bytes;
        // A reserve above what is free closes the gate at once...
        let monitor = DiskMonitor::new(
            dir.path().to_path_buf(),
            Some(free + 1024 * MIB),
            gate.clone(),
        );
        assert!(gate.is_closed());
        assert!(
            monitor
                .full_reason()
                .is_some_and(|r| r.contains("disk nearly full"))
        );
        // ... and one well below it opens it again.
        let monitor = DiskMonitor::new(dir.path().to_path_buf(), Some(1), gate.clone());
        assert!(!gate.is_closed());
        assert!(monitor.full_reason().is_none());
    }
}
