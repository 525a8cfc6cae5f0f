//! The client gRPC service. Thin: validate, propose or read, convert.

use tonic::{Request, Response, Status};
use txmq_proto::client as pb;
use txmq_proto::client::txmq_server::Txmq;
use txmq_raft_store::{NodeInfo, Raft, StateReader};
use txmq_state::{CommandResult, Operation, limits};

use crate::consume_service::ConsumeService;
use crate::convert;
use crate::leader_op::LeaderOp;
use crate::proposer::Proposer;
use crate::status::cluster_status;
use crate::txn_service::{CheckStream, TxnService};

/// The default number of messages a read returns.
const DEFAULT_READ: usize = 32;

pub struct ClientService {
    pub raft: Raft,
    pub proposer: Proposer,
    pub reader: StateReader,
    pub max_message_bytes: usize,
    pub client_addr: String,
    pub peer_addr: String,
    pub txn: TxnService,
    pub routes: std::sync::Arc<crate::network::PeerRoutes>,
    pub consume: ConsumeService,
    pub disk: std::sync::Arc<crate::disk::DiskMonitor>,
}

impl ClientService {
    /// Every member's status, as this node sees it.
    async fn status(&self) -> pb::ClusterStatusResponse {
        cluster_status(
            &self.raft,
            &self.routes,
            &self.disk,
            &self.client_addr,
            &self.peer_addr,
        )
        .await
    }
}

#[tonic::async_trait]
impl Txmq for ClientService {
    type CheckChannelStream = CheckStream;

    async fn receive(
        &self,
        request: Request<pb::ReceiveRequest>,
    ) -> Result<Response<pb::ReceiveResponse>, Status> {
        Ok(Response::new(
            self.consume.receive(request.into_inner()).await?,
        ))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        Ok(Response::new(self.consume.ack(request.into_inner()).await?))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        Ok(Response::new(
            self.consume.change_invisible(request.into_inner()).await?,
        ))
    }

    async fn reset_group(
        &self,
        request: Request<pb::ResetGroupRequest>,
    ) -> Result<Response<pb::GroupInfo>, Status> {
        Ok(Response::new(
            self.consume.reset(request.into_inner()).await?,
        ))
    }

