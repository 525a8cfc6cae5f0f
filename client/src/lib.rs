//! The txmq Rust client.
//!
//! [`Client`] talks to any node of a cluster. Requests that fail because a node is down or the
//! cluster is electing a leader are retried transparently on the other endpoints until a
//! deadline; any other error (bad input, unknown topic, ...) is returned at once.
//!
//! ```no_run
//! use txmq_client::SendRequestExt;
//! # async fn demo() -> Result<(), txmq_client::ClientError> {
//! let client = txmq_client::Client::new(["127.0.0.1:9870", "127.0.0.1:9880"])?;
//! client.create_topic("orders", txmq_client::TopicType::Normal, 4).await?;
//! let sent = client.send(txmq_client::SendRequest::new("orders", "hello")).await?;
//! println!("{} at queue {} offset {}", sent.message_id, sent.queue, sent.offset);
//! # Ok(()) }
//! ```

mod batcher;
mod client;
mod consumer;
mod error;
mod publisher;
mod security;
mod transaction;
mod users;

pub use batcher::BatchOptions;
pub use client::{Client, ClientOptions, TransactionBatchResults, credentials_in_clear};
pub use consumer::{ConsumeResult, PushConsumer, PushOptions};
pub use error::ClientError;
pub use publisher::Publisher;
pub use security::{ClientTls, Credentials};
pub use transaction::{
    CheckerHandle, LocalTransactionState, TransactionChecker, TransactionProducer,
    TransactionResult,
};
pub use txmq_proto::client::{
    AccessKeyResponse, AccessRight, AckResult, AddNodeRequest, BatchMessage, CheckRequest,
    ClusterStatusResponse, CreateAccessKeyRequest, CreateTopicRequest, EndTransactionRequest,
    EndTransactionResponse, GroupInfo, GroupQueueInfo, ListTransactionsResponse, Message,
    NodeStatus, QueueInfo, ReadRequest, ReceiveRequest, ResetGroupRequest, SendBatchRequest,
    SendBatchResponse, SendHalfRequest, SendHalfResponse, SendRequest, SendResponse, TopicInfo,
    TopicType, TransactionEvent, TransactionInfo, UpdateTopicRequest, UserInfo,
    reset_group_request,
};
pub use txmq_proto::codes::code_name as error_code_name;

/// Convenience constructors for requests.
pub trait SendRequestExt {
    fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self;
}

impl SendRequestExt for SendRequest {
    fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        SendRequest {
            topic: topic.into(),
            body: body.into().into(),
            ..Default::default()
        }
    }
}
