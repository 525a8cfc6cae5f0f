//! The txmq node and its command-line interface.
//!
//! Layout: [`node`] runs one node; [`client_service`] and [`peer_service`] are the thin gRPC
//! services ([`txn_service`] holds the transaction handlers); [`scheduler`] runs check-backs
//! and timeout rollbacks on the leader, [`checkers`] tracks connected producer instances;
//! [`proposer`] runs leader-only operations locally or forwards them; [`network`] is
//! openraft's transport; [`rocketmq`] serves the RocketMQ 5 protocol on the same machinery;
//! [`peer_directory`] knows the other nodes' RocketMQ addresses and check-back groups;
//! [`config`] resolves `txmq serve` settings; [`cli`] is the `txmq` binary.

pub mod auth;
pub mod batcher;
pub mod bootstrap;
pub mod checkers;
pub mod cli;
pub mod client_service;
pub mod clock;
pub mod cluster_secret;
pub mod config;
pub mod consume_service;
pub mod convert;
pub mod decision_metrics;
pub mod disk;
pub mod grpc_metrics;
pub mod health;
pub mod http;
pub mod leader_op;
pub mod listener;
pub mod long_poll;
pub mod network;
pub mod node;
pub mod op_error;
pub mod peer_dialer;
pub mod peer_directory;
pub mod peer_limits;
pub mod peer_link;
pub mod peer_payload;
pub mod peer_service;
pub mod proposer;
pub mod repair;
pub mod rocketmq;
pub mod scheduler;
pub mod snapshot_trigger;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod topic_admin;
pub mod txn_service;
