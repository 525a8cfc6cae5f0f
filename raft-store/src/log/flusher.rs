//! Group commit for the Raft log: one thread fsyncs the active segment and then reports every
//! append that was written before the fsync started as flushed.
//!
//! Appends return as soon as their frames are in the file (openraft may then append again and
//! replicate), and all appends that arrive while an fsync runs share the next one. This is the
//! only place an append is reported flushed, and only after `fdatasync` returned for the file
//! that holds it (the durability rule of `crate::log::store`).

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use openraft::storage::IOFlushed;

use crate::types::TypeConfig;

struct FlushRequest {
    file: Arc<File>,
    callback: IOFlushed<TypeConfig>,
    entries: u64,
    written_at: Instant,
}

/// The handle appends use; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct LogFlusher {
    requests: mpsc::Sender<FlushRequest>,
}

impl LogFlusher {
    pub fn start() -> io::Result<Self> {
        let (requests, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("txmq-log-fsync".into())
            .spawn(move || run(receiver))?;
        Ok(Self { requests })
    }

    /// Reports `callback` once `file` (holding `entries` just-written entries) is synced.
    pub fn flush(&self, file: Arc<File>, entries: u64, callback: IOFlushed<TypeConfig>) {
        let request = FlushRequest {
            file,
            callback,
            entries,
            written_at: Instant::now(),
        };
        if let Err(mpsc::SendError(request)) = self.requests.send(request) {
            request.callback.io_completed(Err(io::Error::other(
                "the raft log fsync thread has stopped",
            )));
        }
    }
}

fn run(receiver: mpsc::Receiver<FlushRequest>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        let started = Instant::now();
        let result = sync_all_files(&batch);
        metrics::histogram!("txmq_raft_log_fsync_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("txmq_raft_log_appends_per_fsync").record(batch.len() as f64);
        let mut entries = 0;
        for request in batch {
            entries += request.entries;
            metrics::histogram!("txmq_raft_log_append_duration_seconds")
                .record(request.written_at.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            request.callback.io_completed(outcome);
        }
        metrics::counter!("txmq_raft_log_entries_appended_total").increment(entries);
    }
}

/// Syncs each distinct file of the batch once (usually one: a new segment is started only after
/// the previous one was synced).
fn sync_all_files(batch: &[FlushRequest]) -> io::Result<()> {
    let mut synced: Vec<&Arc<File>> = Vec::new();
    for request in batch {
        if synced.iter().any(|f| Arc::ptr_eq(f, &request.file)) {
            continue;
        }
        request.file.sync_data()?;
        synced.push(&request.file);
    }
    Ok(())
}