    async fn configure_group(
        &self,
        request: Request<pb::ConfigureGroupRequest>,
    ) -> Result<Response<pb::GroupInfo>, Status> {
        Ok(Response::new(
            self.consume.configure(request.into_inner()).await?,
        ))
    }

    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        Ok(Response::new(self.consume.list()))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::GroupInfo>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.consume.describe(&req.group, &req.topic)?,
        ))
    }

    async fn send_half(
        &self,
        request: Request<pb::SendHalfRequest>,
    ) -> Result<Response<pb::SendHalfResponse>, Status> {
        Ok(Response::new(
            self.txn.send_half(request.into_inner()).await?,
        ))
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        Ok(Response::new(
            self.txn.end_transaction(request.into_inner()).await?,
        ))
    }

    async fn send_half_batch(
        &self,
        request: Request<pb::SendHalfBatchRequest>,
    ) -> Result<Response<pb::SendHalfBatchResponse>, Status> {
        let halves = request.into_inner().halves;
        convert::check_batch_len(halves.len())?;
        let outcomes = self
            .txn
            .send_half_batch(halves)
            .await
            .into_iter()
            .map(half_outcome)
            .collect();
        Ok(Response::new(pb::SendHalfBatchResponse { outcomes }))
    }

    async fn end_transaction_batch(
        &self,
        request: Request<pb::EndTransactionBatchRequest>,
    ) -> Result<Response<pb::EndTransactionBatchResponse>, Status> {
        let ends = request.into_inner().ends;
        convert::check_batch_len(ends.len())?;
        let outcomes = self
            .txn
            .end_transaction_batch(ends)
            .await
            .into_iter()
            .map(end_outcome)
            .collect();
        Ok(Response::new(pb::EndTransactionBatchResponse { outcomes }))
    }

    async fn transaction_batch(
        &self,
        request: Request<pb::TransactionBatchRequest>,
    ) -> Result<Response<pb::TransactionBatchResponse>, Status> {
        let pb::TransactionBatchRequest { halves, ends } = request.into_inner();
        convert::check_batch_len(halves.len() + ends.len())?;
        let (halves, ends) = self.txn.transaction_batch(halves, ends).await;
        Ok(Response::new(pb::TransactionBatchResponse {
            halves: halves.into_iter().map(half_outcome).collect(),
            ends: ends.into_iter().map(end_outcome).collect(),
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        Ok(Response::new(self.txn.list(request.into_inner())))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::TransactionInfo>, Status> {
        Ok(Response::new(
            self.txn.get(&request.into_inner().transaction_id)?,
        ))
    }

    async fn check_channel(
        &self,
        request: Request<tonic::Streaming<pb::CheckerMessage>>,
    ) -> Result<Response<Self::CheckChannelStream>, Status> {
        self.txn.check_channel(request).await
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let spec = convert::topic_spec(request.into_inner())?;
        match self.proposer.write(Operation::CreateTopic(spec)).await? {
            CommandResult::TopicCreated(meta) => Ok(Response::new(pb::CreateTopicResponse {
                topic: Some(convert::topic_info(&meta)),
            })),
            other => Err(convert::unexpected(other)),
        }
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        let asked = request.into_inner().message_id;
        let id = asked
            .strip_prefix('T')
            .unwrap_or(&asked)
            .to_ascii_uppercase();
        if id.len() != 24 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(format!(
                "'{asked}' is not a message id (24 hex digits, as `txmq send` prints them)"
            )));
        }
        let found = self
            .reader
            .find_message(&id)
            .map_err(convert::read_status)?;
        let transaction = self
            .reader
            .transaction(&format!("T{id}"))
            .map(|r| crate::txn_service::transaction_info(&r, crate::clock::now_ms()));
        match found {
            Some(m) => Ok(Response::new(pb::GetMessageResponse {
                message: Some(convert::message_to_pb(m)),
                transaction,
            })),
            None => Err(Status::not_found(not_found_message(
                &id,
                transaction.as_ref(),
            ))),
        }
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        limits::validate_name("topic", &name).map_err(Status::invalid_argument)?;
        match self.proposer.write(Operation::DeleteTopic { name }).await? {
            CommandResult::TopicDeleted { messages } => {
                Ok(Response::new(pb::DeleteTopicResponse { messages }))
            }
            other => Err(convert::unexpected(other)),
        }
    }

    async fn update_topic(
        &self,
        request: Request<pb::UpdateTopicRequest>,
    ) -> Result<Response<pb::TopicInfo>, Status> {
        let r = request.into_inner();
        limits::validate_name("topic", &r.name).map_err(Status::invalid_argument)?;
        if r.retention_ms.is_none() && r.retention_bytes.is_none() {
            return Err(Status::invalid_argument(
                "nothing to update: give a retention time and/or size",
            ));
        }
        if r.retention_ms == Some(0) {
            return Err(Status::invalid_argument("a retention time must be above 0"));
        }
        let op = Operation::UpdateTopic {
            name: r.name,
            retention_ms: r.retention_ms,
            retention_bytes: r.retention_bytes,
        };
        match self.proposer.write(op).await? {
            CommandResult::TopicUpdated(meta) => Ok(Response::new(convert::topic_info(&meta))),
            other => Err(convert::unexpected(other)),
        }
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let r = request.into_inner();
        limits::validate_name("consumer group", &r.group).map_err(Status::invalid_argument)?;
        limits::validate_name("topic", &r.topic).map_err(Status::invalid_argument)?;
        let op = Operation::DeleteGroup {
            group: r.group,
            topic: r.topic,
        };
        match self.proposer.write(op).await? {
            CommandResult::GroupDeleted => Ok(Response::new(pb::DeleteGroupResponse {})),
            other => Err(convert::unexpected(other)),
        }
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self
            .reader
            .topics()
            .iter()
            .map(convert::topic_info)
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::TopicInfo>, Status> {
        let name = request.into_inner().name;
        match self.reader.topic(&name) {
            Some(meta) => Ok(Response::new(convert::topic_info(&meta))),
            None => Err(Status::not_found(format!("topic '{name}' does not exist"))),
        }
    }

    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let (topic, message) = convert::new_message(request.into_inner(), self.max_message_bytes)?;
        let body_len = message.body.len() as u64;
        let op = Operation::Publish {
            topic: topic.clone(),
            messages: vec![message],
        };
        match self.proposer.write(op).await? {
            CommandResult::Published(mut positions) if positions.len() == 1 => {
                let p = positions.remove(0);
                metrics::counter!("txmq_messages_produced_total", "type" => "normal").increment(1);
                metrics::counter!("txmq_messages_produced_bytes_total").increment(body_len);
                Ok(Response::new(pb::SendResponse {
                    message_id: p.message_id,
                    topic,
                    queue: p.queue,
                    offset: p.offset,
                }))
            }
            other => Err(convert::unexpected(other)),
        }
    }

    async fn send_batch(
        &self,
        request: Request<pb::SendBatchRequest>,
    ) -> Result<Response<pb::SendBatchResponse>, Status> {
        let (topic, messages) = convert::new_batch(request.into_inner(), self.max_message_bytes)?;
        let (count, bytes) = (
            messages.len(),
            messages.iter().map(|m| m.body.len() as u64).sum::<u64>(),
        );
        let op = Operation::Publish {
            topic: topic.clone(),
            messages,
        };
        match self.proposer.write(op).await? {
            CommandResult::Published(positions) if positions.len() == count => {
                metrics::counter!("txmq_messages_produced_total", "type" => "normal")
                    .increment(count as u64);
                metrics::counter!("txmq_messages_produced_bytes_total").increment(bytes);
                Ok(Response::new(pb::SendBatchResponse {
                    topic,
                    positions: positions
                        .into_iter()
                        .map(|p| pb::MessagePosition {
                            message_id: p.message_id,
                            queue: p.queue,
                            offset: p.offset,
                        })
                        .collect(),
                }))
            }
            other => Err(convert::unexpected(other)),
        }
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let req = request.into_inner();
        let max = if req.max == 0 {
            DEFAULT_READ
        } else {
            req.max as usize
        };
        let messages = self
            .reader
            .read_bounded(
                &req.topic,
                req.queue,
                req.from_offset,
                max,
                self.max_message_bytes,
            )
            .map_err(convert::read_status)?
            .into_iter()
            .map(convert::message_to_pb)
            .collect();
        Ok(Response::new(pb::ReadResponse { messages }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.status().await))
    }

    async fn state_digest(
        &self,
        _request: Request<pb::StateDigestRequest>,
    ) -> Result<Response<pb::StateDigestResponse>, Status> {
        let (applied_index, digest) = self
            .reader
            .applied_digest()
            .map_err(|e| Status::internal(e.to_string()))?;
        let node_id = *self.raft.node_id();
        Ok(Response::new(pb::StateDigestResponse {
            node_id,
            applied_index,
            digest,
        }))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let req = request.into_inner();
        if req.peer_addr.is_empty() {
            return Err(Status::invalid_argument(
                "add-node needs the new node's peer address (--peer-addr host:port)",
            ));
        }
        let info = NodeInfo {
            peer_addr: req.peer_addr,
            client_addr: req.client_addr,
        };
        self.proposer
            .execute(LeaderOp::AddNode {
                id: req.id,
                info,
                learner_only: req.learner_only,
                fresh: false,
            })
            .await?;
        let status = self.status().await;
        Ok(Response::new(pb::AddNodeResponse {
            status: Some(status),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let id = request.into_inner().id;
        self.proposer.execute(LeaderOp::RemoveNode { id }).await?;
        let status = self.status().await;
        Ok(Response::new(pb::RemoveNodeResponse {
            status: Some(status),
        }))
    }
}

/// One failed item of a batch, with the same code a single request would have failed with.
fn failure(status: &Status) -> pb::Failure {
    pb::Failure {
        code: txmq_proto::codes::code_name(status.code()).to_string(),
        message: status.message().to_string(),
    }
}

fn half_outcome(r: Result<pb::SendHalfResponse, Status>) -> pb::SendHalfOutcome {
    pb::SendHalfOutcome {
        result: Some(match r {
            Ok(half) => pb::send_half_outcome::Result::Half(half),
            Err(status) => pb::send_half_outcome::Result::Error(failure(&status)),
        }),
    }
}

fn end_outcome(r: Result<pb::EndTransactionResponse, Status>) -> pb::EndTransactionOutcome {
    pb::EndTransactionOutcome {
        result: Some(match r {
            Ok(end) => pb::end_transaction_outcome::Result::End(end),
            Err(status) => pb::end_transaction_outcome::Result::Error(failure(&status)),
        }),
    }
}

/// Why a message id found nothing, as precisely as the node knows.
fn not_found_message(id: &str, transaction: Option<&pb::TransactionInfo>) -> String {
    match transaction {
        Some(t) => format!(
            "message {id} is transaction T{id}'s, which is {}: its message is not visible",
            t.state
        ),
        None => format!(
            "no retained message has id {id} on this node (never sent, removed by retention or \
             with its topic, or this node has not caught up)"
        ),
    }
}
