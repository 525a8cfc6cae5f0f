//! Opening a node's on-disk storage: the Raft log's segment files (`raft-log/`), the message
//! bodies in per-queue files (`queues/`), the transaction journal (`txn-journal/`), one sled
//! database (`db/`) holding the Raft metadata (vote, committed, purged) and the state-machine
//! rows (topics, groups, retired nodes), and snapshot files (`snapshots/`).

use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::files::queue_files::{QUEUE_FILE_BYTES, QueueFiles};
use crate::files::txn_journal::TxnJournal;
use crate::log::store::LogStore;
use crate::machine::reader::StateReader;
use crate::machine::store::StateMachineStore;

/// Where and how to open storage.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// sled's page cache bound. sled 0.34 may exceed it, so it is set well below the memory
    /// budget; RSS is measured in the benchmarks.
    pub cache_bytes: u64,
}

impl StorageConfig {
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            data_dir: data_dir.as_ref().to_path_buf(),
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Opening storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database in {path}: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("the stored state in {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether the data on disk is damaged (a frame or row that fails its checks), as opposed
    /// to a directory that cannot be opened at all (permissions, a missing volume): damage is
    /// what `--repair-damaged-storage` may set aside and rebuild from the cluster.
    pub fn is_damage(&self) -> bool {
        match self {
            StorageError::Corrupt { source, .. } => {
                source.kind() == std::io::ErrorKind::InvalidData
            }
            StorageError::Sled { source, .. } => matches!(source, sled::Error::Corruption { .. }),
            StorageError::Dir { .. } => false,
        }
    }
}

/// The opened storage of one node.
pub struct Storage {
    pub log: LogStore,
    pub state_machine: StateMachineStore,
    pub reader: StateReader,
    /// Expands snapshot manifests into the full stream sent to followers.
    pub snapshots: crate::snapshot::expand::SnapshotSource,
    /// What the node needs of the stores besides Raft: their size, a final flush.
    pub handle: StorageHandle,
    /// The sled database (vote, purge point, state rows), for the store's own tests and tools.
    pub db: sled::Db,
}

/// What a node needs of its stores outside openraft: how many bytes they take on disk, and a
/// final flush when it stops. Cheap to clone.
#[derive(Clone)]
pub struct StorageHandle {
    db: sled::Db,
    log: LogStore,
    reader: StateReader,
}

impl StorageHandle {
    /// The stores' bytes on disk; an error when sled cannot tell.
    pub fn total_bytes(&self) -> std::io::Result<u64> {
        let db = self.db.size_on_disk().map_err(std::io::Error::other)?;
        Ok(db + self.log.disk_bytes() + self.reader.queue_file_bytes())
    }

    /// Makes sled's pending writes durable (a stopping node's last step; the log and the queue
    /// files are durable already).
    pub async fn flush(&self) -> std::io::Result<()> {
        self.db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other)
    }
}

impl Storage {
    pub fn open(config: &StorageConfig) -> Result<Storage, StorageError> {
        let dir = &config.data_dir;
        let db_dir = dir.join("db");
        let snapshot_dir = dir.join("snapshots");
        for d in [dir, &db_dir, &snapshot_dir] {
            std::fs::create_dir_all(d).map_err(|source| StorageError::Dir {
                path: d.clone(),
                source,
            })?;
        }
        let db = sled::Config::new()
            .path(&db_dir)
            .cache_capacity(config.cache_bytes)
            .open()
            .map_err(|source| StorageError::Sled {
                path: db_dir.clone(),
                source,
            })?;
        let sled_err = |source| StorageError::Sled {
            path: db_dir.clone(),
            source,
        };
        let sm_tree = db.open_tree("state").map_err(sled_err)?;
        let queue_dir = dir.join("queues");
        let corrupt = |path: &PathBuf| {
            let path = path.clone();
            move |source| StorageError::Corrupt { path, source }
        };
        let queues = QueueFiles::open(&queue_dir, QUEUE_FILE_BYTES).map_err(corrupt(&queue_dir))?;
        let journal_dir = dir.join("txn-journal");
        let journal = TxnJournal::open(&journal_dir).map_err(corrupt(&journal_dir))?;
        let state_machine = StateMachineStore::open(sm_tree, queues, journal, snapshot_dir)
            .map_err(corrupt(&db_dir))?;
        let snapshots = state_machine.snapshot_source();
        let log_dir = dir.join("raft-log");
        let log = LogStore::open(
            db.clone(),
            db.open_tree("raft_meta").map_err(sled_err)?,
            &log_dir,
            Arc::new(state_machine.checkpointer()),
        )
        .map_err(corrupt(&log_dir))?;
        log.migrate_from_sled_tree("raft_log")
            .map_err(corrupt(&log_dir))?;
        let reader = state_machine.reader();
        let handle = StorageHandle {
            db: db.clone(),
            log: log.clone(),
            reader: reader.clone(),
        };
        Ok(Storage {
            log,
            state_machine,
            reader,
            snapshots,
            handle,
            db,
        })
    }
}
