//! The files on one simulated disk, byte for byte: what each file holds as the running node
//! sees it, what of that is durable, and the writes in between.
//!
//! The model a crash is judged by: a write is in the page cache until an fsync of its file
//! (its data) or of its directory (its name) completes. A power loss keeps, per file, the
//! durable bytes plus a random prefix of the unsynced writes, the last kept one cut at a random
//! byte (a torn write: what reached the disk of a write that was in flight), and a random
//! prefix of the unsynced creations and removals of names. A name is durable once its
//! directory is synced; a directory is a name too, so a file in a directory whose own name was
//! lost goes with it. A process exit loses nothing: the kernel still holds every write.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::rng::SimRng;

/// One write to a file, in the order it was made.
#[derive(Debug, Clone)]
enum FileWrite {
    At { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl FileWrite {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            FileWrite::At { offset, bytes } => {
                let start = *offset as usize;
                let end = start + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(bytes);
            }
            FileWrite::SetLen(len) => data.resize(*len as usize, 0),
        }
    }

    /// The part of this write that reached the disk when the power went in the middle of it.
    fn torn(&self, rng: &mut SimRng) -> Option<FileWrite> {
        match self {
            FileWrite::At { offset, bytes } => {
                let kept = rng.below(bytes.len() as u64 + 1) as usize;
                Some(FileWrite::At {
                    offset: *offset,
                    bytes: bytes[..kept].to_vec(),
                })
            }
            // A size change is one metadata update: it happened or it did not.
            FileWrite::SetLen(_) => rng.chance(0.5).then(|| self.clone()),
        }
    }
}

/// One file's contents (an inode: it outlives its name while a handle holds it).
#[derive(Debug, Clone, Default)]
struct FileData {
    durable: Vec<u8>,
    /// `durable` with `unsynced` applied: what reads see.
    view: Vec<u8>,
    unsynced: Vec<FileWrite>,
}

/// A change to a directory's names.
#[derive(Debug, Clone)]
enum NameChange {
    Link(PathBuf, u64),
    Unlink(PathBuf),
}

impl NameChange {
    fn path(&self) -> &Path {
        match self {
            NameChange::Link(path, _) | NameChange::Unlink(path) => path,
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            NameChange::Link(path, inode) => {
                names.insert(path.clone(), *inode);
            }
            NameChange::Unlink(path) => {
                names.remove(path);
            }
        }
    }
}

/// What a directory's name stands for (directories have no contents of their own).
const DIRECTORY: u64 = u64::MAX;

/// Every file of one disk: names (of files and directories) by path. The node's top-level
/// directories (`/data/raft-log`, `/data/queues`, ...) exist from the start.
#[derive(Debug, Default)]
pub struct FileTable {
    files: BTreeMap<u64, FileData>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// `durable_names` with `unsynced_names` applied.
    names: BTreeMap<PathBuf, u64>,
    unsynced_names: Vec<NameChange>,
    next_inode: u64,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn gone() -> io::Error {
    io::Error::other("the file's contents are gone")
}

impl FileTable {
    /// The inode named `path`.
    pub fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    /// Creates an empty file named `path` (replacing what the name held); its directory must
    /// exist.
    pub fn create(&mut self, path: &Path) -> io::Result<u64> {
        if let Some(dir) = path.parent().filter(|dir| nested(dir))
            && self.names.get(dir) != Some(&DIRECTORY)
        {
            return Err(not_found(dir));
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.files.insert(inode, FileData::default());
        self.change_name(NameChange::Link(path.to_path_buf(), inode));
        Ok(inode)
    }

    pub fn unlink(&mut self, path: &Path) -> io::Result<()> {
        self.lookup(path)?;
        self.change_name(NameChange::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn change_name(&mut self, change: NameChange) {
        change.apply(&mut self.names);
        self.unsynced_names.push(change);
    }

    /// The names of the files (`directories` false) or directories directly in `dir`.
    pub fn list(&self, dir: &Path, directories: bool) -> Vec<String> {
        self.names
            .iter()
            .filter(|(path, inode)| {
                path.parent() == Some(dir) && (**inode == DIRECTORY) == directories
            })
            .filter_map(|(path, _)| Some(path.file_name()?.to_str()?.to_string()))
            .collect()
    }

    /// Creates `dir` and the directories above it that are missing (below the top level).
    pub fn create_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        if !nested(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dir_all(parent)?;
        }
        match self.names.get(dir) {
            Some(&DIRECTORY) => Ok(()),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: a file, not a directory", dir.display()),
            )),
            None => {
                self.change_name(NameChange::Link(dir.to_path_buf(), DIRECTORY));
                Ok(())
            }
        }
    }

    /// Removes `dir` and every name under it.
    pub fn remove_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        let under: Vec<PathBuf> = self
            .names
            .keys()
            .filter(|path| path.starts_with(dir) && path.as_path() != dir)
            .rev()
            .cloned()
            .collect();
        for path in under {
            self.change_name(NameChange::Unlink(path));
        }
        if self.names.contains_key(dir) {
            self.change_name(NameChange::Unlink(dir.to_path_buf()));
        }
        Ok(())
    }

