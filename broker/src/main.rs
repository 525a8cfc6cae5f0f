//! The `txmq` binary.

/// mimalloc instead of glibc's malloc: the write path allocates and frees many small buffers
/// across threads (sled's copy-on-write nodes, decoded entries); measured in
/// docs/performance-history.md (throughput and RSS).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    txmq_broker::cli::main()
}
