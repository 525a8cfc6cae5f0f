//! Files named by the number of their first record (`<20 digits><suffix>`), as the Raft log's
//! segments and the queue files are, and the few file-system steps both need to be durable.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The path of the file in `dir` whose first record is `first`.
pub fn path(dir: &Path, first: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{first:020}{suffix}"))
}

/// First numbers of the files in `dir` ending in `suffix`, smallest first (other names are
/// ignored).
pub fn list(dir: &Path, suffix: &str) -> io::Result<Vec<u64>> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir)? {
        if let Ok(name) = item?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(firsts(names, suffix))
}

/// The first numbers among `names` that end in `suffix`, smallest first.
pub fn firsts(names: impl IntoIterator<Item = String>, suffix: &str) -> Vec<u64> {
    let mut firsts: Vec<u64> = names
        .into_iter()
        .filter_map(|name| name.strip_suffix(suffix)?.parse().ok())
        .collect();
    firsts.sort_unstable();
    firsts
}

/// Opens an existing file for reading and writing.
pub fn open(path: &Path) -> io::Result<File> {
    File::options().read(true).write(true).open(path)
}

/// Creates (or empties) a file for reading and writing. Its name is durable only after
/// [`sync_dir`] of its directory.
pub fn create(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Makes the directory's entries (files created, removed) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
