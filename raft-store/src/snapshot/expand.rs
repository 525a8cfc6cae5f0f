//! Turning a snapshot manifest into the full snapshot a follower installs: its rows, then every
//! message it covers, read from the queue files as it streams.

use std::io;
use std::sync::Arc;

use txmq_state::TopicMeta;
use txmq_state::codec;

use super::format::{SnapshotHeader, SnapshotReader, SnapshotWriter};
use crate::files::file_system::FileSystem;
use crate::files::queue_files::QueueFiles;
use crate::rows::keys;
use crate::rows::message_rows;

/// What a sender needs to turn its snapshot manifest into the full snapshot a follower
/// installs: the queue files.
#[derive(Clone)]
pub struct SnapshotSource {
    pub(crate) queues: Arc<QueueFiles>,
}

impl SnapshotSource {
    /// See [`expand_snapshot`].
    pub fn expand<W: io::Write>(&self, snapshot: std::fs::File, out: W) -> io::Result<W> {
        expand_snapshot(snapshot, &self.queues, out, false)
    }
}

/// Messages per message row in an expanded snapshot.
const MESSAGES_PER_ROW: usize = 256;

/// Writes the full snapshot that `snapshot` (a manifest, or already full) stands for to `out`:
/// its rows, then — for a manifest — every message inside the offsets its topic rows captured,
/// read from the queue files now, as segment rows (see [`crate::rows::message_rows`]).
///
/// Messages never change once written, only retention deletes them. A message deleted since the
/// snapshot was taken is missing here; the receiver then applies the log after the snapshot,
/// whose retention entries move the low offsets past exactly those, and ends with the same state.
///
/// With `complete`, every captured offset must still be there (installing a manifest locally
/// restores this node's own state at the snapshot point; a missing message is an error, never
/// a smaller state).
pub fn expand_snapshot<R: io::Read, F: FileSystem, W: io::Write>(
    snapshot: R,
    queues: &QueueFiles<F>,
    out: W,
    complete: bool,
) -> io::Result<W> {
    let (header, mut rows) = SnapshotReader::open(snapshot)?;
    let manifest = header.manifest;
    let full = SnapshotHeader {
        manifest: false,
        ..header
    };
    let mut writer = SnapshotWriter::new(out, &full)?;
    let mut topics = Vec::new();
    while let Some((key, value)) = rows.next_row()? {
        if manifest && key.first() == Some(&keys::TOPIC_PREFIX) {
            topics.push(codec::decode::<TopicMeta>(&value)?);
        }
        writer.row(&key, &value)?;
    }
    for topic in &topics {
        for queue in 0..topic.queues {
            let q = queue as usize;
            let (low, next) = (topic.low_offsets[q], topic.next_offsets[q]);
            let mut chunk: Vec<Vec<u8>> = Vec::new();
            let mut chunk_first = low;
            let mut covered = 0u64;
            queues.read(topic.id, queue, low, next, |offset, message| {
                if chunk.is_empty() {
                    chunk_first = offset;
                } else if chunk_first + chunk.len() as u64 != offset {
                    // A gap (deleted meanwhile): segments hold consecutive offsets.
                    flush_chunk(&mut writer, topic.id, queue, chunk_first, &mut chunk)?;
                    chunk_first = offset;
                }
                chunk.push(message.to_vec());
                covered += 1;
                if chunk.len() == MESSAGES_PER_ROW {
                    flush_chunk(&mut writer, topic.id, queue, chunk_first, &mut chunk)?;
                }
                Ok(true)
            })?;
            flush_chunk(&mut writer, topic.id, queue, chunk_first, &mut chunk)?;
            if complete && covered != next - low {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "snapshot manifest: topic {} queue {queue} covers offsets {low}..{next} but \
                         only {covered} messages are stored here; it cannot be installed on this node",
                        topic.name
                    ),
                ));
            }
        }
    }
    writer.end()
}

/// Writes the buffered messages (consecutive from `first`) as one segment row.
fn flush_chunk<W: io::Write>(
    writer: &mut SnapshotWriter<W>,
    topic: u64,
    queue: u32,
    first: u64,
    chunk: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let value = message_rows::encode(chunk);
    writer.row(&keys::message_key(topic, queue, first), &value)?;
    chunk.clear();
    Ok(())
}
