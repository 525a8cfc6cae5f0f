//! Building this node's snapshot: a manifest of the metadata rows at one applied point (the
//! messages it covers stay in the queue files; see [`crate::snapshot`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftSnapshotBuilder;
use txmq_state::BrokerState;

use super::replica::Replica;
use crate::files::idle_thread::run_when_idle;
use crate::rows::applied_state::AppliedState;
use crate::rows::state_rows::metadata_rows;
use crate::snapshot::format::{CURRENT_SNAPSHOT, FORMAT_VERSION, SnapshotHeader, write_file};
use crate::types::TypeConfig;
use crate::types::alias::{Snapshot, SnapshotMeta};

/// Builds a snapshot file from a captured point of the state.
pub struct SnapshotBuilder {
    pub(crate) replica: Arc<Replica>,
    pub(crate) state: BrokerState,
    pub(crate) applied: AppliedState,
    pub(crate) snapshot_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        let last = self.applied.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
        };
        let header = SnapshotHeader {
            format_version: FORMAT_VERSION,
            meta: meta.clone(),
            applied: self.applied.clone(),
            manifest: true,
        };
        // The manifest names messages in the queue files: they must be durable before it is
        // (a checkpoint syncs them), or a crash could keep a manifest whose messages are gone.
        // The checkpoint is flushed too: after a restart the durable state is then at or past
        // the manifest, so openraft never has to rebuild this node from its own manifest (which
        // needs every message it names, and the restart cut the queues back to the state).
        self.replica.checkpoint_async().await?;
        self.replica
            .tree
            .flush_async()
            .await
            .map_err(io::Error::other)?;
        let dir = self.snapshot_dir.clone();
        let state = std::mem::take(&mut self.state);
        // Encoding every metadata row is a burst of CPU that is never urgent (see
        // `crate::files::idle_thread`); the checkpoint above stays at normal priority, since it holds
        // the state's lock for part of its work.
        let write = move || write_snapshot(&dir, header, &state);
        let path = run_when_idle("txmq-snapshot", write).await??;
        let file = tokio::fs::File::open(path).await?;
        metrics::counter!("txmq_raft_snapshots_built_total").increment(1);
        metrics::histogram!("txmq_raft_snapshot_build_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }
}

/// Writes the snapshot's manifest: the captured metadata rows (the topic rows hold the offsets
/// the snapshot covers). The message segments stay in the tree (see `crate::snapshot`).
fn write_snapshot(
    dir: &std::path::Path,
    header: SnapshotHeader,
    state: &BrokerState,
) -> io::Result<PathBuf> {
    let dest = dir.join(CURRENT_SNAPSHOT);
    write_file(&dir.join("building.snap.tmp"), &dest, &header, |w| {
        // Metadata rows come from the captured state, not the tree, which may have moved on.
        for (key, value) in metadata_rows(state)? {
            w.row(&key, &value)?;
        }
        Ok(())
    })?;
    Ok(dest)
}
