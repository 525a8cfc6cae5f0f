//! The snapshot file format: a stream of length-prefixed MessagePack frames.
//!
//! `Header` (snapshot meta, applied state), then one `Row` per stored row (metadata rows, then
//! message rows), then `End` with the row count. Written and read frame by frame, so
//! neither building, sending nor installing a snapshot ever holds the whole state in memory.
//!
//! On disk a node keeps a **manifest**: the same format with `manifest: true` and only the
//! metadata rows, whose topic rows say which offsets the snapshot covers. Messages are
//! immutable once written, so they are not copied into the file (that copied every retained
//! body once more); when a follower needs the snapshot, the sender expands the manifest on the
//! fly with message rows read from its queue files ([`super::expand`]). What goes over the
//! wire is always a full snapshot.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::trickle_synced_file::TrickleSyncedFile;
use crate::rows::applied_state::AppliedState;
use crate::types::alias::SnapshotMeta;
use txmq_state::codec;

/// The version of this format; a reader rejects any other.
pub const FORMAT_VERSION: u32 = 1;
/// The file name of a node's current snapshot (a manifest) in its snapshot directory.
pub const CURRENT_SNAPSHOT: &str = "current.snap";
/// The largest frame a reader accepts (a message row holds the messages one entry appended to
/// a queue: a few MiB, at most a little over one maximum-size message).
const MAX_FRAME: usize = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub format_version: u32,
    pub meta: SnapshotMeta,
    pub applied: AppliedState,
    /// Only the metadata rows: the messages are read from the queue files when it is sent.
    #[serde(default)]
    pub manifest: bool,
}

#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Header(Box<SnapshotHeader>),
    Row {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    End {
        rows: u64,
    },
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Writes a snapshot stream: the header, rows, then the end frame.
pub struct SnapshotWriter<W: Write> {
    out: BufWriter<W>,
    rows: u64,
}

impl<W: Write> SnapshotWriter<W> {
    pub fn new(out: W, header: &SnapshotHeader) -> io::Result<Self> {
        let mut writer = Self {
            out: BufWriter::with_capacity(256 * 1024, out),
            rows: 0,
        };
        writer.frame(&FrameRef::Header(header))?;
        Ok(writer)
    }

    fn frame(&mut self, frame: &FrameRef<'_>) -> io::Result<()> {
        let bytes = codec::encode(frame)?;
        let len = u32::try_from(bytes.len()).map_err(|_| invalid("snapshot frame too large"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&bytes)
    }

    pub fn row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.rows += 1;
        self.frame(&FrameRef::Row { key, value })
    }

    /// Writes the end frame and hands back the flushed output.
    pub fn end(mut self) -> io::Result<W> {
        let rows = self.rows;
        self.frame(&FrameRef::End { rows })?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Writes a snapshot file under `tmp`, syncing as it goes (see [`TrickleSyncedFile`]), and
/// renames it to `dest`.
pub fn write_file(
    tmp: &Path,
    dest: &Path,
    header: &SnapshotHeader,
    rows: impl FnOnce(&mut SnapshotWriter<TrickleSyncedFile>) -> io::Result<()>,
) -> io::Result<()> {
    let mut writer = SnapshotWriter::new(TrickleSyncedFile::new(File::create(tmp)?), header)?;
    rows(&mut writer)?;
    writer.end()?.finish()?;
    std::fs::rename(tmp, dest)
}

/// [`Frame`] by reference, for writing without copying rows.
#[derive(Serialize)]
enum FrameRef<'a> {
    Header(&'a SnapshotHeader),
    Row {
        #[serde(with = "serde_bytes")]
        key: &'a [u8],
        #[serde(with = "serde_bytes")]
        value: &'a [u8],
    },
    End {
        rows: u64,
    },
}

/// Reads a snapshot file frame by frame.
pub struct SnapshotReader<R: Read> {
    input: BufReader<R>,
    rows: u64,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Opens a snapshot stream and reads its header.
    pub fn open(input: R) -> io::Result<(SnapshotHeader, Self)> {
        let mut reader = Self {
            input: BufReader::with_capacity(256 * 1024, input),
            rows: 0,
            done: false,
        };
        match reader.frame()? {
            Some(Frame::Header(header)) if header.format_version == FORMAT_VERSION => {
                Ok((*header, reader))
            }
            Some(Frame::Header(header)) => Err(invalid(format!(
                "snapshot format version {} is not supported (expected {FORMAT_VERSION})",
                header.format_version
            ))),
            _ => Err(invalid("snapshot does not start with a header")),
        }
    }

    fn frame(&mut self) -> io::Result<Option<Frame>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!(
                "snapshot frame of {len} bytes exceeds the limit"
            )));
        }
        let mut buf = vec![0u8; len];
        self.input.read_exact(&mut buf)?;
        Ok(Some(codec::decode(&buf)?))
    }

    /// The next (key, value) row; `None` at the end. A stream cut short is an error, never a
    /// silently smaller state.
    pub fn next_row(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        match self.frame()? {
            Some(Frame::Row { key, value }) => {
                self.rows += 1;
                Ok(Some((key, value)))
            }
            Some(Frame::End { rows }) if rows == self.rows => {
                self.done = true;
                Ok(None)
            }
            Some(Frame::End { rows }) => Err(invalid(format!(
                "snapshot says {rows} rows but holds {}",
                self.rows
            ))),
            Some(Frame::Header(_)) => Err(invalid("second header in snapshot")),
            None => Err(invalid("snapshot ends without an end frame")),
        }
    }
}
