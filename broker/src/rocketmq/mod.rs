//! The Apache RocketMQ 5 gRPC protocol (`apache.rocketmq.v2.MessagingService`) on its own
//! port, so applications written against the official RocketMQ clients use txmq by changing
//! their endpoint.
//!
//! Not a second broker: every RPC is translated into the client API's own request and served
//! by the same handlers ([`ClientService`]), so topics, transactions (half messages, decisions,
//! checks, timeouts), consumer groups, leases, redelivery and dead letters behave exactly as
//! through txmq's API. What is particular to the protocol lives here: its status codes
//! ([`codes`]), its message form ([`convert`]), routes ([`route`]), the receive stream
//! ([`receive`]) and Telemetry, the producers' check-back channel ([`telemetry`]).
//! docs/rocketmq.md is the compatibility table.

pub mod codes;
pub mod convert;
pub mod dead_letter;
pub mod metrics;
pub mod receive;
pub mod route;
pub mod send;
pub mod signature;
pub mod telemetry;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};
use txmq_proto::client as pb;
use txmq_proto::client::txmq_server::Txmq;
use txmq_proto::rocketmq as rmq;
use txmq_proto::rocketmq::Code;
use txmq_proto::rocketmq::messaging_service_server::MessagingService;

use crate::auth::Caller;
use crate::client_service::ClientService;
use crate::peer_directory::PeerDirectory;
use telemetry::{TelemetryContext, TelemetryStream};

/// The metadata header every official client sends with its instance id.
const CLIENT_ID_HEADER: &str = "x-mq-client-id";

pub struct RocketmqService {
    /// The client API's handlers, which serve every translated request.
    pub native: Arc<ClientService>,
    /// The other nodes' RocketMQ addresses.
    pub directory: Arc<PeerDirectory>,
    /// This node's advertised RocketMQ address.
    pub own_addr: String,
    pub telemetry: TelemetryContext,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn once<T: Send + 'static>(items: Vec<T>) -> Response<ResponseStream<T>> {
    Response::new(Box::pin(futures::stream::iter(items.into_iter().map(Ok))))
}

/// The client instance's id every official client sends.
fn client_id<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_string)
}

fn name(resource: &Option<rmq::Resource>) -> String {
    resource
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default()
}

fn namespace(resource: &Option<rmq::Resource>) -> String {
    resource
        .as_ref()
        .map(|r| r.resource_namespace.clone())
        .unwrap_or_default()
}

/// A request to the client API's handlers, on behalf of `caller`.
fn native<T>(caller: &Caller, body: T) -> Request<T> {
    let mut request = Request::new(body);
    request.extensions_mut().insert(caller.clone());
    request
}

impl RocketmqService {
    /// Who a request acts as: anyone when txmq's authentication is off, else the user its
    /// signature proves ([`signature`]); otherwise UNAUTHORIZED.
    fn caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, Option<rmq::Status>> {
        if !self.native.access.authentication() {
            return Ok(Caller::Anonymous);
        }
        signature::verify(metadata, &self.native.reader)
            .map(Caller::User)
            .map_err(|why| {
                tracing::info!(target: "txmq::audit", outcome = "unauthenticated", "RocketMQ request refused: {why}");
                codes::status(Code::Unauthorized, why)
            })
    }

    fn queues(
        &self,
        topic: &Option<rmq::Resource>,
    ) -> Result<Vec<rmq::MessageQueue>, Option<rmq::Status>> {
        let requested = topic.clone().unwrap_or_default();
        let Some(meta) = self.native.reader.topic(&requested.name) else {
            return Err(codes::status(
                Code::TopicNotFound,
                format!(
                    "topic '{}' does not exist; create it with `txmq topic create {} --type \
                     normal|transaction`",
                    requested.name, requested.name
                ),
            ));
        };
        let brokers = route::brokers(&self.own_addr, &self.directory.rocketmq_addrs());
        Ok(route::message_queues(&meta, requested, &brokers))
    }

    /// Acknowledges (through the native API) messages a tag filter kept from the consumer.
    async fn ack_filtered(&self, caller: &Caller, group: &str, topic: &str, handles: Vec<String>) {
        if handles.is_empty() {
            return;
        }
        let request = native(
            caller,
            pb::AckRequest {
                group: group.to_string(),
                topic: topic.to_string(),
                receipt_handles: handles,
            },
        );
        if let Err(e) = self.native.ack(request).await {
            tracing::warn!(%group, %topic, "acknowledging messages the tag filter skipped: {}", e.message());
        }
    }

