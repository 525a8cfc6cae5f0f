//! The transaction journal: a node's durable copy of its transaction records, as an
//! append-only run of record versions.
//!
//! Why not sled rows: a transaction's record was inserted into sled when decided (its pending
//! row rarely outlived a checkpoint) and deleted again when it left the decided window — two
//! B-tree updates per transaction, which cost a third of a node's CPU under a transactional
//! load. Here a checkpoint appends the current version of every record that changed since the
//! previous one as one frame each, and nothing is ever updated in place.
//!
//! Frames (in [`QueueFiles`] under `txn-journal/`, one log, numbered consecutively):
//! * `P` + the record ([`txmq_state::codec::encode_compact`]): the record as of that checkpoint;
//! * `F` + the id's text: the record left the state (written only when its latest frame
//!   showed it pending, see below).
//!
//! Replaying `[low, next)` in order, a later frame of an id replacing an earlier one, and then
//! keeping only the newest [`txmq_state::MAX_DECIDED_KEPT`] decisions (by `decided_seq`)
//! gives exactly the records of the checkpoint that recorded `next`. Decided records that fell
//! out of the window need no `F` frame: the window rule drops them again, because every newer
//! decision is in the journal too.
//!
//! Compaction: once the journal spans more frames or bytes than its [`JournalLimits`] — and at
//! least twice what its live records take, so a mostly-live journal is not rewritten again and
//! again — a checkpoint moves `low` to the middle of the span: every live record whose latest
//! frame is below it is written again (live records are the recent decisions and the pending
//! transactions), and files wholly below `low` are deleted after the sled batch recording it is
//! flushed. Files are deleted oldest first, so an older frame of an id never
//! outlives the `F` frame that cancels it.
//!
//! Durability is the checkpoint's (see [`crate::machine::checkpoint`]): frames are synced before the sled
//! batch naming the new `next` is written, and after a crash the journal is cut back to the
//! `next` of the last checkpoint sled kept.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::files::file_system::{FileSystem, OsFs};
use crate::files::queue_files::QueueFiles;
use txmq_state::codec;
use txmq_state::{Transactions, TxnId, TxnRecord, TxnState};

/// The journal's one log inside its [`QueueFiles`].
const LOG: (u64, u32) = (0, 0);

/// File size and compaction thresholds.
#[derive(Debug, Clone, Copy)]
pub struct JournalLimits {
    /// Bytes per journal file.
    pub file_bytes: u64,
    /// Compact once the journal spans more frames than this...
    pub compact_frames: u64,
    /// ... or its files take more bytes than this.
    pub compact_bytes: u64,
}

impl Default for JournalLimits {
    fn default() -> Self {
        Self {
            file_bytes: 4 * 1024 * 1024,
            compact_frames: 256 * 1024,
            compact_bytes: 64 * 1024 * 1024,
        }
    }
}

const PUT: u8 = b'P';
const FORGET: u8 = b'F';

/// The frames `[low, next)` the state uses; stored in sled with each checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRange {
    pub low: u64,
    pub next: u64,
}

/// Where a live record's latest frame is.
#[derive(Debug, Clone, Copy)]
struct Latest {
    offset: u64,
    /// The frame shows the record pending (so dropping the record needs an `F` frame).
    pending: bool,
    /// The frame's length.
    bytes: u64,
}

struct Inner {
    range: JournalRange,
    latest: FxHashMap<TxnId, Latest>,
    /// The sum of `latest`'s frame lengths: what a fully compacted journal would hold.
    live_bytes: u64,
}

impl Inner {
    fn empty(range: JournalRange) -> Self {
        Self {
            range,
            latest: FxHashMap::default(),
            live_bytes: 0,
        }
    }

    fn set_latest(&mut self, id: TxnId, latest: Latest) {
        self.live_bytes += latest.bytes;
        if let Some(old) = self.latest.insert(id, latest) {
            self.live_bytes -= old.bytes;
        }
    }

    fn drop_latest(&mut self, id: &TxnId) {
        if let Some(old) = self.latest.remove(id) {
            self.live_bytes -= old.bytes;
        }
    }

    /// Compaction is due once the journal is both past its limits and at least twice what its
    /// live records take: a journal that is mostly live (many long-pending transactions) is not
    /// rewritten over and over.
    fn compaction_due(&self, limits: &JournalLimits, disk_bytes: u64) -> bool {
        let span = self.range.next - self.range.low;
        span > limits.compact_frames.max(2 * self.latest.len() as u64)
            || disk_bytes > limits.compact_bytes.max(2 * self.live_bytes)
    }
}

