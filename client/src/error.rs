//! Client errors: a gRPC status code and a message a person can act on.

/// A request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// A stable machine-readable code, e.g. `invalid_argument`, `not_found`, `unavailable`.
    pub code: String,
    pub message: String,
}

impl ClientError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// True for errors a retry elsewhere may fix (node down, election in progress).
    pub fn is_retryable(&self) -> bool {
        self.code == "unavailable"
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        // Transport failures (connection refused, reset) surface as Unavailable/Unknown with a
        // transport message; both mean "try another node".
        let code = match s.code() {
            tonic::Code::Unknown if s.message().contains("transport") => "unavailable",
            tonic::Code::Cancelled => "unavailable",
            c => txmq_proto::codes::code_name(c),
        };
        if s.message().contains("h2 protocol error") {
            // What a plaintext client gets from a TLS port: the TLS alert is not HTTP/2.
            return ClientError::new(
                code,
                format!(
                    "{}: the server did not answer plaintext gRPC; if it serves TLS, give the CA \
                     that signed its certificate with --tls-ca (TXMQ_TLS_CA)",
                    s.message()
                ),
            );
        }
        ClientError::new(code, s.message().to_string())
    }
}
