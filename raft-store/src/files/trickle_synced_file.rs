//! A file written in the background and made durable as it goes, a little at a time.
//!
//! Why: one `fsync` of a freshly written 15 MB snapshot manifest puts all 15 MB in front of the
//! Raft log's own `fdatasync` running at the same moment (on ext4 with a journal, `data=ordered`,
//! the commit both share waits for that data; without a journal the disk's cache flush does), so
//! the log's sync waited for all 15 MB too. Every node builds its snapshot at about the same log
//! index, so every client write of the cluster waited: under a steady transactional load at half
//! the maximum rate, a snapshot round put 1,300–8,300 operations above 25 ms (up to ~100 ms).
//! Syncing every [`TrickleSyncedFile::SYNC_EVERY`] bytes keeps what the log's sync can find in
//! front of it small; the final `sync_all` then has almost nothing left to write.

use std::fs::File;
use std::io::{self, Write};

/// Wraps a [`File`] being written; syncs its data after every [`Self::SYNC_EVERY`] bytes.
pub struct TrickleSyncedFile {
    file: File,
    unsynced: u64,
    /// Syncs so far (before [`Self::finish`]).
    syncs: u64,
}

impl TrickleSyncedFile {
    /// Bytes written between two syncs: a 15 MB manifest is made durable in ~30 small commits
    /// instead of one that carries all of it.
    pub const SYNC_EVERY: u64 = 512 * 1024;

    pub fn new(file: File) -> Self {
        Self {
            file,
            unsynced: 0,
            syncs: 0,
        }
    }

    /// Syncs what is left (data and metadata) and hands the file back.
    pub fn finish(mut self) -> io::Result<File> {
        self.file.flush()?;
        self.file.sync_all()?;
        Ok(self.file)
    }
}

impl Write for TrickleSyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.unsynced += written as u64;
        if self.unsynced >= Self::SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
            self.syncs += 1;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn it_syncs_as_it_goes_and_everything_written_is_in_the_file_after_finish() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let mut out = TrickleSyncedFile::new(File::create(&path).expect("create"));
        // 64 KiB chunks: eight make one sync; three syncs' worth and one more chunk are written.
        let chunk: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
        let chunks = (3 * TrickleSyncedFile::SYNC_EVERY) as usize / chunk.len() + 1;
        for _ in 0..chunks {
            out.write_all(&chunk).expect("write");
        }
        assert_eq!(out.syncs, 3, "syncs for {} bytes", chunks * chunk.len());
        out.finish().expect("finish");
        let mut back = Vec::new();
        File::open(&path)
            .expect("open")
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back.len(), chunks * chunk.len());
        assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    }
}
