//! The Raft log's entries in append-only segment files.
//!
//! Why not sled: every entry was inserted into a sled tree and deleted again after the next
//! snapshot; sled copied its pages on insert and rewrote them while cleaning its own log, so a
//! node wrote ~20× the message payload to disk and kept the entries in its page cache. Here an
//! entry is written once, read back with `pread` (recent entries come from the OS page cache,
//! which does not count against the process), and purged by deleting whole files.
//!
//! Layout: `<dir>/<first index, 20 digits>.wal`, each a sequence of [`crate::files::frame`]s holding
//! one MessagePack entry each, then zeros: the file is written with zeros [`PREALLOCATE_BYTES`]
//! ahead of its last frame (see [`LogFiles::append`] for why). Only the newest file is appended
//! to. A torn frame can only be at the end of the newest file (a crash during a write that was
//! never reported flushed) and is cut off when the log is opened; a bad frame anywhere else —
//! in an older file, or followed by anything valid — is corruption, and opening fails rather
//! than losing entries silently (see [`torn_tail`] for the rule).
//!
//! This type does no fsync of appended data itself: the caller hands the active file to the
//! [`crate::log::flusher::LogFlusher`] and reports an append flushed only after that returned.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files::file_system::{FileSystem, OsFs, StoredFile};
use crate::files::{frame, numbered_files};
use crate::log::cache::LogCache;
use crate::types::alias::{Entry, LogId};
use txmq_state::codec;

/// A new segment file is started once the active one reaches this size.
pub const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
/// How far ahead of the last frame the active segment is written with zeros.
pub const PREALLOCATE_BYTES: u64 = 256 * 1024;
const SUFFIX: &str = ".wal";
/// What the zeros are written from.
static ZEROS: [u8; PREALLOCATE_BYTES as usize] = [0; PREALLOCATE_BYTES as usize];

/// Where one entry lives.
#[derive(Debug, Clone, Copy)]
struct Slot {
    log_id: LogId,
    /// First index of the segment file holding it.
    segment: u64,
    offset: u64,
    len: u32,
}

/// One segment file.
struct Segment<F: FileSystem> {
    /// The read (and, for the newest segment, write) handle.
    file: Arc<F::File>,
    /// Bytes of frames; what follows, to the end of the file, is zeros.
    len: u64,
}

