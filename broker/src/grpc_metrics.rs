//! A tower layer on the client gRPC server: requests by method and code, and latency by method.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{counter, histogram};

/// The client API's methods: the only values the `method` label takes (plus `health` and
/// `unknown`), so a client cannot blow up the label set with made-up paths.
const METHODS: &[&str] = &[
    "CreateTopic",
    "ListTopics",
    "DescribeTopic",
    "Send",
    "SendBatch",
    "Read",
    "SendHalf",
    "EndTransaction",
    "SendHalfBatch",
    "EndTransactionBatch",
    "TransactionBatch",
    "ListTransactions",
    "GetTransaction",
    "CheckChannel",
    "Receive",
    "Ack",
    "ChangeInvisibleDuration",
    "ResetGroup",
    "ConfigureGroup",
    "ListGroups",
    "DescribeGroup",
    "ClusterStatus",
    "AddNode",
    "RemoveNode",
    "DeleteTopic",
    "UpdateTopic",
    "DeleteGroup",
    "GetMessage",
    "StateDigest",
    "CreateUser",
    "DeleteUser",
    "ListUsers",
    "ChangePassword",
    "Grant",
    "Revoke",
    "WhoAmI",
    "CreateAccessKey",
];

fn method_label(path: &str) -> &'static str {
    if path.starts_with("/grpc.health.v1.Health/") {
        return "health";
    }
    let name = path.strip_prefix("/txmq.v1.Txmq/").unwrap_or("");
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("unknown")
}

fn code_label(code: tonic::Code) -> &'static str {
    txmq_proto::codes::code_name(code)
}

/// gRPC's own decoder answers a request over the size limit with OUT_OF_RANGE; to clients a
/// request past a bound is RESOURCE_EXHAUSTED (as the gRPC spec says for message size), the code
/// every other bound of the node uses. Only that answer changes: it is a trailers-only response
/// whose message names the "message length too large".
fn oversized_as_resource_exhausted<RB>(response: &mut http::Response<RB>) {
    let headers = response.headers_mut();
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let is_oversized = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
        && headers.get("grpc-message").is_some_and(|m| {
            String::from_utf8_lossy(m.as_bytes()).contains("length%20too%20large")
        });
    if is_oversized {
        let code = (tonic::Code::ResourceExhausted as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&code) {
            headers.insert("grpc-status", value);
        }
    }
}

#[derive(Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            oversized_as_resource_exhausted(&mut response);
            // Errors are trailers-only responses with grpc-status in the headers; a success
            // carries its status in the trailers, which means OK for unary calls.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(tonic::Code::from)
                .unwrap_or(tonic::Code::Ok);
            counter!("txmq_grpc_requests_total", "method" => method, "code" => code_label(code))
                .increment(1);
            histogram!("txmq_grpc_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label("/txmq.v1.Txmq/Send"), "Send");
        assert_eq!(method_label("/txmq.v1.Txmq/MadeUp123"), "unknown");
        assert_eq!(method_label("/evil/path"), "unknown");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "health");
    }

    /// Every method of the client service gets its own label: a method missing from the list
    /// would be counted as `unknown` (the batch methods once were).
    #[test]
    fn every_client_method_has_a_label() {
        let proto = include_str!("../../proto/proto/txmq/v1/client.proto");
        let rpcs: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .map(str::trim)
            .collect();
        assert!(rpcs.len() >= 20, "found only {rpcs:?} in client.proto");
        for rpc in &rpcs {
            assert_eq!(method_label(&format!("/txmq.v1.Txmq/{rpc}")), *rpc);
        }
        // And no label for a method that no longer exists.
        assert_eq!(METHODS.len(), rpcs.len());
    }
}
