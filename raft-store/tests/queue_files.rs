//! The per-queue message files: reads across files, retention, reopening after a crash (cut back
//! to the durable state's offsets), and damage that must stop a node instead of shrinking a queue.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, ensure};
use proptest::prelude::*;
use txmq_raft_store::files::queue_files::QueueFiles;

/// Small files so that a few messages span several.
const SEGMENT: u64 = 1024;

fn message(offset: u64) -> Vec<u8> {
    format!("message {offset} {}", "x".repeat((offset % 90) as usize)).into_bytes()
}

fn append(q: &QueueFiles, first: u64, count: u64) -> Result<()> {
    let messages: Vec<Vec<u8>> = (first..first + count).map(message).collect();
    q.append(1, 0, first, &messages)?;
    Ok(())
}

fn read(q: &QueueFiles, from: u64, end: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    q.read(1, 0, from, end, |offset, bytes| {
        if bytes != message(offset).as_slice() {
            return Err(std::io::Error::other(format!("wrong bytes at {offset}")));
        }
        out.push(offset);
        Ok(true)
    })?;
    Ok(out)
}

fn files(dir: &Path) -> Result<usize> {
    Ok(std::fs::read_dir(dir.join("1-0"))?.count())
}

fn expect(low: u64, next: u64) -> HashMap<(u64, u32), (u64, u64)> {
    HashMap::from([((1, 0), (low, next))])
}

#[test]
fn reads_span_files_and_start_anywhere() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    for first in (0..200).step_by(10) {
        append(&q, first, 10)?;
    }
    ensure!(files(dir.path())? > 5, "small files roll");
    ensure!(read(&q, 0, 200)? == (0..200).collect::<Vec<_>>());
    ensure!(read(&q, 77, 133)? == (77..133).collect::<Vec<_>>());
    ensure!(read(&q, 199, 500)? == vec![199]);
    ensure!(read(&q, 200, 500)?.is_empty());
    // Stopping early reads no further.
    let mut seen = 0;
    q.read(1, 0, 5, 200, |_, _| {
        seen += 1;
        Ok(seen < 3)
    })?;
    ensure!(seen == 3);
    Ok(())
}

#[test]
fn an_append_out_of_step_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    append(&q, 0, 5)?;
    ensure!(append(&q, 7, 1).is_err(), "a gap");
    ensure!(append(&q, 3, 1).is_err(), "an overlap");
    append(&q, 5, 1)?;
    Ok(())
}

#[test]
fn trimming_deletes_whole_files_below_and_keeps_the_rest_readable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    append(&q, 0, 200)?;
    for first in (200..400).step_by(20) {
        append(&q, first, 20)?;
    }
    let before = files(dir.path())?;
    let bytes = q.disk_bytes();
    q.trim_below(1, 0, 300)?;
    ensure!(files(dir.path())? < before);
    ensure!(q.disk_bytes() < bytes);
    let kept = read(&q, 0, 400)?;
    ensure!(
        kept.first().is_some_and(|f| *f <= 300),
        "offset 300 is still there"
    );
    ensure!(kept.last() == Some(&399));
    ensure!(read(&q, 300, 400)? == (300..400).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn reopening_cuts_back_to_the_durable_offsets_and_rebuilds_indexes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let q = QueueFiles::open(dir.path(), SEGMENT)?;
        for first in (0..100).step_by(10) {
            append(&q, first, 10)?;
        }
        q.sync()?;
    }
    // The durable state says 0..63 are stored: 63.. were applied after the last checkpoint.
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    q.reconcile(&expect(0, 63))?;
    ensure!(read(&q, 0, 1000)? == (0..63).collect::<Vec<_>>());
    ensure!(read(&q, 40, 50)? == (40..50).collect::<Vec<_>>());
    // Re-applying the log appends 63.. again.
    append(&q, 63, 37)?;
    ensure!(read(&q, 0, 1000)? == (0..100).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_torn_last_message_is_cut_off_on_reopening() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let q = QueueFiles::open(dir.path(), 1 << 20)?;
        append(&q, 0, 10)?;
        q.sync()?;
    }
    let file = std::fs::read_dir(dir.path().join("1-0"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no file"))??
        .path();
    let len = std::fs::metadata(&file)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)?
        .set_len(len - 3)?;
    let q = QueueFiles::open(dir.path(), 1 << 20)?;
    q.reconcile(&expect(0, 9))?;
    ensure!(read(&q, 0, 100)? == (0..9).collect::<Vec<_>>());
    append(&q, 9, 1)?;
    ensure!(read(&q, 0, 100)? == (0..10).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn fewer_messages_than_the_state_names_is_damage_not_a_shorter_queue() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let q = QueueFiles::open(dir.path(), SEGMENT)?;
        append(&q, 0, 10)?;
        q.sync()?;
    }
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    let err = match q.reconcile(&expect(0, 12)) {
        Ok(()) => anyhow::bail!("a queue missing offsets 10 and 11 was accepted"),
        Err(e) => e,
    };
    ensure!(err.to_string().contains("damaged"), "{err}");
    Ok(())
}