/// The entries on disk and an in-memory index of them (one [`Slot`] per entry).
///
/// Invariants: `slots` holds consecutive indexes starting at `first_index`, in the order they
/// appear in the files; every slot's segment is in `segments`; every segment's bytes after its
/// `len` are zeros, and the newest one's file is `active_file_len` long.
///
/// `F` is where the files are: the operating system's file system, or the simulator's disk.
pub struct LogFiles<F: FileSystem = OsFs> {
    fs: F,
    dir: PathBuf,
    /// The segments by first index.
    segments: BTreeMap<u64, Segment<F>>,
    /// The length of the newest segment's file (frames and the zeros after them).
    active_file_len: u64,
    first_index: u64,
    slots: VecDeque<Slot>,
    segment_bytes: u64,
    /// The newest entries, decoded (see [`LogCache`]).
    cache: LogCache,
    /// Where opening cut off a torn tail (the segment's first index, the byte), if it did.
    torn_tail_cut: Option<(u64, u64)>,
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// What an operator reads after a damage message: the node refuses to start rather than drop
/// entries it may have acknowledged, and how to rebuild it safely.
pub const REPAIR_HINT: &str = ". The node stops here rather than drop entries it may have \
    acknowledged to the cluster; restart it with --repair-damaged-storage to set this data \
    aside and rebuild the node from the cluster's leader (docs/operations.md, \"Damaged \
    storage\")";

/// How much the torn-tail test may hash while looking for a valid frame after a bad one; past
/// it the damage is reported as corruption (the safe side: the node is repaired, nothing cut).
const TORN_TAIL_SCAN_BYTES: usize = 256 * 1024 * 1024;
/// The page size a crash tears writes at.
const PAGE: usize = 4096;

/// Whether the bad frame at `bytes[offset..]` is an incomplete last write (cut off safely: it
/// was never reported flushed) rather than damage to data that may have been acknowledged.
///
/// Torn: nothing valid follows it, and part of it is visibly missing — its header never reached
/// the disk or the file ends inside it, its declared end lies past the last non-zero byte, or
/// one of its pages is zeros.
/// Anything else — a valid frame after it (however far), or a whole frame failing its checksum
/// — is corruption: a flipped bit, a lost or misdirected write (Alagappan et al., FAST 2018).
fn torn_tail(bytes: &[u8], offset: usize) -> bool {
    let rest = &bytes[offset..];
    let Some(last_nonzero) = rest.iter().rposition(|b| *b != 0) else {
        return true;
    };
    let written = last_nonzero + 1;
    if valid_frame_after(rest, written) {
        return false;
    }
    let header = &rest[..frame::HEADER.min(rest.len())];
    if header.iter().all(|b| *b == 0) {
        return true;
    }
    // The file ends inside the header: the write that grew the file reached the disk (and the
    // size with it) only up to a page boundary inside it.
    let Some(declared) = frame::declared_len(header) else {
        return rest.len() < frame::HEADER;
    };
    if declared > written {
        return true;
    }
    // A page inside the frame that never reached the disk reads as zeros.
    let first_page = offset.div_ceil(PAGE) * PAGE;
    (first_page..offset + declared)
        .step_by(PAGE)
        .filter(|start| start + PAGE <= offset + declared)
        .any(|start| bytes[start..start + PAGE].iter().all(|b| *b == 0))
}

/// Whether a frame that checks out (non-empty payload) starts anywhere in `rest[1..written]`.
/// Gives `true` (the safe answer) once [`TORN_TAIL_SCAN_BYTES`] were hashed without an answer.
fn valid_frame_after(rest: &[u8], written: usize) -> bool {
    let mut hashed = 0usize;
    for start in 1..written {
        let candidate = &rest[start..];
        let Some(len) = frame::declared_len(candidate) else {
            continue;
        };
        if len <= frame::HEADER || len > candidate.len() {
            continue;
        }
        hashed += len;
        if hashed > TORN_TAIL_SCAN_BYTES {
            return true;
        }
        if frame::read(candidate).is_some() {
            return true;
        }
    }
    false
}

impl LogFiles<OsFs> {
    /// Opens (or creates) the log in `dir` on the operating system's file system (see
    /// [`LogFiles::open_in`]).
    pub fn open(dir: &Path, purged: Option<u64>, segment_bytes: u64) -> io::Result<Self> {
        Self::open_in(OsFs, dir, purged, segment_bytes)
    }
}

impl<F: FileSystem> LogFiles<F> {
    /// Opens (or creates) the log in `dir` on `fs`, dropping entries at or below `purged`
    /// (deleted from the index by a purge whose file deletion a crash interrupted).
    pub fn open_in(fs: F, dir: &Path, purged: Option<u64>, segment_bytes: u64) -> io::Result<Self> {
        fs.create_dir_all(dir)?;
        let names = fs.list(dir, SUFFIX)?;
        let mut log = Self {
            fs,
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            active_file_len: 0,
            first_index: 0,
            slots: VecDeque::new(),
            segment_bytes,
            cache: LogCache::default(),
            torn_tail_cut: None,
        };
        let count = names.len();
        for (i, first) in names.into_iter().enumerate() {
            log.load_segment(first, i + 1 == count, purged)?;
        }
        Ok(log)
    }

    /// Reads one segment's frames into the index. Zeros after the last frame are space written
    /// ahead; only the newest segment may end in a torn frame, which is cut off.
    fn load_segment(&mut self, first: u64, newest: bool, purged: Option<u64>) -> io::Result<()> {
        let path = self.segment_path(first);
        let file = self.fs.open(&path)?;
        let bytes = self.fs.read(&path)?;
        let mut offset = 0usize;
        let mut file_len = bytes.len() as u64;
        while offset < bytes.len() {
            let Some((entry, frame_len)) = decode_frame(&bytes[offset..])? else {
                if bytes[offset..].iter().all(|b| *b == 0) {
                    break;
                }
                if !newest {
                    return Err(corrupt(format!(
                        "raft log segment {} has a damaged frame at byte {offset} and is not the \
                         newest segment{REPAIR_HINT}",
                        path.display()
                    )));
                }
                if !torn_tail(&bytes, offset) {
                    return Err(corrupt(format!(
                        "raft log segment {} has a damaged frame at byte {offset} that is not a \
                         write torn by a crash (data follows it, or the frame is whole but fails \
                         its checksum){REPAIR_HINT}",
                        path.display()
                    )));
                }
                tracing::warn!(path = %path.display(), offset, "cutting off a torn raft log tail");
                file.set_len(offset as u64)?;
                file.sync_all()?;
                file_len = offset as u64;
                self.torn_tail_cut = Some((first, file_len));
                break;
            };
            let slot = Slot {
                log_id: entry.log_id,
                segment: first,
                offset: offset as u64,
                len: frame_len as u32,
            };
            offset += frame_len;
            if purged.is_some_and(|p| slot.log_id.index <= p) {
                continue;
            }
            self.push_slot(slot)?;
        }
        let segment = Segment {
            file: Arc::new(file),
            len: offset.min(bytes.len()) as u64,
        };
        self.segments.insert(first, segment);
        self.active_file_len = file_len;
        Ok(())
    }