    async fn receive(
        &self,
        caller: Result<Caller, Option<rmq::Status>>,
        req: rmq::ReceiveMessageRequest,
    ) -> Vec<rmq::ReceiveMessageResponse> {
        use rmq::receive_message_response::Content;
        let failed = |status: Option<rmq::Status>| {
            vec![rmq::ReceiveMessageResponse {
                content: Some(Content::Status(status.unwrap_or_default())),
            }]
        };
        let caller = match caller {
            Ok(c) => c,
            Err(status) => return failed(status),
        };
        let filter = match receive::TagFilter::parse(req.filter_expression.as_ref()) {
            Ok(f) => f,
            Err(e) => return failed(codes::status(Code::IllegalFilterExpression, e)),
        };
        let native = match receive::native_request(&req) {
            Ok(n) => n,
            Err(e) => return failed(codes::status(Code::BadRequest, e)),
        };
        let (group, topic, invisible_ms) = (
            native.group.clone(),
            native.topic.clone(),
            native.invisible_ms,
        );
        let received = match self.native.receive(self::native(&caller, native)).await {
            Ok(r) => r.into_inner().messages,
            Err(e) => return failed(codes::from_grpc(&e, Code::TopicNotFound)),
        };
        let (admitted, skipped): (Vec<pb::Message>, Vec<pb::Message>) =
            received.into_iter().partition(|m| filter.admits(&m.tag));
        self.ack_filtered(
            &caller,
            &group,
            &topic,
            skipped.into_iter().map(|m| m.receipt_handle).collect(),
        )
        .await;
        let ns = req
            .message_queue
            .as_ref()
            .map(|q| namespace(&q.topic))
            .unwrap_or_default();
        receive::responses(admitted, invisible_ms, &ns)
    }

    async fn ack(&self, caller: &Caller, req: rmq::AckMessageRequest) -> rmq::AckMessageResponse {
        let handles: Vec<String> = req
            .entries
            .iter()
            .map(|e| e.receipt_handle.clone())
            .collect();
        let request = native(
            caller,
            pb::AckRequest {
                group: name(&req.group),
                topic: name(&req.topic),
                receipt_handles: handles,
            },
        );
        let results = match self.native.ack(request).await {
            Ok(r) => r.into_inner().results,
            Err(e) => {
                return rmq::AckMessageResponse {
                    status: codes::from_grpc(&e, Code::InvalidReceiptHandle),
                    entries: Vec::new(),
                };
            }
        };
        let entries: Vec<rmq::AckMessageResultEntry> = req
            .entries
            .into_iter()
            .zip(results)
            .map(|(entry, result)| rmq::AckMessageResultEntry {
                status: ack_status(&result.outcome),
                message_id: entry.message_id,
                receipt_handle: entry.receipt_handle,
            })
            .collect();
        rmq::AckMessageResponse {
            status: send::overall(entries.iter().map(|e| &e.status)),
            entries,
        }
    }

    async fn end_transaction(
        &self,
        caller: &Caller,
        req: rmq::EndTransactionRequest,
    ) -> Option<rmq::Status> {
        let decision = match rmq::TransactionResolution::try_from(req.resolution) {
            Ok(rmq::TransactionResolution::Commit) => pb::Decision::Commit,
            Ok(rmq::TransactionResolution::Rollback) => pb::Decision::Rollback,
            _ => return codes::status(Code::BadRequest, "resolution must be COMMIT or ROLLBACK"),
        };
        if crate::txn_service::parse_txn_id(&req.transaction_id).is_err() {
            return codes::status(
                Code::InvalidTransactionId,
                format!("'{}' is not a txmq transaction id", req.transaction_id),
            );
        }
        // A RocketMQ producer's transactions belong to the group named after their topic.
        let group = name(&req.topic);
        let outcome = if req.source == rmq::TransactionSource::SourceServerCheck as i32 {
            // A check's answer: the same right as the producer's own decision.
            let topic = self.native.reader.transaction_topic(&req.transaction_id);
            let need = match &topic {
                Some(topic) => txmq_state::Need::Produce { topic },
                None => txmq_state::Need::AnyProduce,
            };
            if let Err(e) = self
                .native
                .access
                .require(caller, "answer a check", &[need])
            {
                return codes::from_grpc(&e, Code::Forbidden);
            }
            self.native
                .txn
                .decide_after_check(req.transaction_id, group, decision)
                .await
        } else {
            let request = native(
                caller,
                pb::EndTransactionRequest {
                    transaction_id: req.transaction_id,
                    group,
                    decision: decision as i32,
                    operator: false,
                },
            );
            self.native
                .end_transaction(request)
                .await
                .map(Response::into_inner)
        };
        match outcome {
            Ok(_) => codes::ok(),
            Err(e) => codes::from_grpc(&e, Code::InvalidTransactionId),
        }
    }
}

