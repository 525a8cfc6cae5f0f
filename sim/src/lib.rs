//! txmq-sim: whole txmq clusters — the real state machine (`txmq-state`) and the real
//! openraft — over simulated time, network and disk, driven by one seed.
//!
//! * [`run::run_seed`] runs one seed: boot, workload under faults ([`faults`]), heal, settle
//!   ([`settle`]), judge ([`checker`]).
//! * The seams: time is Tokio's paused clock on one thread ([`run`]), with openraft's runtime
//!   made deterministic ([`runtime`], [`watch`]); the network is [`net`] (carried to openraft
//!   by [`raft_net`]); the disk is [`disk`]: the real Raft log's segment files on it through
//!   [`sim_fs`] (bytes in a [`file_table`]; see [`log_store`]), and records for the vote, the
//!   purge point and the snapshots of [`state_machine`].
//! * [`bugs`]: the planted bugs, which exist only in this crate.

pub mod bugs;
pub mod checker;
pub mod checks;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod file_table;
pub mod gateway;
pub mod history;
pub mod log_store;
pub mod membership;
pub mod net;
pub mod node;
pub mod raft_net;
pub mod replica;
pub mod rng;
pub mod run;
pub mod runtime;
pub mod scheduler;
pub mod settle;
pub mod sim_fs;
pub mod state_machine;
pub mod state_store;
pub mod trace;
pub mod types;
pub mod watch;
pub mod workload;