/// What a checkpoint journals, taken under the state's read lock ([`TxnJournal::prepare`]):
/// the records to write, shared with the state rather than encoded there, so the lock is held
/// for a few hash lookups per transaction instead of an encoding each (thousands per
/// checkpoint under load, and every live record when the journal compacts).
pub struct JournalPlan {
    puts: Vec<Arc<TxnRecord>>,
    forgets: Vec<TxnId>,
    dropped: Vec<TxnId>,
    new_low: Option<u64>,
}

impl JournalPlan {
    /// Encodes the planned frames (call it after releasing the state's lock).
    pub fn encode(self) -> io::Result<JournalWrite> {
        let mut write = JournalWrite {
            frames: Vec::with_capacity(self.puts.len() + self.forgets.len()),
            ids: Vec::with_capacity(self.puts.len() + self.forgets.len()),
            dropped: self.dropped,
            new_low: self.new_low,
        };
        for record in &self.puts {
            write.put(record)?;
        }
        for id in self.forgets {
            write.forget(id);
        }
        Ok(write)
    }
}

/// The frames a checkpoint appends ([`JournalPlan::encode`]).
#[derive(Default)]
pub struct JournalWrite {
    frames: Vec<Vec<u8>>,
    /// For each frame, its id and whether it shows the record pending (`None`: an `F` frame).
    ids: Vec<(TxnId, Option<bool>)>,
    /// Records that left the state and need no frame (see the module comment).
    dropped: Vec<TxnId>,
    /// The new `low` when this write compacts.
    new_low: Option<u64>,
}

impl JournalWrite {
    /// Whether this write moves `low` (files below it go after the checkpoint is flushed).
    pub fn compacts(&self) -> bool {
        self.new_low.is_some()
    }

    fn put(&mut self, record: &TxnRecord) -> io::Result<()> {
        self.frames.push(put_frame(record)?);
        self.ids
            .push((record.id, Some(record.state == TxnState::Pending)));
        Ok(())
    }

    fn forget(&mut self, id: TxnId) {
        self.frames.push(forget_frame(&id));
        self.ids.push((id, None));
    }
}

pub struct TxnJournal<F: FileSystem = OsFs> {
    files: QueueFiles<F>,
    limits: JournalLimits,
    inner: Mutex<Inner>,
}

impl TxnJournal {
    /// Opens the journal under `dir`; [`Self::load`] cuts it to the stored range.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, JournalLimits::default())
    }

    /// [`Self::open`] with other limits (tests use small ones).
    pub fn open_with(dir: &Path, limits: JournalLimits) -> io::Result<Self> {
        Self::open_in(OsFs, dir, limits)
    }
}