    fn push_slot(&mut self, slot: Slot) -> io::Result<()> {
        match self.last_index() {
            Some(last) if slot.log_id.index != last + 1 => {
                return Err(corrupt(format!(
                    "raft log is not contiguous: entry {} follows entry {last}",
                    slot.log_id.index
                )));
            }
            None => self.first_index = slot.log_id.index,
            Some(_) => {}
        }
        self.slots.push_back(slot);
        Ok(())
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        numbered_files::path(&self.dir, first, SUFFIX)
    }

    /// Where opening the log cut off a torn tail: the segment's first index and the byte the
    /// segment now ends at (`None`: nothing was cut).
    pub fn torn_tail_cut(&self) -> Option<(u64, u64)> {
        self.torn_tail_cut
    }

    pub fn last_log_id(&self) -> Option<LogId> {
        self.slots.back().map(|s| s.log_id)
    }

    fn last_index(&self) -> Option<u64> {
        self.slots.back().map(|s| s.log_id.index)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Writes `entries` (consecutive, following the last entry unless the log is empty) to the
    /// active segment and returns that segment's file, which the caller must sync before
    /// reporting the entries flushed (`None`: there were no entries).
    ///
    /// The frames overwrite zeros written ahead of them ([`PREALLOCATE_BYTES`] at a time): an
    /// `fdatasync` after a write that made the file longer must also make the new size durable
    /// (on ext4 with a journal a journal commit, which waits for whatever else it carries — the
    /// queue files' and the checkpoints' writes; without one, as on the reference VM, a
    /// synchronous write of the inode's block before the flush); after a write into space the
    /// file already had it flushes only the data. On the reference VM a 2 KiB append +
    /// `fdatasync` took 0.4–0.85 ms on average and 65–77 µs of kernel CPU when it grew the file,
    /// 0.16 ms and ~40 µs when it overwrote zeros (`docs/performance-history.md`).
    pub fn append(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> io::Result<Option<Arc<F::File>>> {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(None);
        }
        // Checked before anything is written: a frame on disk that the index refused would
        // make the log unopenable.
        let mut expected = self.last_index().map(|last| last + 1);
        for entry in &entries {
            let index = entry.log_id.index;
            if expected.is_some_and(|e| e != index) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "raft log append of entry {index} after entry {:?}",
                        self.last_index()
                    ),
                ));
            }
            expected = Some(index + 1);
        }
        let mut buf = Vec::new();
        let mut pending = Vec::new();
        for entry in entries {
            if self.active_len() + buf.len() as u64 >= self.segment_bytes && !buf.is_empty() {
                self.write_pending(&mut buf, &mut pending)?;
            }
            let start = buf.len();
            encode_frame(&entry, &mut buf)?;
            pending.push((entry.log_id, start, buf.len() - start));
            self.cache.push(entry, buf.len() - start);
        }
        self.write_pending(&mut buf, &mut pending)?;
        self.active_file().map(Some)
    }

    /// Zeros written ahead at a time: [`PREALLOCATE_BYTES`], or a segment's size if smaller.
    fn write_ahead(&self) -> u64 {
        PREALLOCATE_BYTES.min(self.segment_bytes)
    }

    /// Bytes of frames in the newest segment (0 before the first).
    fn active_len(&self) -> u64 {
        self.segments.last_key_value().map_or(0, |(_, s)| s.len)
    }

    /// Writes the buffered frames at the end of the active segment (starting a new one first if
    /// the active one is full), writes zeros ahead of them if they reached the zeros' end, and
    /// indexes them.
    fn write_pending(
        &mut self,
        buf: &mut Vec<u8>,
        pending: &mut Vec<(LogId, usize, usize)>,
    ) -> io::Result<()> {
        let Some(&(first_id, _, _)) = pending.first() else {
            return Ok(());
        };
        if self.segments.is_empty() || self.active_len() >= self.segment_bytes {
            self.start_segment(first_id.index)?;
        }
        let (segment, file) = self.active()?;
        let offset = self.active_len();
        file.write_all_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        let write_ahead = self.write_ahead();
        if end + write_ahead / 2 > self.active_file_len {
            let zeros_from = end.max(self.active_file_len);
            write_zeros(file.as_ref(), zeros_from, write_ahead)?;
            self.active_file_len = zeros_from + write_ahead;
        }
        for (log_id, start, len) in pending.drain(..) {
            self.push_slot(Slot {
                log_id,
                segment,
                offset: offset + start as u64,
                len: len as u32,
            })?;
        }
        if let Some(mut active) = self.segments.last_entry() {
            active.get_mut().len = end;
        }
        buf.clear();
        Ok(())
    }

    /// Seals the active segment (cut to its frames and synced, so every older file is durable)
    /// and starts a new one whose first entry will be `first_index`.
    ///
    /// Why cut: only the newest segment then has zeros after its frames, and a txmq from before
    /// the zeros were written ahead, which reads zeros as a torn frame — cut off in the newest
    /// segment, refused as damage in any other — can still open the log (a downgrade).
    fn start_segment(&mut self, first_index: u64) -> io::Result<()> {
        if let Some((_, active)) = self.segments.last_key_value() {
            if self.active_file_len > active.len {
                active.file.set_len(active.len)?;
                active.file.sync_all()?;
            } else {
                active.file.sync_data()?;
            }
        }
        let path = self.segment_path(first_index);
        let file = self.fs.create(&path)?;
        // The new name must survive a crash too, or its synced entries would be unreachable.
        self.fs.sync_dir(&self.dir)?;
        let segment = Segment {
            file: Arc::new(file),
            len: 0,
        };
        self.segments.insert(first_index, segment);
        self.active_file_len = 0;
        Ok(())
    }

    fn active(&self) -> io::Result<(u64, Arc<F::File>)> {
        self.segments
            .last_key_value()
            .map(|(first, segment)| (*first, segment.file.clone()))
            .ok_or_else(|| io::Error::other("raft log has no segment file"))
    }

    /// The file new entries go to (created on the first append).
    pub fn active_file(&self) -> io::Result<Arc<F::File>> {
        self.active().map(|(_, file)| file)
    }

    /// The entries `start..end` if they are all among the newest, kept in memory.
    pub fn cached(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        self.cache.get(start, end)
    }

    /// Where the entries `start..end` (clamped to what the log holds) are: read them with
    /// [`read_located`] without holding the log.
    pub fn locate(&self, start: u64, end: u64) -> io::Result<Vec<Located<F>>> {
        let start = start.max(self.first_index);
        let Some(last) = self.last_index() else {
            return Ok(Vec::new());
        };
        let end = end.min(last + 1);
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        for index in start..end {
            let slot = self.slots[(index - self.first_index) as usize];
            let segment = self.segments.get(&slot.segment).ok_or_else(|| {
                corrupt(format!(
                    "raft log entry {index} points at a missing segment"
                ))
            })?;
            out.push(Located {
                file: segment.file.clone(),
                offset: slot.offset,
                len: slot.len,
            });
        }
        Ok(out)
    }

    /// Removes every entry after `last` (all of them with `None`) from the files, durably.
    pub fn truncate_after(&mut self, last: Option<u64>) -> io::Result<()> {
        let keep = match last {
            Some(l) if l >= self.first_index => (l + 1 - self.first_index) as usize,
            _ => 0,
        };
        self.cache.truncate_after(last);
        let Some(cut) = self.slots.get(keep).copied() else {
            return Ok(());
        };
        self.slots.truncate(keep);
        // Whole segments after the cut go; in the one holding the cut, zeros replace the frames
        // from the cut on (its file keeps the space written ahead).
        let later: Vec<u64> = self
            .segments
            .range(cut.segment + 1..)
            .map(|(first, _)| *first)
            .collect();
        for first in later {
            self.segments.remove(&first);
            self.fs.remove_file(&self.segment_path(first))?;
        }
        if cut.offset == 0 {
            self.segments.remove(&cut.segment);
            self.fs.remove_file(&self.segment_path(cut.segment))?;
        } else if let Some(segment) = self.segments.get_mut(&cut.segment) {
            write_zeros(segment.file.as_ref(), cut.offset, segment.len - cut.offset)?;
            segment.file.sync_data()?;
            segment.len = cut.offset;
        }
        self.active_file_len = match self.segments.last_key_value() {
            Some((_, segment)) => segment.file.file_len()?,
            None => 0,
        };
        self.fs.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Forgets every entry up to and including `upto` and hands back the segment files that
    /// hold nothing newer, for the caller to delete ([`PurgedSegments::delete`]) without this
    /// log's lock: deleting 256 MiB of segments took ~180 ms, during which appends waited. The
    /// caller has made the purge point durable first; a file a crash left undeleted is skipped
    /// when the log is opened and deleted by the next purge.
    pub fn purge(&mut self, upto: u64) -> PurgedSegments<F> {
        self.cache.purge(upto);
        while self
            .slots
            .front()
            .is_some_and(|slot| slot.log_id.index <= upto)
        {
            self.slots.pop_front();
        }
        self.first_index = self.first_index.max(upto + 1);
        // A segment can go when the next one starts at or below the first entry kept; the
        // active segment always stays (new entries go there).
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut files = Vec::new();
        for pair in firsts.windows(2) {
            if pair[1] <= upto + 1
                && let Some(segment) = self.segments.remove(&pair[0])
            {
                files.push((self.segment_path(pair[0]), segment.file));
            }
        }
        PurgedSegments {
            fs: self.fs.clone(),
            files,
        }
    }

    /// Bytes the segment files take.
    pub fn disk_bytes(&self) -> u64 {
        self.segments
            .values()
            .filter_map(|s| s.file.file_len().ok())
            .sum()
    }
}

