//! Generated gRPC code for txmq's two APIs.
//!
//! * [`client`]: the client API (`txmq.v1.Txmq`), served on the client port.
//! * [`peer`]: the peer API (`txmq.peer.v1.Peer`), served on the peer port only.
//! * [`rocketmq`]: the Apache RocketMQ 5 protocol (`apache.rocketmq.v2.MessagingService`),
//!   served on the RocketMQ port for the official RocketMQ clients.
//! * [`codes`]: the stable error code names both sides use.

pub mod codes;

/// The client API.
pub mod client {
    tonic::include_proto!("txmq.v1");
}

/// The peer API (Raft and forwarding).
pub mod peer {
    tonic::include_proto!("txmq.peer.v1");
}

/// The Apache RocketMQ 5 gRPC protocol.
pub mod rocketmq {
    tonic::include_proto!("apache.rocketmq.v2");
}
