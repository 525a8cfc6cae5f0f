//! Freeing deleted files' blocks on a thread of their own, one file at a time.
//!
//! Why: a transaction-journal compaction deletes ~32 MiB of files, and every node compacts
//! within a second or so of the others (their journals grow alike). Freed at once, on a
//! `-o discard` mount those blocks are discarded in one go, and the Raft log's syncs of every
//! node wait behind the discards: the purge of the Raft log showed that cost (see
//! [`crate::files::gradual_delete`]). Here the names go at once (a queue's file name can be
//! used again right after: [`crate::files::queue_files::QueueFiles::clear`]), and the handles are
//! given to a thread that frees them [`PAUSE`] apart, big ones a chunk at a time.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::files::file_system::StoredFile;
use crate::files::gradual_delete::PAUSE;

/// Handles waiting to be freed at most; past it a file is freed at once by its caller.
const MAX_WAITING: usize = 1024;

/// Frees the files given to it in the background (a thread started on first use, which ends
/// when the reaper is dropped and its queue is empty).
pub struct FileReaper<T: StoredFile> {
    queue: Mutex<Option<SyncSender<Arc<T>>>>,
}

impl<T: StoredFile> Default for FileReaper<T> {
    fn default() -> Self {
        FileReaper {
            queue: Mutex::new(None),
        }
    }
}

impl<T: StoredFile> FileReaper<T> {
    /// Takes the handle of a file whose name was removed: its blocks are freed later.
    pub fn free(&self, file: Arc<T>) {
        if !T::FREED_GRADUALLY {
            return; // Dropping the handle frees the file.
        }
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            *queue = start_thread();
        }
        let Some(sender) = queue.as_ref() else {
            return; // No thread: dropping the handle frees the file now.
        };
        match sender.try_send(file) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::debug!("file reaper busy: a deleted file is freed at once");
            }
            Err(TrySendError::Disconnected(_)) => *queue = None,
        }
    }
}

/// Starts the freeing thread; `None` (files then freed at once) if no thread can be started.
fn start_thread<T: StoredFile>() -> Option<SyncSender<Arc<T>>> {
    let (sender, files) = mpsc::sync_channel::<Arc<T>>(MAX_WAITING);
    let started = std::thread::Builder::new()
        .name("txmq-free-files".into())
        .spawn(move || {
            for file in files {
                if let Err(e) = T::free_gradually(&file) {
                    tracing::warn!("freeing a deleted file gradually failed: {e}");
                }
                drop(file);
                std::thread::sleep(PAUSE);
            }
        });
    match started {
        Ok(_) => Some(sender),
        Err(e) => {
            tracing::warn!("could not start the thread that frees deleted files: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::{Duration, Instant};

    #[test]
    fn files_given_to_the_reaper_are_closed_one_after_the_other() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reaper = FileReaper::default();
        let mut watched = Vec::new();
        for i in 0..3 {
            let path = dir.path().join(format!("f{i}"));
            let file = Arc::new(File::create(&path).expect("create"));
            std::fs::remove_file(&path).expect("unlink");
            watched.push(Arc::downgrade(&file));
            reaper.free(file);
        }
        // Each handle is closed by the reaper's thread: none is left open.
        let deadline = Instant::now() + Duration::from_secs(10);
        while watched.iter().any(|w| w.strong_count() > 0) {
            assert!(
                Instant::now() < deadline,
                "the reaper did not close the files"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
