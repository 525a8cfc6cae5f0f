//! A simulated disk under one node: what was written, what was fsynced, and what a crash
//! keeps.
//!
//! Two parts. The files — the Raft log's segments, the queue files, the transaction journal —
//! are bytes in a [`FileTable`], written by the real store code (`txmq_raft_store`) through
//! [`crate::sim_fs`]. The log's records (vote, committed index, purge point), the state
//! machine's rows and the snapshot manifests are records in a [`DiskImage`] (the real node
//! keeps them in sled and snapshot files, which are not simulated byte by byte): one ordered
//! stream of writes, as sled's own log is.
//!
//! Writes are readable at once and become durable only when a later fsync completes. A power
//! loss keeps the durable state plus a random prefix of the writes not yet synced (for the
//! files, the last kept write possibly torn at a random byte); a process exit keeps everything
//! written. Fsyncs take a random time, sometimes long; a write can fail (EIO, ENOSPC) when the
//! fault schedule says so. Each incarnation of the node writes under its epoch: after a crash
//! the old incarnation's writes fail instead of landing.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use crate::file_table::FileTable;
use crate::rng::SimRng;
use crate::types::SnapshotMeta;

/// A snapshot as stored: its metadata and its data in the real snapshot format — a manifest
/// (the metadata rows; the messages it covers stay in the queue files), or, while one is being
/// installed, the full snapshot received.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// What a node keeps on disk besides its files: the log's records and the state machine's rows
/// (by key, as the real node's sled trees hold them) and its latest snapshot manifest.
#[derive(Debug, Clone, Default)]
pub struct DiskImage {
    pub log_records: BTreeMap<Vec<u8>, Vec<u8>>,
    pub rows: BTreeMap<Vec<u8>, Vec<u8>>,
    pub snapshot: Option<StoredSnapshot>,
}

/// One write of a record, in the order it was made.
#[derive(Debug, Clone)]
pub enum DiskWrite {
    LogRecord(Vec<u8>, Vec<u8>),
    /// One atomic batch of row changes (`None` removes the row).
    Rows(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    ClearRows,
    Snapshot(Box<StoredSnapshot>),
}

impl DiskImage {
    fn apply(&mut self, write: &DiskWrite) {
        match write {
            DiskWrite::LogRecord(key, value) => {
                self.log_records.insert(key.clone(), value.clone());
            }
            DiskWrite::Rows(changes) => {
                for (key, value) in changes {
                    match value {
                        Some(value) => self.rows.insert(key.clone(), value.clone()),
                        None => self.rows.remove(key),
                    };
                }
            }
            DiskWrite::ClearRows => self.rows.clear(),
            DiskWrite::Snapshot(s) => self.snapshot = Some((**s).clone()),
        }
    }
}

/// The faults the schedule can switch on for one disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFaults {
    /// Probability that a write fails with an I/O error.
    pub error_rate: f64,
    /// Fsyncs take 20–400 ms instead of 0.1–2 ms.
    pub slow: bool,
}

#[derive(Debug)]
struct DiskInner {
    durable: DiskImage,
    /// Writes made since the last completed fsync, with their sequence numbers.
    unsynced: Vec<(u64, DiskWrite)>,
    /// What the running incarnation reads: `durable` with `unsynced` applied.
    view: DiskImage,
    /// The log's segment files.
    files: FileTable,
    next_seq: u64,
    epoch: u64,
    faults: DiskFaults,
    rng: SimRng,
}

/// One node's disk.
#[derive(Debug)]
pub struct SimDisk {
    inner: Mutex<DiskInner>,
}

/// Why a disk operation failed.
fn stale_epoch() -> io::Error {
    io::Error::other("this incarnation of the node crashed; its writes no longer land")
}

