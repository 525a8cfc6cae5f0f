//! The project's own files: checksummed frames, numbered files, the per-queue message files,
//! the transaction journal, and how files are deleted (gradually, by a reaper) and written
//! (trickle-synced snapshots, an idle-priority thread for bursts of CPU).

pub(crate) mod file_reaper;
pub mod file_system;
pub mod frame;
pub(crate) mod gradual_delete;
pub(crate) mod idle_thread;
pub mod numbered_files;
pub mod queue_files;
pub(crate) mod trickle_synced_file;
pub mod txn_journal;
