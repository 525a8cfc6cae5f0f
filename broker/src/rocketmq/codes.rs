//! RocketMQ status codes: every RocketMQ response carries a `Status` whose code is the
//! protocol's own (`OK` is 20000), and the clients act on it (they raise on anything but OK,
//! MULTIPLE_RESULTS and MESSAGE_NOT_FOUND). txmq's services answer gRPC statuses; this is the
//! one place that translates them.

use tonic::Code as GrpcCode;
use txmq_proto::rocketmq::{Code, Status};

pub fn ok() -> Option<Status> {
    Some(Status {
        code: Code::Ok as i32,
        message: "OK".to_string(),
    })
}

pub fn status(code: Code, message: impl Into<String>) -> Option<Status> {
    Some(Status {
        code: code as i32,
        message: message.into(),
    })
}

/// The RocketMQ status for a txmq service error. `not_found` is the code the operation's
/// NOT_FOUND means (a topic for sends and routes, a receipt handle for acks).
pub fn from_grpc(error: &tonic::Status, not_found: Code) -> Option<Status> {
    let code = match error.code() {
        GrpcCode::NotFound => not_found,
        GrpcCode::InvalidArgument | GrpcCode::OutOfRange => Code::BadRequest,
        GrpcCode::FailedPrecondition => Code::PreconditionFailed,
        GrpcCode::AlreadyExists => Code::BadRequest,
        GrpcCode::PermissionDenied => Code::Forbidden,
        GrpcCode::Unauthenticated => Code::Unauthorized,
        GrpcCode::ResourceExhausted => Code::TooManyRequests,
        GrpcCode::DeadlineExceeded => Code::ProxyTimeout,
        GrpcCode::Unavailable => Code::HaNotAvailable,
        GrpcCode::Unimplemented => Code::NotImplemented,
        _ => Code::InternalServerError,
    };
    status(code, error.message())
}

/// The answer for an RPC txmq does not serve.
pub fn not_implemented(rpc: &str) -> Option<Status> {
    status(
        Code::NotImplemented,
        format!("txmq does not serve {rpc} (docs/rocketmq.md lists what it serves)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_is_the_protocols_20000_and_errors_map_to_its_codes() {
        assert_eq!(ok().map(|s| s.code), Some(20000));
        let missing = tonic::Status::not_found("topic 'x' does not exist");
        let mapped = from_grpc(&missing, Code::TopicNotFound).expect("status");
        assert_eq!(mapped.code, 40402);
        assert!(mapped.message.contains("topic 'x'"));
        let busy = tonic::Status::resource_exhausted("full");
        assert_eq!(
            from_grpc(&busy, Code::NotFound).map(|s| s.code),
            Some(42900)
        );
        assert_eq!(not_implemented("PullMessage").map(|s| s.code), Some(50100));
    }
}