/// Segment files a purge left behind, to be deleted.
#[must_use = "purged segments stay on disk until deleted"]
pub struct PurgedSegments<F: FileSystem = OsFs> {
    fs: F,
    /// Each file's path and the log's handle to it.
    files: Vec<(PathBuf, Arc<F::File>)>,
}

impl<F: FileSystem> PurgedSegments<F> {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Deletes the files, oldest first, a few MiB at a time (see [`crate::files::gradual_delete`]):
    /// slow by design, so call it on a background thread. A reader holding one open keeps
    /// reading it.
    pub fn delete(self) -> io::Result<()> {
        for (path, file) in self.files {
            self.fs.delete(&path, file)?;
        }
        Ok(())
    }
}

/// An entry's place on disk, readable without the log's lock (a segment deleted meanwhile stays
/// readable through its open handle).
pub struct Located<F: FileSystem = OsFs> {
    file: Arc<F::File>,
    offset: u64,
    len: u32,
}

impl<F: FileSystem> Located<F> {
    /// Where the entry's frame ends in its segment file.
    pub fn frame_end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Reads and decodes located entries, checking each frame.
pub fn read_located<F: FileSystem>(located: &[Located<F>]) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::with_capacity(located.len());
    let mut buf = Vec::new();
    for l in located {
        buf.resize(l.len as usize, 0);
        l.file.read_exact_at(&mut buf, l.offset)?;
        match decode_frame(&buf)? {
            Some((entry, _)) => entries.push(entry),
            None => {
                return Err(corrupt(format!(
                    "raft log frame at byte {} does not check out",
                    l.offset
                )));
            }
        }
    }
    Ok(entries)
}