    /// Makes the name changes made so far in `dir` durable (those of other directories wait
    /// for their own sync).
    pub fn sync_names(&mut self, dir: &Path) {
        let (synced, waiting): (Vec<NameChange>, Vec<NameChange>) =
            std::mem::take(&mut self.unsynced_names)
                .into_iter()
                .partition(|change| change.path().parent() == Some(dir));
        for change in synced {
            change.apply(&mut self.durable_names);
        }
        self.unsynced_names = waiting;
    }

    pub fn contents(&self, inode: u64) -> io::Result<&[u8]> {
        Ok(&self.files.get(&inode).ok_or_else(gone)?.view)
    }

    pub fn write(&mut self, inode: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.record(
            inode,
            FileWrite::At {
                offset,
                bytes: bytes.to_vec(),
            },
        )
    }

    pub fn set_len(&mut self, inode: u64, len: u64) -> io::Result<()> {
        self.record(inode, FileWrite::SetLen(len))
    }

    fn record(&mut self, inode: u64, write: FileWrite) -> io::Result<()> {
        let file = self.files.get_mut(&inode).ok_or_else(gone)?;
        write.apply(&mut file.view);
        file.unsynced.push(write);
        Ok(())
    }

    /// Makes every write to `inode` so far durable.
    pub fn sync(&mut self, inode: u64) -> io::Result<()> {
        let file = self.files.get_mut(&inode).ok_or_else(gone)?;
        for write in file.unsynced.drain(..) {
            write.apply(&mut file.durable);
        }
        Ok(())
    }

    /// A power loss (see the module comment). Returns how many writes and name changes were
    /// lost.
    pub fn power_loss(&mut self, rng: &mut SimRng) -> usize {
        let mut lost = 0;
        for file in self.files.values_mut() {
            let pending = std::mem::take(&mut file.unsynced);
            let keep = rng.below(pending.len() as u64 + 1) as usize;
            lost += pending.len() - keep;
            for (i, write) in pending.iter().enumerate().take(keep) {
                let write = if i + 1 == keep && rng.chance(0.5) {
                    write.torn(rng)
                } else {
                    Some(write.clone())
                };
                if let Some(write) = write {
                    write.apply(&mut file.durable);
                }
            }
            file.view = file.durable.clone();
        }
        let pending = std::mem::take(&mut self.unsynced_names);
        let keep = rng.below(pending.len() as u64 + 1) as usize;
        lost += pending.len() - keep;
        for change in pending.iter().take(keep) {
            change.apply(&mut self.durable_names);
        }
        self.drop_orphans();
        self.names = self.durable_names.clone();
        self.collect_garbage();
        lost
    }

    /// Removes the durable names whose directory's name was lost (and what was under them).
    fn drop_orphans(&mut self) {
        let names = &self.durable_names;
        let orphans: Vec<PathBuf> = names
            .keys()
            .filter(|path| {
                path.ancestors()
                    .skip(1)
                    .filter(|dir| nested(dir))
                    .any(|dir| names.get(dir) != Some(&DIRECTORY))
            })
            .cloned()
            .collect();
        for path in orphans {
            self.durable_names.remove(&path);
        }
    }

    /// Drops the contents no name refers to any more (called when no handle can be open: the
    /// node's incarnation has ended). A name whose removal is not durable yet still counts.
    pub fn collect_garbage(&mut self) {
        let named: std::collections::BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.files.retain(|inode, _| named.contains(inode));
    }
}

/// Whether `dir` lies below the node's top-level directories (`/data/raft-log`, which exist
/// from the start, as the data directory's layout does on a formatted volume).
fn nested(dir: &Path) -> bool {
    let levels = dir
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count();
    levels > 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_bytes_survive_a_power_loss_and_a_torn_write_keeps_a_prefix() {
        let mut rng = SimRng::new(11);
        for _ in 0..50 {
            let mut table = FileTable::default();
            let path = Path::new("/log/a");
            let inode = table.create(path).expect("create");
            table.sync_names(Path::new("/log"));
            table.write(inode, 0, b"durable").expect("write");
            table.sync(inode).expect("sync");
            table.write(inode, 7, b"-pending").expect("write");
            table.power_loss(&mut rng);
            let inode = table.lookup(path).expect("a synced name survives");
            let bytes = table.contents(inode).expect("contents").to_vec();
            assert!(bytes.starts_with(b"durable"));
            assert!(b"durable-pending".starts_with(&bytes));
        }
    }

    #[test]
    fn an_unsynced_name_may_vanish_and_a_process_exit_keeps_everything() {
        let mut rng = SimRng::new(5);
        let mut vanished = false;
        for _ in 0..50 {
            let mut table = FileTable::default();
            let path = Path::new("/log/b");
            let inode = table.create(path).expect("create");
            table.write(inode, 0, b"x").expect("write");
            table.collect_garbage();
            assert_eq!(table.contents(inode).expect("kept"), b"x");
            table.power_loss(&mut rng);
            vanished |= table.lookup(path).is_err();
        }
        assert!(vanished, "a name never synced was always kept");
    }
}