impl SimDisk {
    pub fn new(rng: SimRng) -> Self {
        SimDisk {
            inner: Mutex::new(DiskInner {
                durable: DiskImage::default(),
                unsynced: Vec::new(),
                view: DiskImage::default(),
                files: FileTable::default(),
                next_seq: 0,
                epoch: 0,
                faults: DiskFaults::default(),
                rng,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DiskInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// Reads the image the running incarnation sees.
    pub fn read<T>(&self, f: impl FnOnce(&DiskImage) -> T) -> T {
        f(&self.lock().view)
    }

    /// Writes a record (not yet durable). Fails for a crashed incarnation or by an injected
    /// fault.
    pub fn write(&self, epoch: u64, write: DiskWrite) -> io::Result<()> {
        let mut d = self.lock();
        d.check_write(epoch)?;
        d.view.apply(&write);
        let seq = d.next_seq;
        d.next_seq += 1;
        d.unsynced.push((seq, write));
        Ok(())
    }

    /// Runs `f` on the log's files for the incarnation `epoch` (which must be the running
    /// one); `writing` rolls the dice for an injected write error first.
    pub fn files<T>(
        &self,
        epoch: u64,
        writing: bool,
        f: impl FnOnce(&mut FileTable) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut d = self.lock();
        if writing {
            d.check_write(epoch)?;
        } else if d.epoch != epoch {
            return Err(stale_epoch());
        }
        f(&mut d.files)
    }

    /// Waits as long as an fsync takes on this disk now.
    pub async fn fsync_delay(&self) {
        let delay = {
            let mut d = self.lock();
            if d.faults.slow {
                d.rng.between(20_000, 400_000)
            } else {
                d.rng.between(100, 2_000)
            }
        };
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }

    /// Makes every record written so far durable, after a simulated fsync delay.
    pub async fn sync(&self, epoch: u64) -> io::Result<()> {
        let target = self.lock().next_seq;
        self.fsync_delay().await;
        self.lock().make_durable(epoch, target)
    }

    /// Makes every record written so far durable at once (a blocking flush, whose time the
    /// caller waits for separately).
    pub fn sync_now(&self, epoch: u64) -> io::Result<()> {
        let mut d = self.lock();
        let target = d.next_seq;
        d.make_durable(epoch, target)
    }

    /// A power loss: keeps the durable state and a random prefix of the unsynced writes (see
    /// [`FileTable::power_loss`] for the files), and fences the old incarnation. Returns how
    /// many writes were lost.
    pub fn power_loss(&self) -> usize {
        let mut d = self.lock();
        let d = &mut *d;
        d.epoch += 1;
        let pending = std::mem::take(&mut d.unsynced);
        let keep = d.rng.below(pending.len() as u64 + 1) as usize;
        for (_, w) in pending.iter().take(keep) {
            d.durable.apply(w);
        }
        d.view = d.durable.clone();
        pending.len() - keep + d.files.power_loss(&mut d.rng)
    }

    /// A process exit: the operating system still holds every write; only the incarnation
    /// changes (and the files no handle can hold any more are dropped).
    pub fn process_exit(&self) {
        let mut d = self.lock();
        d.epoch += 1;
        d.files.collect_garbage();
    }
}

impl DiskInner {
    /// Makes the records written before sequence number `target` durable.
    fn make_durable(&mut self, epoch: u64, target: u64) -> io::Result<()> {
        if self.epoch != epoch {
            return Err(stale_epoch());
        }
        let done = self
            .unsynced
            .iter()
            .take_while(|(seq, _)| *seq < target)
            .count();
        let synced: Vec<(u64, DiskWrite)> = self.unsynced.drain(..done).collect();
        for (_, w) in &synced {
            self.durable.apply(w);
        }
        Ok(())
    }

    /// Fails a write of a crashed incarnation, or by an injected fault.
    fn check_write(&mut self, epoch: u64) -> io::Result<()> {
        if self.epoch != epoch {
            return Err(stale_epoch());
        }
        let error_rate = self.faults.error_rate;
        if error_rate > 0.0 && self.rng.chance(error_rate) {
            let kind = if self.rng.chance(0.5) {
                "EIO"
            } else {
                "ENOSPC"
            };
            return Err(io::Error::other(format!("simulated {kind} on write")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(term: u8) -> DiskWrite {
        DiskWrite::LogRecord(b"vote".to_vec(), vec![term])
    }

    fn voted(disk: &SimDisk) -> Option<u8> {
        disk.read(|i| i.log_records.get(b"vote".as_slice()).map(|v| v[0]))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn synced_writes_survive_a_power_loss_and_unsynced_ones_may_not() {
        let disk = SimDisk::new(SimRng::new(3));
        disk.write(0, vote(1)).expect("write");
        block_on(disk.sync(0)).expect("sync");
        let mut lost = false;
        for term in 2..22 {
            let before = voted(&disk);
            assert!(before.is_some(), "the synced vote survives");
            disk.write(disk.epoch(), vote(term)).expect("write");
            disk.power_loss();
            let after = voted(&disk);
            assert!(after == before || after == Some(term));
            lost |= after == before;
        }
        assert!(lost, "an unsynced write was never lost in 20 power losses");
    }

    #[test]
    fn a_crashed_incarnation_cannot_write() {
        let disk = SimDisk::new(SimRng::new(3));
        disk.process_exit();
        assert!(disk.write(0, vote(1)).is_err());
        assert!(disk.write(1, vote(1)).is_ok());
        disk.process_exit();
        assert_eq!(voted(&disk), Some(1), "a process exit keeps writes");
    }
}