impl<F: FileSystem> TxnJournal<F> {
    /// [`TxnJournal::open_with`] on the file system `fs`.
    pub fn open_in(fs: F, dir: &Path, limits: JournalLimits) -> io::Result<Self> {
        Ok(Self {
            files: QueueFiles::open_in(fs, dir, limits.file_bytes)?,
            limits,
            inner: Mutex::new(Inner::empty(JournalRange::default())),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every method leaves `Inner` consistent before it can fail.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The range the journal holds now.
    pub fn range(&self) -> JournalRange {
        self.inner().range
    }

    /// After a restart (or an install): cuts the files to `range` and replays them. Returns the
    /// transactions of the state that recorded `range`.
    pub fn load(&self, range: JournalRange) -> io::Result<Transactions> {
        let expected = HashMap::from([(LOG, (range.low, range.next))]);
        self.files.reconcile(&expected)?;
        let mut records: HashMap<TxnId, (Latest, TxnRecord)> = HashMap::new();
        self.files
            .read(LOG.0, LOG.1, range.low, range.next, |offset, frame| {
                match decode_frame(frame)? {
                    Frame::Put(record) => {
                        let latest = Latest {
                            offset,
                            pending: record.state == TxnState::Pending,
                            bytes: frame.len() as u64,
                        };
                        records.insert(record.id, (latest, *record));
                    }
                    Frame::Forget(id) => {
                        records.remove(&id);
                    }
                }
                Ok(true)
            })?;
        let latest: Vec<(TxnId, Latest)> = records.iter().map(|(id, (l, _))| (*id, *l)).collect();
        let kept = Transactions::restore(records.into_values().map(|(_, r)| r));
        let mut inner = Inner::empty(range);
        // Only what the window keeps is live; the rest needs no more frames.
        for (id, l) in latest {
            if kept.get(&id).is_some() {
                inner.set_latest(id, l);
            }
        }
        *self.inner() = inner;
        Ok(kept)
    }

    /// Plans the frames for the transactions `changed` since the last checkpoint (their
    /// current version, or an `F` frame), plus — when the journal is due for compaction —
    /// every live record whose latest frame lies below the new `low`. Call it under the
    /// state's read lock, with the state the checkpoint records; encode the plan after.
    pub fn prepare(&self, changed: &FxHashSet<TxnId>, txns: &Transactions) -> JournalPlan {
        let inner = self.inner();
        let range = inner.range;
        let mut plan = JournalPlan {
            puts: Vec::with_capacity(changed.len()),
            forgets: Vec::new(),
            dropped: Vec::new(),
            new_low: None,
        };
        let mut carried = Vec::new();
        if inner.compaction_due(&self.limits, self.files.disk_bytes()) {
            let new_low = range.low + (range.next - range.low) / 2;
            plan.new_low = Some(new_low);
            carried.extend(
                inner
                    .latest
                    .iter()
                    .filter(|(id, l)| l.offset < new_low && !changed.contains(id))
                    .map(|(id, _)| *id),
            );
        }
        for id in changed.iter().chain(carried.iter()) {
            match (txns.shared(id), inner.latest.get(id)) {
                (Some(record), _) => plan.puts.push(Arc::clone(record)),
                (None, Some(l)) if l.pending => plan.forgets.push(*id),
                (None, Some(_)) => plan.dropped.push(*id),
                (None, None) => {}
            }
        }
        plan
    }

    /// Appends a prepared write (not synced: see [`Self::sync`]) and returns the range to record
    /// with the checkpoint.
    pub fn append(&self, write: &JournalWrite) -> io::Result<JournalRange> {
        let mut inner = self.inner();
        let first = inner.range.next;
        if !write.frames.is_empty() {
            self.files.append(LOG.0, LOG.1, first, &write.frames)?;
        }
        for (i, (&(id, pending), frame)) in write.ids.iter().zip(&write.frames).enumerate() {
            match pending {
                Some(pending) => {
                    let offset = first + i as u64;
                    let bytes = frame.len() as u64;
                    inner.set_latest(
                        id,
                        Latest {
                            offset,
                            pending,
                            bytes,
                        },
                    );
                }
                None => inner.drop_latest(&id),
            }
        }
        for id in &write.dropped {
            inner.drop_latest(id);
        }
        inner.range.next = first + write.frames.len() as u64;
        if let Some(low) = write.new_low {
            inner.range.low = low;
        }
        Ok(inner.range)
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.files.sync()
    }

    /// Deletes files wholly below the current `low` (after the checkpoint recording it is
    /// flushed).
    pub fn trim(&self) -> io::Result<()> {
        let low = self.inner().range.low;
        self.files.trim_below(LOG.0, LOG.1, low)
    }

    /// Empties the journal (before installing a snapshot, or moving rows of an earlier
    /// version into it); [`Self::put_all`] then fills it.
    pub fn reset(&self) -> io::Result<()> {
        self.files.clear()?;
        *self.inner() = Inner::empty(JournalRange::default());
        Ok(())
    }

    /// Appends the current version of each record (not synced).
    pub fn put_all<'a>(&self, records: impl IntoIterator<Item = &'a TxnRecord>) -> io::Result<()> {
        let mut write = JournalWrite::default();
        for record in records {
            write.put(record)?;
        }
        self.append(&write)?;
        Ok(())
    }

    /// Bytes the journal's files take.
    pub fn disk_bytes(&self) -> u64 {
        self.files.disk_bytes()
    }
}

enum Frame {
    Put(Box<TxnRecord>),
    Forget(TxnId),
}

fn put_frame(record: &TxnRecord) -> io::Result<Vec<u8>> {
    let mut frame = Vec::with_capacity(1 + record.encoded_size_hint());
    frame.push(PUT);
    codec::encode_compact_into(&mut frame, record)?;
    Ok(frame)
}

fn forget_frame(id: &TxnId) -> Vec<u8> {
    let mut frame = vec![FORGET];
    frame.extend(id.to_string().into_bytes());
    frame
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("transaction journal: {what}"),
    )
}

fn decode_frame(frame: &[u8]) -> io::Result<Frame> {
    match frame.split_first() {
        Some((&PUT, rest)) => Ok(Frame::Put(Box::new(codec::decode(rest)?))),
        Some((&FORGET, rest)) => std::str::from_utf8(rest)
            .ok()
            .and_then(TxnId::parse)
            .map(Frame::Forget)
            .ok_or_else(|| damaged("malformed forget frame")),
        _ => Err(damaged("unknown frame kind")),
    }
}
