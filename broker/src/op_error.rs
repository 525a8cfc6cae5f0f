//! Why an operation failed, in one type for every path: a local proposal, a write forwarded
//! to the leader (the error travels back over the peer API, so it is plain data), and the
//! gRPC status the client finally sees.

use openraft::errors::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use txmq_raft_store::NodeId;

/// Why an operation failed. Travels over the peer API, so it is plain data.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum OpError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeId> },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Internal(String),
}

impl From<OpError> for tonic::Status {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotLeader { .. } => tonic::Status::unavailable(
                "no leader is reachable right now (election in progress?); retry shortly",
            ),
            OpError::Unavailable(m) => tonic::Status::unavailable(m),
            OpError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            OpError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            OpError::Internal(m) => tonic::Status::internal(m),
        }
    }
}

/// A failed Raft write as an [`OpError`].
pub fn write_error(
    e: RaftError<txmq_raft_store::TypeConfig, ClientWriteError<txmq_raft_store::TypeConfig>>,
) -> OpError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => OpError::NotLeader { leader: f.leader_id },
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => OpError::Unavailable(
            "leadership changed while the request was in flight; its outcome is unknown, retry if the operation is idempotent".into(),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => OpError::FailedPrecondition(e.to_string()),
        RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => OpError::FailedPrecondition(e.to_string()),
        RaftError::Fatal(f) => OpError::Unavailable(format!("this node's Raft stopped: {f}")),
    }
}
