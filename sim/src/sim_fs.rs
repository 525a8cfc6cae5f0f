//! The file-system seam of the real stores (`txmq_raft_store::files::file_system`: the Raft
//! log's segments, the queue files, the transaction journal) on a simulated disk: one
//! incarnation's handle to the disk's [`crate::file_table::FileTable`].
//!
//! Every call checks the incarnation: once the node has crashed, its handles fail (a dead
//! process writes nothing). Writes and size changes may fail with an injected EIO or ENOSPC.

use std::io;
use std::path::Path;
use std::sync::Arc;

use txmq_raft_store::files::file_system::{FileSystem, StoredFile};
use txmq_raft_store::files::numbered_files;

use crate::disk::SimDisk;

/// One incarnation's file system.
#[derive(Clone)]
pub struct SimFs {
    disk: Arc<SimDisk>,
    epoch: u64,
}

/// An open file of one incarnation.
pub struct SimFile {
    fs: SimFs,
    inode: u64,
}

impl SimFs {
    pub fn new(disk: Arc<SimDisk>, epoch: u64) -> Self {
        SimFs { disk, epoch }
    }

    fn file(&self, inode: u64) -> SimFile {
        SimFile {
            fs: self.clone(),
            inode,
        }
    }
}

impl SimFile {
    fn read<T>(&self, f: impl FnOnce(&[u8]) -> io::Result<T>) -> io::Result<T> {
        let inode = self.inode;
        self.fs
            .disk
            .files(self.fs.epoch, false, |t| f(t.contents(inode)?))
    }
}

impl StoredFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let inode = self.inode;
        self.fs
            .disk
            .files(self.fs.epoch, true, |t| t.write(inode, offset, buf))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read(|bytes| {
            let start = offset as usize;
            let part = bytes
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(part);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let inode = self.inode;
        self.fs
            .disk
            .files(self.fs.epoch, true, |t| t.set_len(inode, len))
    }

    fn sync_data(&self) -> io::Result<()> {
        let inode = self.inode;
        self.fs.disk.files(self.fs.epoch, false, |t| t.sync(inode))
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn file_len(&self) -> io::Result<u64> {
        self.read(|bytes| Ok(bytes.len() as u64))
    }
}

impl FileSystem for SimFs {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.disk.files(self.epoch, true, |t| t.create_dir_all(dir))
    }

    fn list(&self, dir: &Path, suffix: &str) -> io::Result<Vec<u64>> {
        let names = self
            .disk
            .files(self.epoch, false, |t| Ok(t.list(dir, false)))?;
        Ok(numbered_files::firsts(names, suffix))
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.disk
            .files(self.epoch, false, |t| Ok(t.list(dir, true)))
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.disk
            .files(self.epoch, false, |t| t.remove_dir_all(dir))
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let inode = self.disk.files(self.epoch, false, |t| t.lookup(path))?;
        Ok(self.file(inode))
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let inode = self.disk.files(self.epoch, true, |t| t.create(path))?;
        Ok(self.file(inode))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.disk.files(self.epoch, false, |t| {
            let inode = t.lookup(path)?;
            Ok(t.contents(inode)?.to_vec())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.disk.files(self.epoch, false, |t| t.unlink(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.disk.files(self.epoch, false, |t| {
            t.sync_names(dir);
            Ok(())
        })
    }

    fn delete(&self, path: &Path, _file: Arc<SimFile>) -> io::Result<()> {
        self.remove_file(path)
    }
}