/// Writes `len` zeros into `file` at `offset`.
fn write_zeros(file: &impl StoredFile, offset: u64, len: u64) -> io::Result<()> {
    let mut written = 0;
    while written < len {
        let n = (len - written).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], offset + written)?;
        written += n;
    }
    Ok(())
}

fn encode_frame(entry: &Entry, buf: &mut Vec<u8>) -> io::Result<()> {
    let start = frame::begin(buf);
    rmp_serde::encode::write_named(buf, entry).map_err(txmq_state::codec::CodecError::from)?;
    frame::finish(buf, start)
}

/// Decodes the frame at the start of `bytes`: `None` if it is incomplete or fails its checksum
/// (a torn write), an error if it checks out but does not decode (a bug or foreign data).
fn decode_frame(bytes: &[u8]) -> io::Result<Option<(Entry, usize)>> {
    // An empty payload is no entry but zeros: a crash can leave a file longer than the data
    // that reached the disk (the size was written, the pages were not), and a header of zeros
    // checks out (the checksum of nothing is 0). It is a torn tail like any other.
    let Some((payload, len)) = frame::read(bytes).filter(|(p, _)| !p.is_empty()) else {
        return Ok(None);
    };
    let entry: Entry = codec::decode(payload)?;
    Ok(Some((entry, len)))
}
