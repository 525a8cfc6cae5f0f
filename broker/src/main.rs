//! The `txmq` binary.

fn main() -> std::process::ExitCode {
    txmq_broker::cli::main()
}