/// A follower that installed a snapshot may lack the oldest messages the snapshot covers
/// (retention removed them at the sender meanwhile): it must still start, and serve the rest.
#[test]
fn messages_missing_at_the_start_are_allowed_at_the_end_they_are_not() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let q = QueueFiles::open(dir.path(), SEGMENT)?;
        append(&q, 40, 20)?;
        q.sync()?;
    }
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    q.reconcile(&expect(30, 60))?;
    ensure!(read(&q, 30, 60)? == (40..60).collect::<Vec<_>>());
    append(&q, 60, 1)?;
    // No files at all for a queue whose messages were all removed before they arrived.
    q.reconcile(&HashMap::from([((1, 0), (30, 61)), ((2, 0), (5, 9))]))?;
    ensure!(read(&q, 30, 61)?.last() == Some(&60));
    Ok(())
}

#[test]
fn queues_the_durable_state_does_not_know_are_removed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let q = QueueFiles::open(dir.path(), SEGMENT)?;
        q.append(9, 2, 0, &[b"created after the checkpoint".to_vec()])?;
        q.sync()?;
    }
    let q = QueueFiles::open(dir.path(), SEGMENT)?;
    q.reconcile(&HashMap::new())?;
    ensure!(!dir.path().join("9-2").exists());
    // The re-applied creation writes it again from offset 0.
    q.append(9, 2, 0, &[b"again".to_vec()])?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Appends, trims, crashes (cut back to a checkpointed offset) and reads in any order leave
    /// exactly the offsets the model holds readable, from any starting point.
    #[test]
    fn the_files_match_a_model(ops in prop::collection::vec((0u8..4, 1u64..40), 1..40)) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let run = || -> Result<()> {
            let mut q = QueueFiles::open(dir.path(), SEGMENT)?;
            let (mut low, mut next, mut durable) = (0u64, 0u64, 0u64);
            for (op, n) in &ops {
                match op {
                    0 => {
                        append(&q, next, *n)?;
                        next += n;
                    }
                    1 => {
                        // As a checkpoint does: files synced (and the new low durable) first.
                        q.sync()?;
                        durable = next;
                        low = (low + n).min(next);
                        q.trim_below(1, 0, low)?;
                    }
                    2 => {
                        q.sync()?;
                        durable = next;
                    }
                    _ => {
                        drop(q);
                        q = QueueFiles::open(dir.path(), SEGMENT)?;
                        next = durable;
                        low = low.min(next);
                        q.reconcile(&expect(low, next))?;
                    }
                }
                let start = low + n % 7;
                let got = read(&q, start, next)?;
                let want: Vec<u64> = (start.min(next)..next).collect();
                ensure!(got == want, "after op {op}: read {start}.. gave {got:?}, want {want:?}");
            }
            Ok(())
        };
        run().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}
