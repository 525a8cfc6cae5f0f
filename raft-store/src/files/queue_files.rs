//! Message bodies in per-queue append-only files.
//!
//! Why not sled: storing each apply's messages as a sled row made sled rewrite them several times
//! (node copies, consolidation, its own log cleaning): a node wrote ~7× the payload to disk, used
//! ~3.5× the payload on disk and ~250 MiB of memory for its page cache. Here a message is
//! written once, read with `pread` (the OS page cache serves recent ones, outside the process),
//! and retention deletes whole files.
//!
//! Layout: `<dir>/<topic id>-<queue>/<first offset, 20 digits>.msgs`, each file a run of
//! [`crate::files::frame`]s holding the MessagePack [`txmq_state::StoredMessage`]s of consecutive
//! offsets from the one in its name. The newest file of a queue is the one appended to.
//!
//! Durability: appends are not synced here. The state machine syncs ([`QueueFiles::sync`]) before
//! it writes a checkpoint of its metadata to sled, so a durable checkpoint never names an offset
//! whose message is not durable; after a crash, [`QueueFiles::reconcile`] cuts every queue back
//! to the offsets the checkpoint names and the Raft log re-applies the rest.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::files::file_reaper::FileReaper;
use crate::files::file_system::{FileSystem, OsFs, StoredFile};
use crate::files::{frame, numbered_files};

/// A queue starts a new file once its newest one reaches this size.
pub const QUEUE_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// One position is indexed per this many offsets (and each file's first).
const INDEX_EVERY: u64 = 32;
/// Bytes of the first `pread` of a scan: a receive of a few dozen small messages needs no more.
const FIRST_READ: usize = 16 * 1024;
/// Each further `pread` of the same scan reads twice as much, up to this.
const MAX_READ: usize = 1024 * 1024;
const SUFFIX: &str = ".msgs";

type QueueId = (u64, u32);
/// `(offset, byte position)` pairs of a file, by offset.
type PositionIndex = Vec<(u64, u64)>;

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation leaves the maps consistent before it can fail; a panic is a bug and
    // openraft stops the node on the storage error around it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One file of a queue.
struct QueueFile<T> {
    file: Arc<T>,
    len: u64,
    /// `(offset, byte position)` of the file's first message and every `INDEX_EVERY`-th offset;
    /// `None` until first needed for a file found on disk at startup.
    index: Option<PositionIndex>,
}

/// The files of one queue, by first offset. Invariant: the files hold the consecutive offsets
/// from the first file's name up to `next`; only the last file is appended to.
struct QueueLog<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    files: BTreeMap<u64, QueueFile<F::File>>,
    next: u64,
}

/// All queues' files of a node, on the file system `F` (the operating system's, or the
/// simulator's).
pub struct QueueFiles<F: FileSystem = OsFs> {
    fs: F,
    dir: PathBuf,
    queues: RwLock<HashMap<QueueId, Arc<Mutex<QueueLog<F>>>>>,
    /// Files and directories changed since the last [`QueueFiles::sync`].
    unsynced: Mutex<Unsynced<F::File>>,
    file_bytes: u64,
    /// Frees the files retention and compaction delete, one at a time.
    reaper: FileReaper<F::File>,
}

struct Unsynced<T> {
    files: Vec<Arc<T>>,
    dirs: Vec<PathBuf>,
}

impl<T> Default for Unsynced<T> {
    fn default() -> Self {
        Unsynced {
            files: Vec::new(),
            dirs: Vec::new(),
        }
    }
}

/// What a read located while holding the queue's lock: read without it.
struct ReadPlan<T> {
    file: Arc<T>,
    first_offset: u64,
    position: u64,
    len: u64,
}

impl QueueFiles {
    /// Opens the queue files under `dir` (created if missing). Call [`Self::reconcile`] before
    /// use after a restart.
    pub fn open(dir: &Path, file_bytes: u64) -> io::Result<Self> {
        Self::open_in(OsFs, dir, file_bytes)
    }
}

impl<F: FileSystem> QueueFiles<F> {
    /// [`QueueFiles::open`] on the file system `fs`.
    pub fn open_in(fs: F, dir: &Path, file_bytes: u64) -> io::Result<Self> {
        fs.create_dir_all(dir)?;
        let mut queues = HashMap::new();
        for name in fs.list_dirs(dir)? {
            let Some(id) = parse_queue_dir(&name) else {
                continue;
            };
            let log = QueueLog::open(fs.clone(), dir.join(&name))?;
            queues.insert(id, Arc::new(Mutex::new(log)));
        }
        Ok(Self {
            fs,
            dir: dir.to_path_buf(),
            queues: RwLock::new(queues),
            unsynced: Mutex::default(),
            file_bytes,
            reaper: FileReaper::default(),
        })
    }