impl RocketmqService {
    async fn change_invisible(
        &self,
        caller: &Caller,
        req: rmq::ChangeInvisibleDurationRequest,
    ) -> rmq::ChangeInvisibleDurationResponse {
        let request = native(
            caller,
            pb::ChangeInvisibleDurationRequest {
                group: name(&req.group),
                topic: name(&req.topic),
                receipt_handle: req.receipt_handle,
                invisible_ms: req.invisible_duration.as_ref().map_or(0, convert::millis),
            },
        );
        match self.native.change_invisible_duration(request).await {
            Ok(r) => rmq::ChangeInvisibleDurationResponse {
                status: codes::ok(),
                receipt_handle: r.into_inner().receipt_handle,
            },
            Err(e) => rmq::ChangeInvisibleDurationResponse {
                status: codes::from_grpc(&e, Code::InvalidReceiptHandle),
                receipt_handle: String::new(),
            },
        }
    }
}

/// An ack's outcome as a RocketMQ status: acked (now or before) is OK; a handle that was
/// delivered again since, or that is not a handle, is INVALID_RECEIPT_HANDLE.
fn ack_status(outcome: &str) -> Option<rmq::Status> {
    match outcome {
        "acked" | "already_acked" => codes::ok(),
        "stale" => codes::status(
            Code::InvalidReceiptHandle,
            "the message was delivered again since this handle; ack the newer delivery",
        ),
        other => codes::status(
            Code::InvalidReceiptHandle,
            format!("receipt handle {other}"),
        ),
    }
}

#[tonic::async_trait]
impl MessagingService for RocketmqService {
    type ReceiveMessageStream = ResponseStream<rmq::ReceiveMessageResponse>;
    type PullMessageStream = ResponseStream<rmq::PullMessageResponse>;
    type TelemetryStream = TelemetryStream;

    async fn query_route(
        &self,
        request: Request<rmq::QueryRouteRequest>,
    ) -> Result<Response<rmq::QueryRouteResponse>, Status> {
        let caller = self.caller(request.metadata());
        let req = request.into_inner();
        let response = match caller.and_then(|_| self.queues(&req.topic)) {
            Ok(message_queues) => rmq::QueryRouteResponse {
                status: codes::ok(),
                message_queues,
            },
            Err(status) => rmq::QueryRouteResponse {
                status,
                message_queues: Vec::new(),
            },
        };
        metrics::request("QueryRoute", &response.status);
        Ok(Response::new(response))
    }

    async fn heartbeat(
        &self,
        _request: Request<rmq::HeartbeatRequest>,
    ) -> Result<Response<rmq::HeartbeatResponse>, Status> {
        let response = rmq::HeartbeatResponse {
            status: codes::ok(),
        };
        metrics::request("Heartbeat", &response.status);
        Ok(Response::new(response))
    }

    async fn send_message(
        &self,
        request: Request<rmq::SendMessageRequest>,
    ) -> Result<Response<rmq::SendMessageResponse>, Status> {
        let sender = client_id(&request);
        let response = match self.caller(request.metadata()) {
            Ok(caller) => {
                let req = request.into_inner();
                send::send(&self.native, &caller, req, sender.as_deref()).await
            }
            Err(status) => rmq::SendMessageResponse {
                status,
                entries: Vec::new(),
            },
        };
        metrics::request("SendMessage", &response.status);
        Ok(Response::new(response))
    }

    async fn query_assignment(
        &self,
        request: Request<rmq::QueryAssignmentRequest>,
    ) -> Result<Response<rmq::QueryAssignmentResponse>, Status> {
        // Every queue to every consumer: receives lease messages from the whole topic for the
        // group, so consumers never wait on a queue assigned to a dead peer.
        let caller = self.caller(request.metadata());
        let req = request.into_inner();
        let response = match caller.and_then(|_| self.queues(&req.topic)) {
            Ok(queues) => rmq::QueryAssignmentResponse {
                status: codes::ok(),
                assignments: queues
                    .into_iter()
                    .map(|q| rmq::Assignment {
                        message_queue: Some(q),
                    })
                    .collect(),
            },
            Err(status) => rmq::QueryAssignmentResponse {
                status,
                assignments: Vec::new(),
            },
        };
        metrics::request("QueryAssignment", &response.status);
        Ok(Response::new(response))
    }

    async fn receive_message(
        &self,
        request: Request<rmq::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        let caller = self.caller(request.metadata());
        let parts = self.receive(caller, request.into_inner()).await;
        if let Some(rmq::ReceiveMessageResponse {
            content: Some(rmq::receive_message_response::Content::Status(s)),
        }) = parts.first()
        {
            metrics::request("ReceiveMessage", &Some(s.clone()));
        }
        Ok(once(parts))
    }

