//! gRPC health (`grpc.health.v1`) on the client port: SERVING while this node is ready (knows a
//! leader and has caught up), the same rule as `/readyz`.

use openraft::async_runtime::WatchReceiver;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use txmq_raft_store::Raft;

/// The service name clients can probe besides the overall ("") status.
pub const SERVICE_NAME: &str = "txmq.v1.Txmq";

pub async fn track_readiness(
    raft: Raft,
    disk: std::sync::Arc<crate::disk::DiskMonitor>,
    reporter: HealthReporter,
) {
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let stopped = metrics.borrow_and_update().running_state.is_err();
        metrics::gauge!("txmq_raft_stopped").set(if stopped { 1.0 } else { 0.0 });
        let ready = crate::http::readiness(&raft, &disk).is_ok();
        if last != Some(ready) {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            last = Some(ready);
        }
        // Readiness changes on elections and catch-up, not per commit: look at most ten times
        // a second (the metrics change with every commit).
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio::time::timeout(Duration::from_secs(1), metrics.changed())
            .await
            .is_ok_and(|r| r.is_err())
        {
            return;
        }
    }
}