    fn queue(&self, id: QueueId) -> Option<Arc<Mutex<QueueLog<F>>>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn queue_or_create(&self, id: QueueId) -> io::Result<Arc<Mutex<QueueLog<F>>>> {
        if let Some(q) = self.queue(id) {
            return Ok(q);
        }
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(&id) {
            return Ok(q.clone());
        }
        let dir = self.dir.join(format!("{}-{}", id.0, id.1));
        self.fs.create_dir_all(&dir)?;
        lock(&self.unsynced).dirs.push(self.dir.clone());
        let q = Arc::new(Mutex::new(QueueLog {
            fs: self.fs.clone(),
            dir,
            files: BTreeMap::new(),
            next: 0,
        }));
        queues.insert(id, q.clone());
        Ok(q)
    }

    /// Appends `messages` (encoded) at offsets `first..` of a queue. `first` must be the queue's
    /// next offset (any offset for a queue with no files yet).
    pub fn append(
        &self,
        topic: u64,
        queue: u32,
        first: u64,
        messages: &[Vec<u8>],
    ) -> io::Result<()> {
        let q = self.queue_or_create((topic, queue))?;
        let mut q = lock(&q);
        if !q.files.is_empty() && q.next != first {
            return Err(corrupt(format!(
                "queue {topic}-{queue}: append at offset {first} but the files end at {}",
                q.next
            )));
        }
        let needs_new_file = q
            .files
            .last_key_value()
            .is_none_or(|(_, s)| s.len >= self.file_bytes);
        if needs_new_file {
            let file = self
                .fs
                .create(&numbered_files::path(&q.dir, first, SUFFIX))?;
            q.files.insert(
                first,
                QueueFile {
                    file: Arc::new(file),
                    len: 0,
                    index: Some(Vec::new()),
                },
            );
            lock(&self.unsynced).dirs.push(q.dir.clone());
        }
        let Some((&file_first, file)) = q.files.iter_mut().next_back() else {
            return Err(io::Error::other("queue has no file after creating one"));
        };
        let mut buf = Vec::with_capacity(messages.iter().map(|m| m.len() + frame::HEADER).sum());
        let mut index_entries = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let offset = first + i as u64;
            if offset == file_first || offset.is_multiple_of(INDEX_EVERY) {
                index_entries.push((offset, file.len + buf.len() as u64));
            }
            frame::write(&mut buf, message)?;
        }
        file.file.write_all_at(&buf, file.len)?;
        file.len += buf.len() as u64;
        if let Some(index) = file.index.as_mut() {
            index.extend(index_entries);
        }
        let file = file.file.clone();
        q.next = first + messages.len() as u64;
        drop(q);
        let mut unsynced = lock(&self.unsynced);
        if !unsynced.files.iter().any(|f| Arc::ptr_eq(f, &file)) {
            unsynced.files.push(file);
        }
        Ok(())
    }

    /// Calls `f(offset, encoded message)` for the stored messages of a queue with offsets in
    /// `[from, end)`, in order, until it returns false. Offsets whose file retention deleted are
    /// skipped.
    pub fn read(
        &self,
        topic: u64,
        queue: u32,
        from: u64,
        end: u64,
        mut f: impl FnMut(u64, &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        let Some(q) = self.queue((topic, queue)) else {
            return Ok(());
        };
        let plans = lock(&q).plan_read(from, end)?;
        for plan in plans {
            let mut offset = plan.first_offset;
            let mut stop = false;
            scan(&*plan.file, plan.position, plan.len, |_, payload| {
                let this = offset;
                offset += 1;
                if this < from {
                    return Ok(true);
                }
                if this >= end || !f(this, payload)? {
                    stop = true;
                    return Ok(false);
                }
                Ok(true)
            })?;
            if stop {
                break;
            }
        }
        Ok(())
    }

    /// Deletes a queue's files that hold only offsets below `below` (never its newest file).
    pub fn trim_below(&self, topic: u64, queue: u32, below: u64) -> io::Result<()> {
        if let Some(q) = self.queue((topic, queue)) {
            lock(&q).delete_below(below, &self.reaper)?;
        }
        Ok(())
    }

    /// Makes every append so far durable: syncs the files written and the directories that
    /// gained files since the last call.
    pub fn sync(&self) -> io::Result<()> {
        let pending = std::mem::take(&mut *lock(&self.unsynced));
        let mut dirs = pending.dirs;
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            self.fs.sync_dir(&dir)?;
        }
        for file in pending.files {
            file.sync_data()?;
        }
        Ok(())
    }

    /// After a restart: cuts every queue back to the offsets `[low, next)` the durable state
    /// names (`expected`, by queue), finishes retention deletes, and removes the files of
    /// queues the state does not know. Fails if a queue's files end before `next`: that data
    /// directory is damaged (messages missing at the start are allowed, see `QueueLog::cut_to`).
    pub fn reconcile(&self, expected: &HashMap<QueueId, (u64, u64)>) -> io::Result<()> {
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        let unknown: Vec<QueueId> = queues
            .keys()
            .filter(|id| !expected.contains_key(id))
            .copied()
            .collect();
        for id in unknown {
            if let Some(q) = queues.remove(&id) {
                self.fs.remove_dir_all(&lock(&q).dir)?;
            }
        }
        for (&(topic, queue), &(low, next)) in expected {
            match queues.get(&(topic, queue)) {
                Some(q) => lock(q).cut_to(low, next, &self.reaper)?,
                // No files: every message was removed before this node got them (see
                // `QueueLog::cut_to`), or none was ever stored.
                None if low < next => tracing::warn!(
                    topic,
                    queue,
                    low,
                    next,
                    "queue holds no messages; expecting retention to move past them"
                ),
                None => {}
            }
        }
        self.fs.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Deletes a queue with all its files (its topic was deleted).
    pub fn remove_queue(&self, topic: u64, queue: u32) -> io::Result<()> {
        let removed = {
            let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
            queues.remove(&(topic, queue))
        };
        if let Some(q) = removed {
            self.fs.remove_dir_all(&lock(&q).dir)?;
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes every queue's files (before a snapshot is installed).
    pub fn clear(&self) -> io::Result<()> {
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        for (_, q) in queues.drain() {
            self.fs.remove_dir_all(&lock(&q).dir)?;
        }
        *lock(&self.unsynced) = Unsynced::default();
        self.fs.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Bytes all queue files take.
    pub fn disk_bytes(&self) -> u64 {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        queues
            .values()
            .map(|q| lock(q).files.values().map(|s| s.len).sum::<u64>())
            .sum()
    }
}

impl<F: FileSystem> QueueLog<F> {
    /// Lists a queue directory's files; their contents are read when first needed.
    fn open(fs: F, dir: PathBuf) -> io::Result<Self> {
        let mut files = BTreeMap::new();
        for first in fs.list(&dir, SUFFIX)? {
            let file = fs.open(&numbered_files::path(&dir, first, SUFFIX))?;
            let len = file.file_len()?;
            files.insert(
                first,
                QueueFile {
                    file: Arc::new(file),
                    len,
                    index: None,
                },
            );
        }
        Ok(Self {
            fs,
            dir,
            files,
            next: 0,
        })
    }

    /// Builds a file's position index by reading it (files found at startup).
    fn ensure_index(&mut self, first: u64) -> io::Result<()> {
        let Some(file) = self.files.get_mut(&first) else {
            return Ok(());
        };
        if file.index.is_some() {
            return Ok(());
        }
        let (index, _, end) = index_file(&*file.file, file.len, first, u64::MAX)?;
        if end != file.len {
            return Err(corrupt(format!(
                "{}: damaged frame at byte {end}",
                numbered_files::path(&self.dir, first, SUFFIX).display()
            )));
        }
        file.index = Some(index);
        Ok(())
    }

    /// The files (and where in the first) to read for offsets `[from, end)`.
    fn plan_read(&mut self, from: u64, end: u64) -> io::Result<Vec<ReadPlan<F::File>>> {
        if from >= end || from >= self.next {
            return Ok(Vec::new());
        }
        let start_file = self
            .files
            .range(..=from)
            .next_back()
            .map(|(first, _)| *first)
            .or_else(|| self.files.keys().next().copied());
        let Some(start_file) = start_file else {
            return Ok(Vec::new());
        };
        self.ensure_index(start_file)?;
        let mut plans = Vec::new();
        for (&first, file) in self.files.range(start_file..end) {
            let (offset, position) = match (&file.index, first == start_file) {
                (Some(index), true) => {
                    let i = index.partition_point(|(o, _)| *o <= from).saturating_sub(1);
                    index.get(i).copied().unwrap_or((first, 0))
                }
                _ => (first, 0),
            };
            plans.push(ReadPlan {
                file: file.file.clone(),
                first_offset: offset,
                position,
                len: file.len,
            });
        }
        Ok(plans)
    }

    /// Removes the names of the files holding only offsets below `below` now, and leaves
    /// freeing their blocks to `reaper` (see [`crate::files::file_reaper`]).
    fn delete_below(&mut self, below: u64, reaper: &FileReaper<F::File>) -> io::Result<()> {
        let firsts: Vec<u64> = self.files.keys().copied().collect();
        for pair in firsts.windows(2) {
            if pair[1] <= below {
                self.fs
                    .remove_file(&numbered_files::path(&self.dir, pair[0], SUFFIX))?;
                if let Some(file) = self.files.remove(&pair[0]) {
                    reaper.free(file.file);
                }
            }
        }
        Ok(())
    }

    /// See [`QueueFiles::reconcile`].
    fn cut_to(&mut self, low: u64, next: u64, reaper: &FileReaper<F::File>) -> io::Result<()> {
        // Files starting at or after `next` hold only offsets the state has not applied yet.
        let beyond: Vec<u64> = self.files.range(next..).map(|(f, _)| *f).collect();
        for first in beyond {
            self.files.remove(&first);
            self.fs
                .remove_file(&numbered_files::path(&self.dir, first, SUFFIX))?;
        }
        let first_held = self.files.keys().next().copied();
        let end = match self.files.iter_mut().next_back() {
            Some((&first, file)) => Some(cut_queue_file(file, first, next)?),
            None => None,
        };
        // The newest messages are synced before any checkpoint names them, so missing ones
        // at the end are damage. Missing ones at the start are not: a follower that installed
        // a snapshot gets only the messages the leader still had when it sent it (retention may
        // have removed older ones since); the log after the snapshot moves the low offset past
        // them. Until then readers find nothing there, as for trimmed offsets.
        if let Some(end) = end.filter(|end| *end < next) {
            return Err(corrupt(format!(
                "{}: the files end at offset {end} but the state says offsets up to {next} are \
                 stored; this data directory is damaged",
                self.dir.display()
            )));
        }
        let first_held = first_held.map_or(next, |f| f.max(low));
        if first_held > low {
            tracing::warn!(
                dir = %self.dir.display(),
                low,
                first_held,
                "queue holds no messages below {first_held}; expecting retention to move past them"
            );
        }
        self.next = next;
        self.delete_below(low, reaper)?;
        self.fs.sync_dir(&self.dir)?;
        Ok(())
    }
}

/// Cuts the newest file of a queue (first offset `first`) after offset `next - 1` (or after its
/// last whole frame), rebuilding its index. Returns the offset after its last message.
fn cut_queue_file<T: StoredFile>(
    file: &mut QueueFile<T>,
    first: u64,
    next: u64,
) -> io::Result<u64> {
    let (index, offset, valid_end) = index_file(&*file.file, file.len, first, next)?;
    if valid_end != file.len {
        file.file.set_len(valid_end)?;
        file.file.sync_all()?;
        file.len = valid_end;
    }
    file.index = Some(index);
    Ok(offset)
}

/// Reads a queue file (first offset `first`) from its start, stopping before offset `stop` or at
/// its first torn or damaged frame. Returns its position index, the offset after the last
/// message read and the byte after it.
fn index_file(
    file: &impl StoredFile,
    len: u64,
    first: u64,
    stop: u64,
) -> io::Result<(PositionIndex, u64, u64)> {
    let mut index = Vec::new();
    let mut offset = first;
    let end = scan(file, 0, len, |position, _| {
        if offset == stop {
            return Ok(false);
        }
        if offset == first || offset.is_multiple_of(INDEX_EVERY) {
            index.push((offset, position));
        }
        offset += 1;
        Ok(true)
    })?;
    Ok((index, offset, end))
}

/// Reads the frames of `file` from byte `position` up to `len`, calling `f(position, payload)`
/// for each until it returns false. Returns the position after the last frame read whole: `len`
/// unless it stopped early or met a torn or damaged frame.
fn scan(
    file: &impl StoredFile,
    mut position: u64,
    len: u64,
    mut f: impl FnMut(u64, &[u8]) -> io::Result<bool>,
) -> io::Result<u64> {
    let mut buf = Vec::new();
    let mut chunk = FIRST_READ;
    while position < len {
        buf.resize(((len - position) as usize).min(chunk), 0);
        chunk = (chunk * 2).min(MAX_READ);
        file.read_exact_at(&mut buf, position)?;
        let mut at = 0usize;
        while let Some((payload, n)) = buf.get(at..).and_then(frame::read) {
            if !f(position + at as u64, payload)? {
                return Ok(position + at as u64);
            }
            at += n;
        }
        if at > 0 {
            position += at as u64;
            continue;
        }
        // Not one whole frame at the start of the chunk: a frame longer than the chunk (read it
        // whole), or a torn or damaged one (stop there).
        match frame::declared_len(&buf) {
            Some(n) if n > buf.len() && position + n as u64 <= len => {
                buf.resize(n, 0);
                file.read_exact_at(&mut buf, position)?;
                let Some((payload, n)) = frame::read(&buf) else {
                    return Ok(position);
                };
                if !f(position, payload)? {
                    return Ok(position);
                }
                position += n as u64;
            }
            _ => return Ok(position),
        }
    }
    Ok(position)
}

fn parse_queue_dir(name: &str) -> Option<QueueId> {
    let (topic, queue) = name.split_once('-')?;
    Some((topic.parse().ok()?, queue.parse().ok()?))
}
