//! The HTTP endpoint on `--metrics-addr`: `/metrics` (Prometheus text), `/healthz` (the process
//! is alive; never fails because of quorum loss) and `/readyz` (has a leader and caught up).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use openraft::async_runtime::WatchReceiver;
use tokio::net::TcpListener;
use txmq_raft_store::Raft;

/// How far the applied index may trail the known commit index for the node to be ready.
pub const READY_MAX_APPLY_LAG: u64 = 1000;

/// Whether this node should receive traffic: it knows a leader and has applied (almost) all it
/// knows committed. The reason when not.
pub fn readiness(raft: &Raft) -> Result<(), String> {
    let m = raft.metrics().borrow_watched().clone();
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

#[derive(Clone)]
struct HttpState {
    metrics: Option<PrometheusHandle>,
    raft: Raft,
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match readiness(&state.raft) {
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            metrics: metrics_handle,
            raft,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
