//! The RocketMQ listener's metrics: requests by RPC and RocketMQ status code, open Telemetry
//! streams (one per connected client), check-backs pushed over them. gRPC-level counts of the
//! port are not separate: its requests are counted here, by the protocol's own codes.

use txmq_proto::rocketmq::Status;

/// Counts one answered request.
pub fn request(rpc: &'static str, status: &Option<Status>) {
    let code = status.as_ref().map_or(0, |s| s.code);
    metrics::counter!("txmq_rocketmq_requests_total", "rpc" => rpc, "code" => code.to_string())
        .increment(1);
}

/// A Telemetry stream of a client of this type (the protocol's name, e.g. `PRODUCER`) that
/// announced itself (+1) or closed (-1).
pub fn client_connected(client_type: &'static str, delta: i32) {
    metrics::gauge!("txmq_rocketmq_telemetry_streams", "client_type" => client_type)
        .increment(f64::from(delta));
}

pub fn check_pushed() {
    metrics::counter!("txmq_rocketmq_checks_pushed_total").increment(1);
}
