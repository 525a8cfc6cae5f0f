//! The HTTP endpoint on `--metrics-addr`: `/metrics` (Prometheus text), `/healthz` (the process
//! is alive and its Raft running; never fails because of quorum loss) and `/readyz` (has a
//! leader, caught up, storage writable).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use tokio::net::TcpListener;
use txmq_raft_store::Raft;

use crate::disk::DiskMonitor;

/// How far the applied index may trail the known commit index for the node to be ready.
pub const READY_MAX_APPLY_LAG: u64 = 1000;

/// Whether this node should receive traffic: it knows a leader and has applied (almost) all it
/// knows committed. The reason when not.
pub fn readiness(raft: &Raft, disk: &DiskMonitor) -> Result<(), String> {
    let m = raft.metrics().borrow_watched().clone();
    if let Err(fatal) = &m.running_state {
        return Err(stopped_reason(fatal));
    }
    if let Some(full) = disk.full_reason() {
        return Err(full);
    }
    if m.current_leader.is_none() {
        return Err("no leader known (election in progress, or no quorum reachable)".into());
    }
    if m.state == openraft::ServerState::Leader && m.membership_config.voter_ids().count() > 1 {
        // A leader cut off from its followers keeps believing it leads; it is not ready once no
        // majority acknowledged it for a few election timeouts.
        let limit = std::time::Duration::from_millis(raft.config().election_timeout_max * 3);
        match &m.last_quorum_acked {
            Some(at) if openraft::Instant::elapsed(&**at) <= limit => {}
            _ => {
                return Err("leader without a quorum: no majority acknowledged it recently".into());
            }
        }
    }
    let committed = m.local_committed.map(|c| c.index).unwrap_or(0);
    let applied = m.last_applied.map(|c| c.index).unwrap_or(0);
    if applied + READY_MAX_APPLY_LAG < committed {
        return Err(format!(
            "catching up: applied {applied} of {committed} committed entries"
        ));
    }
    Ok(())
}

fn stopped_reason(fatal: &impl std::fmt::Display) -> String {
    format!(
        "raft stopped: {fatal} (a storage failure or a bug, see the log); this node cannot \
         recover by itself: restart it"
    )
}

#[derive(Clone)]
struct HttpState {
    metrics: Option<PrometheusHandle>,
    raft: Raft,
    disk: Arc<DiskMonitor>,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    match &state.metrics {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed in this process\n",
        )
            .into_response(),
    }
}

/// Alive unless Raft stopped for good (a fatal storage error): then only a restart helps.
async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    match &state.raft.metrics().borrow_watched().running_state {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", stopped_reason(fatal)),
        ),
    }
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match readiness(&state.raft, &state.disk) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics_handle: Option<PrometheusHandle>,
    raft: Raft,
    disk: Arc<DiskMonitor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            metrics: metrics_handle,
            raft,
            disk,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
