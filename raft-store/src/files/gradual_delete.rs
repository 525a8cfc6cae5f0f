//! Deleting big files a few MiB at a time.
//!
//! Why: ext4 mounted with `-o discard` (the usual mount of a cloud VM, and of the machine the
//! performance figures come from) discards the blocks it frees — at the journal commit that
//! frees them, or at once where the file system has no journal, as on that machine — and the
//! disk works through the discards while every `fsync` of the moment waits behind them.
//! Deleting a Raft log purge's 256 MiB of segments at once, on every node at about the same
//! moment, made the Raft log's `fdatasync`s take 16–20 ms instead of 1–3 for the ~0.5 s the
//! deletion took, and thousands of client writes waited. Cut down by [`CHUNK_BYTES`] with a
//! pause after each cut, a few MiB are freed at a time (the approach of RocksDB's delete
//! scheduler, which truncates big files in chunks for the same reason).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bytes freed per cut.
pub const CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// The pause after each cut: at most ~80 MiB/s freed.
pub const PAUSE: Duration = Duration::from_millis(50);

/// Removes `path` from its directory, then frees its blocks [`CHUNK_BYTES`] at a time through
/// `file`, an open handle to it (see [`free_gradually`]). Blocking and slow by design: call it
/// on a background thread.
pub fn delete_gradually(path: &Path, file: Arc<File>) -> io::Result<()> {
    std::fs::remove_file(path)?;
    free_gradually(&file)
}

/// Cuts a file whose name is already gone down to its last [`CHUNK_BYTES`], a chunk at a time
/// through `file`, pausing after each cut; the rest is freed when the last handle closes.
///
/// When another handle to the same `Arc` is still out there (a reader in the middle of a read),
/// the blocks are left for the kernel to free when the last handle closes: a reader must never
/// see its file shrink under it.
pub fn free_gradually(file: &Arc<File>) -> io::Result<()> {
    let mut len = file.metadata()?.len();
    while len > CHUNK_BYTES {
        if Arc::strong_count(file) > 1 {
            return Ok(());
        }
        len -= CHUNK_BYTES;
        file.set_len(len)?;
        std::thread::sleep(PAUSE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(dir: &Path, bytes: u64) -> (std::path::PathBuf, Arc<File>) {
        let path = dir.join("segment");
        let mut file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("create");
        file.write_all(&vec![7u8; bytes as usize]).expect("write");
        (path, Arc::new(file))
    }

    #[test]
    fn the_file_is_gone_and_its_blocks_freed_down_to_the_last_chunk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, file) = file_of(dir.path(), 2 * CHUNK_BYTES + 1000);
        // A second file handle (not a clone of the `Arc`, so not a reader) to look at the result.
        let view = file.try_clone().expect("clone handle");
        delete_gradually(&path, file).expect("delete");
        assert!(!path.exists());
        assert!(view.metadata().expect("metadata").len() <= CHUNK_BYTES);
    }

    #[test]
    fn a_file_a_reader_still_holds_is_unlinked_but_not_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let size = 2 * CHUNK_BYTES + 1000;
        let (path, file) = file_of(dir.path(), size);
        let reader = Arc::clone(&file);
        delete_gradually(&path, file).expect("delete");
        assert!(!path.exists());
        assert_eq!(reader.metadata().expect("metadata").len(), size);
    }
}
