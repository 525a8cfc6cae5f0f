//! The project's own files: checksummed frames, numbered files, the per-queue message files,
//! the transaction journal, and how files are deleted (gradually, by a reaper) and written
//! (trickle-synced snapshots, an idle-priority thread for bursts of CPU).

pub mod file_reaper;
pub mod frame;
pub mod gradual_delete;
pub mod idle_thread;
pub mod numbered_files;
pub mod queue_files;
pub mod trickle_synced_file;
pub mod txn_journal;
