//! `txmq serve`: logging setup and running one node until SIGINT/SIGTERM.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs, ServeConfig};
use crate::node::{self, Listeners};

/// Openraft's heartbeat worker logs a WARN for every heartbeat a down peer misses (ten a
/// second per peer); `peer_link` logs the peer's going, coming back and a reminder instead.
/// Applied unless the filter names this target itself.
const QUIET_HEARTBEATS: &str = "openraft::core::heartbeat=error";

pub fn init_logging(config: &ServeConfig) {
    let (filter, text) = match std::env::var("RUST_LOG") {
        Ok(text) => (EnvFilter::try_new(&text), text),
        Err(_) => (
            EnvFilter::try_new(&config.log_level),
            config.log_level.clone(),
        ),
    };
    let mut filter = filter.unwrap_or_else(|_| EnvFilter::new("info"));
    if !text.contains("openraft::core::heartbeat")
        && let Ok(directive) = QUIET_HEARTBEATS.parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files or a collector's input.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Panics also go to the log as an ERROR event with their location: a pipeline that keeps only
/// the JSON log lines would otherwise drop the one line that explains why a node stopped.
fn log_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(target: "txmq::panic", %location, thread = thread.name().unwrap_or("unnamed"), "panic: {message}");
        default_hook(info);
    }));
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("txmq serve: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    log_panics();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("txmq serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        node::run(config, listeners, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("txmq serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
