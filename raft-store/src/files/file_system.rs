//! The file operations the Raft log's segment files make, as a trait: production runs them on
//! the operating system ([`OsFs`]); the deterministic simulator (`sim/`) runs the same log code
//! on a simulated disk that loses unsynced writes and tears the last one on a power loss.
//!
//! The log is generic over it and monomorphised: the operating system's version is the plain
//! `std::fs` call it stood for, with nothing between.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::files::{gradual_delete, numbered_files};

/// One open file: positioned reads and writes, and the two kinds of sync.
pub trait StoredFile: Send + Sync + 'static {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and its size) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the data and all metadata durable: `fsync`.
    fn sync_all(&self) -> io::Result<()>;
    /// The file's size in bytes.
    fn file_len(&self) -> io::Result<u64>;
}

/// The directory operations, and how a file is opened, created, read whole and deleted.
pub trait FileSystem: Clone + Send + Sync + 'static {
    type File: StoredFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// First numbers of the files in `dir` named `<20 digits><suffix>`, smallest first (see
    /// `numbered_files::firsts`).
    fn list(&self, dir: &Path, suffix: &str) -> io::Result<Vec<u64>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates (or empties) a file; its name is durable only after [`FileSystem::sync_dir`].
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created, removed) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Deletes a file the log no longer needs; `file` is the log's open handle to it (slow by
    /// design on the operating system: see [`gradual_delete`]).
    fn delete(&self, path: &Path, file: Arc<Self::File>) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl StoredFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn file_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl FileSystem for OsFs {
    type File = File;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path, suffix: &str) -> io::Result<Vec<u64>> {
        numbered_files::list(dir, suffix)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        numbered_files::open(path)
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        numbered_files::create(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        numbered_files::sync_dir(dir)
    }

    fn delete(&self, path: &Path, file: Arc<File>) -> io::Result<()> {
        gradual_delete::delete_gradually(path, file)
    }
}
