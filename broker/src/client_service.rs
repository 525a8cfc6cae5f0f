//! The client gRPC service. Thin: validate, propose or read, convert.

use tonic::{Request, Response, Status};
use txmq_proto::client as pb;
use txmq_proto::client::txmq_server::Txmq;
use txmq_raft_store::{NodeInfo, Raft, StateReader};
use txmq_state::{CommandResult, Need, Operation};

use crate::auth::Caller;
use crate::consume_service::ConsumeService;
use crate::convert;
use crate::leader_op::LeaderOp;
use crate::proposer::Proposer;
use crate::status::cluster_status;
use crate::txn_service::{CheckStream, TxnService};

/// A consume request's need: its topic in its group.
macro_rules! consume_need {
    () => {
        |r| {
            vec![Need::Consume {
                topic: &r.topic,
                group: &r.group,
            }]
        }
    };
}

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
    pub access: crate::auth::Access,
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
        let req = self.allowed(request, "receive", consume_need!())?;
        Ok(Response::new(self.consume.receive(req).await?))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let req = self.allowed(request, "acknowledge", consume_need!())?;
        Ok(Response::new(self.consume.ack(req).await?))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        let req = self.allowed(request, "change invisibility", consume_need!())?;
        Ok(Response::new(self.consume.change_invisible(req).await?))
    }

    async fn reset_group(
        &self,
        request: Request<pb::ResetGroupRequest>,
    ) -> Result<Response<pb::GroupInfo>, Status> {
        let (caller, req) = self.caller_and(request)?;
        let need = Need::Consume {
            topic: &req.topic,
            group: &req.group,
        };
        self.access.require(&caller, "reset a group", &[need])?;
        let resource = format!("{}/{}", req.group, req.topic);
        let outcome = self.consume.reset(req).await;
        self.access
            .audit(&caller, "reset_group", &resource, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn configure_group(
        &self,
        request: Request<pb::ConfigureGroupRequest>,
    ) -> Result<Response<pb::GroupInfo>, Status> {
        let (caller, req) = self.admin(request, "configure a group")?;
        let resource = format!("{}/{}", req.group, req.topic);
        let outcome = self.consume.configure(req).await;
        self.access
            .audit(&caller, "configure_group", &resource, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let mut list = self.consume.list();
        list.groups.retain(|g| {
            let need = Need::Consume {
                topic: &g.topic,
                group: &g.group,
            };
            self.access.allows(&caller, &need)
        });
        Ok(Response::new(list))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::GroupInfo>, Status> {
        let req = self.allowed(request, "describe a group", consume_need!())?;
        Ok(Response::new(
            self.consume.describe(&req.group, &req.topic)?,
        ))
    }

    async fn send_half(
        &self,
        request: Request<pb::SendHalfRequest>,
    ) -> Result<Response<pb::SendHalfResponse>, Status> {
        let req = self.allowed(request, "send", |r| vec![Need::Produce { topic: &r.topic }])?;
        Ok(Response::new(self.txn.send_half(req).await?))
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        let (caller, req) = self.caller_and(request)?;
        self.may_decide(&caller, std::slice::from_ref(&req))?;
        let operator = req.operator.then(|| req.transaction_id.clone());
        let outcome = self.txn.end_transaction(req).await;
        if let Some(txn) = operator {
            self.access
                .audit(&caller, "operator_decision", &txn, &outcome);
        }
        Ok(Response::new(outcome?))
    }

    async fn send_half_batch(
        &self,
        request: Request<pb::SendHalfBatchRequest>,
    ) -> Result<Response<pb::SendHalfBatchResponse>, Status> {
        let halves = self
            .allowed(request, "send", |r| produce_needs(&r.halves))?
            .halves;
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
        let (caller, req) = self.caller_and(request)?;
        self.may_decide(&caller, &req.ends)?;
        let ends = req.ends;
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
        let (caller, req) = self.caller_and(request)?;
        self.access
            .require(&caller, "send", &produce_needs(&req.halves))?;
        self.may_decide(&caller, &req.ends)?;
        let pb::TransactionBatchRequest { halves, ends } = req;
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
        let (caller, req) = self.caller_and(request)?;
        let mut list = self.txn.list(req);
        list.transactions.retain(|t| {
            let need = Need::Produce { topic: &t.topic };
            self.access.allows(&caller, &need)
        });
        Ok(Response::new(list))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::TransactionInfo>, Status> {
        let (caller, req) = self.caller_and(request)?;
        let info = self.txn.get(&req.transaction_id)?;
        let need = Need::Produce { topic: &info.topic };
        self.access
            .require(&caller, "look at a transaction", &[need])?;
        Ok(Response::new(info))
    }

    async fn check_channel(
        &self,
        request: Request<tonic::Streaming<pb::CheckerMessage>>,
    ) -> Result<Response<Self::CheckChannelStream>, Status> {
        let caller = self.access.caller(&request)?;
        self.access
            .require(&caller, "answer check-backs", &[Need::AnyProduce])?;
        let access = self.access.clone();
        let may_check: crate::checkers::TopicFilter = std::sync::Arc::new(move |topic: &str| {
            access.allows(&caller, &Need::Produce { topic })
        });
        self.txn.check_channel(request, may_check).await
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let (caller, req) = self.admin(request, "create a topic")?;
        let name = req.name.clone();
        let outcome = crate::topic_admin::create_topic(&self.proposer, req).await;
        self.access.audit(&caller, "create_topic", &name, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        let (caller, req) = self.caller_and(request)?;
        let asked = req.message_id;
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
        if let Some(m) = &found {
            let need = Need::Read { topic: &m.topic };
            self.access.require(&caller, "look at a message", &[need])?;
        }
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
        let (caller, req) = self.admin(request, "delete a topic")?;
        let name = req.name;
        let outcome = crate::topic_admin::delete_topic(&self.proposer, name.clone()).await;
        self.access.audit(&caller, "delete_topic", &name, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn update_topic(
        &self,
        request: Request<pb::UpdateTopicRequest>,
    ) -> Result<Response<pb::TopicInfo>, Status> {
        let (caller, r) = self.admin(request, "update a topic")?;
        let name = r.name.clone();
        let outcome = crate::topic_admin::update_topic(&self.proposer, r).await;
        self.access.audit(&caller, "update_topic", &name, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let (caller, r) = self.admin(request, "delete a group")?;
        let resource = format!("{}/{}", r.group, r.topic);
        let outcome = crate::topic_admin::delete_group(&self.proposer, r).await;
        self.access
            .audit(&caller, "delete_group", &resource, &outcome);
        Ok(Response::new(outcome?))
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
        let req = self.allowed(request, "send", |r| vec![Need::Produce { topic: &r.topic }])?;
        let (topic, message) = convert::new_message(req, self.max_message_bytes)?;
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
        let req = self.allowed(request, "send", |r| vec![Need::Produce { topic: &r.topic }])?;
        let (topic, messages) = convert::new_batch(req, self.max_message_bytes)?;
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
        let req = self.allowed(request, "read", |r| vec![Need::Read { topic: &r.topic }])?;
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
        request: Request<pb::StateDigestRequest>,
    ) -> Result<Response<pb::StateDigestResponse>, Status> {
        self.admin(request, "compare replicas")?;
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
        let (caller, req) = self.admin(request, "add a node")?;
        let resource = format!("node {}", req.id);
        let outcome = self.add(req).await;
        self.access.audit(&caller, "add_node", &resource, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let (caller, req) = self.admin(request, "remove a node")?;
        let id = req.id;
        let outcome = self
            .proposer
            .execute(LeaderOp::RemoveNode { id })
            .await
            .map_err(Status::from);
        self.access
            .audit(&caller, "remove_node", &format!("node {id}"), &outcome);
        outcome?;
        let status = self.status().await;
        Ok(Response::new(pb::RemoveNodeResponse {
            status: Some(status),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let (caller, req) = self.admin(request, "create users")?;
        let name = req.name.clone();
        let outcome = self.users().create(req).await;
        self.access.audit(&caller, "create_user", &name, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let (caller, req) = self.admin(request, "delete users")?;
        let name = req.name.clone();
        let outcome = self.users().delete(req.name).await;
        self.access.audit(&caller, "delete_user", &name, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.admin(request, "list users")?;
        Ok(Response::new(self.users().list()))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let (caller, req) = self.admin(request, "change passwords")?;
        let name = req.name.clone();
        let outcome = self.users().change_password(req).await;
        self.access
            .audit(&caller, "change_password", &name, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let (caller, req) = self.admin(request, "grant rights")?;
        let resource = right_resource(&req.user, req.right.as_ref());
        let outcome = self.users().grant(req.user, req.right, true).await;
        self.access.audit(&caller, "grant", &resource, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let (caller, req) = self.admin(request, "revoke rights")?;
        let resource = right_resource(&req.user, req.right.as_ref());
        let outcome = self.users().grant(req.user, req.right, false).await;
        self.access.audit(&caller, "revoke", &resource, &outcome);
        Ok(Response::new(outcome?))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let caller = self.access.caller(&request)?;
        Ok(Response::new(self.users().who_am_i(&caller)))
    }

    async fn create_access_key(
        &self,
        request: Request<pb::CreateAccessKeyRequest>,
    ) -> Result<Response<pb::AccessKeyResponse>, Status> {
        let (caller, req) = self.admin(request, "make access keys")?;
        let name = req.name.clone();
        let outcome = self.users().create_access_key(req).await;
        self.access
            .audit(&caller, "create_access_key", &name, &outcome);
        Ok(Response::new(outcome?))
    }
}

impl ClientService {
    /// The request's body, when its caller may do every one of `needs`.
    fn allowed<T>(
        &self,
        request: Request<T>,
        action: &str,
        needs: impl for<'a> FnOnce(&'a T) -> Vec<Need<'a>>,
    ) -> Result<T, Status> {
        let caller = self.access.caller(&request)?;
        self.access
            .require(&caller, action, &needs(request.get_ref()))?;
        Ok(request.into_inner())
    }

    /// The caller and the body of a request that an administrator must make.
    fn admin<T>(&self, request: Request<T>, action: &str) -> Result<(Caller, T), Status> {
        let caller = self.access.caller(&request)?;
        self.access.require(&caller, action, &[Need::Admin])?;
        Ok((caller, request.into_inner()))
    }

    fn caller_and<T>(&self, request: Request<T>) -> Result<(Caller, T), Status> {
        Ok((self.access.caller(&request)?, request.into_inner()))
    }

    /// Decisions need produce on their transactions' topics; an operator's needs admin.
    fn may_decide(
        &self,
        caller: &Caller,
        ends: &[pb::EndTransactionRequest],
    ) -> Result<(), Status> {
        if !self.access.authentication() {
            return Ok(());
        }
        let topics: Vec<Option<String>> = ends
            .iter()
            .map(|e| self.reader.transaction_topic(&e.transaction_id))
            .collect();
        let needs: Vec<Need<'_>> = ends
            .iter()
            .zip(&topics)
            .map(|(end, topic)| match (end.operator, topic) {
                (true, _) => Need::Admin,
                (false, Some(topic)) => Need::Produce { topic },
                (false, None) => Need::AnyProduce,
            })
            .collect();
        self.access.require(caller, "decide a transaction", &needs)
    }

    fn users(&self) -> crate::auth::users::Users<'_> {
        crate::auth::users::Users::new(&self.proposer, &self.reader)
    }

    async fn add(&self, req: pb::AddNodeRequest) -> Result<pb::AddNodeResponse, Status> {
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
        Ok(pb::AddNodeResponse {
            status: Some(self.status().await),
        })
    }
}

fn produce_needs(halves: &[pb::SendHalfRequest]) -> Vec<Need<'_>> {
    halves
        .iter()
        .map(|h| Need::Produce { topic: &h.topic })
        .collect()
}

/// "user: right" for the audit log.
fn right_resource(user: &str, right: Option<&pb::AccessRight>) -> String {
    match right {
        Some(r) => format!("{user}: {} {} {}", r.kind, r.topics, r.groups)
            .trim_end()
            .to_string(),
        None => user.to_string(),
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