    async fn ack_message(
        &self,
        request: Request<rmq::AckMessageRequest>,
    ) -> Result<Response<rmq::AckMessageResponse>, Status> {
        let response = match self.caller(request.metadata()) {
            Ok(caller) => self.ack(&caller, request.into_inner()).await,
            Err(status) => rmq::AckMessageResponse {
                status,
                entries: Vec::new(),
            },
        };
        metrics::request("AckMessage", &response.status);
        Ok(Response::new(response))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<rmq::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<rmq::ForwardMessageToDeadLetterQueueResponse>, Status> {
        let status = match self.caller(request.metadata()) {
            Ok(caller) => dead_letter::forward(&self.native, &caller, request.into_inner()).await,
            Err(status) => status,
        };
        metrics::request("ForwardMessageToDeadLetterQueue", &status);
        Ok(Response::new(
            rmq::ForwardMessageToDeadLetterQueueResponse { status },
        ))
    }

    async fn pull_message(
        &self,
        _request: Request<rmq::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        let status = codes::not_implemented("PullMessage");
        metrics::request("PullMessage", &status);
        Ok(once(vec![rmq::PullMessageResponse {
            content: status.map(rmq::pull_message_response::Content::Status),
        }]))
    }

    async fn update_offset(
        &self,
        _request: Request<rmq::UpdateOffsetRequest>,
    ) -> Result<Response<rmq::UpdateOffsetResponse>, Status> {
        let status = codes::not_implemented("UpdateOffset");
        metrics::request("UpdateOffset", &status);
        Ok(Response::new(rmq::UpdateOffsetResponse { status }))
    }

    async fn get_offset(
        &self,
        _request: Request<rmq::GetOffsetRequest>,
    ) -> Result<Response<rmq::GetOffsetResponse>, Status> {
        let status = codes::not_implemented("GetOffset");
        metrics::request("GetOffset", &status);
        Ok(Response::new(rmq::GetOffsetResponse { status, offset: 0 }))
    }

    async fn query_offset(
        &self,
        _request: Request<rmq::QueryOffsetRequest>,
    ) -> Result<Response<rmq::QueryOffsetResponse>, Status> {
        let status = codes::not_implemented("QueryOffset");
        metrics::request("QueryOffset", &status);
        Ok(Response::new(rmq::QueryOffsetResponse {
            status,
            offset: 0,
        }))
    }

    async fn end_transaction(
        &self,
        request: Request<rmq::EndTransactionRequest>,
    ) -> Result<Response<rmq::EndTransactionResponse>, Status> {
        let status = match self.caller(request.metadata()) {
            Ok(caller) => self.end_transaction(&caller, request.into_inner()).await,
            Err(status) => status,
        };
        metrics::request("EndTransaction", &status);
        Ok(Response::new(rmq::EndTransactionResponse { status }))
    }

    async fn telemetry(
        &self,
        request: Request<tonic::Streaming<rmq::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let client_id = client_id(&request)
            .ok_or_else(|| Status::invalid_argument("the x-mq-client-id header is required"))?;
        let caller = self.caller(request.metadata()).map_err(|status| {
            Status::unauthenticated(status.map(|s| s.message).unwrap_or_default())
        })?;
        let access = self.native.access.clone();
        let may_check: crate::checkers::TopicFilter = Arc::new(move |topic: &str| {
            access.allows(&caller, &txmq_state::Need::Produce { topic })
        });
        let stream = telemetry::serve(
            request.into_inner(),
            client_id,
            self.telemetry.clone(),
            may_check,
        );
        Ok(Response::new(stream))
    }

    async fn notify_client_termination(
        &self,
        _request: Request<rmq::NotifyClientTerminationRequest>,
    ) -> Result<Response<rmq::NotifyClientTerminationResponse>, Status> {
        let status = codes::ok();
        metrics::request("NotifyClientTermination", &status);
        Ok(Response::new(rmq::NotifyClientTerminationResponse {
            status,
        }))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<rmq::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<rmq::ChangeInvisibleDurationResponse>, Status> {
        let response = match self.caller(request.metadata()) {
            Ok(caller) => self.change_invisible(&caller, request.into_inner()).await,
            Err(status) => rmq::ChangeInvisibleDurationResponse {
                status,
                receipt_handle: String::new(),
            },
        };
        metrics::request("ChangeInvisibleDuration", &response.status);
        Ok(Response::new(response))
    }

    async fn recall_message(
        &self,
        _request: Request<rmq::RecallMessageRequest>,
    ) -> Result<Response<rmq::RecallMessageResponse>, Status> {
        let status = codes::not_implemented("RecallMessage (delay messages are not supported)");
        metrics::request("RecallMessage", &status);
        Ok(Response::new(rmq::RecallMessageResponse {
            status,
            message_id: String::new(),
        }))
    }

    async fn sync_lite_subscription(
        &self,
        _request: Request<rmq::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<rmq::SyncLiteSubscriptionResponse>, Status> {
        let status = codes::not_implemented("SyncLiteSubscription (lite topics)");
        metrics::request("SyncLiteSubscription", &status);
        Ok(Response::new(rmq::SyncLiteSubscriptionResponse { status }))
    }
}
