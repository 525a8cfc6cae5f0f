//! The file operations the Raft log's segment files, the queue files and the transaction
//! journal make, as a trait: production runs them on the operating system ([`OsFs`]); the
//! deterministic simulator (`sim/`) runs the same code on a simulated disk that loses unsynced
//! writes and tears the last one on a power loss.
//!
//! The stores are generic over it and monomorphised: the operating system's version is the
//! plain `std::fs` call it stood for, with nothing between.

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
    /// Whether a deleted file's blocks are worth freeing gradually on a thread of their own
    /// (see [`crate::files::file_reaper`]); if not, dropping the handle frees them.
    const FREED_GRADUALLY: bool = false;
    /// Frees the blocks of this deleted file a chunk at a time (see [`gradual_delete`]).
    fn free_gradually(_file: &Arc<Self>) -> io::Result<()>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// The directory operations, and how a file is opened, created, read whole and deleted.
pub trait FileSystem: Clone + Send + Sync + 'static {
    type File: StoredFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// First numbers of the files in `dir` named `<20 digits><suffix>`, smallest first (see
    /// `numbered_files::firsts`).
    fn list(&self, dir: &Path, suffix: &str) -> io::Result<Vec<u64>>;
    /// Names of the directories directly in `dir`.
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a directory and everything in it (durable after [`FileSystem::sync_dir`] of its
    /// parent).
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
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

    const FREED_GRADUALLY: bool = true;

    fn free_gradually(file: &Arc<Self>) -> io::Result<()> {
        gradual_delete::free_gradually(file)
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

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let item = item?;
            if item.file_type()?.is_dir()
                && let Ok(name) = item.file_name().into_string()
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
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
