//! The transaction part of the client service: half messages, decisions, listing, and the
//! check-back channel. Thin: validate, propose or read, convert.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use txmq_proto::client as pb;
use txmq_raft_store::{Raft, StateReader};
use txmq_state::{CommandResult, Operation, limits};
use txmq_state::{Decision, DecisionSource, TxnId, TxnRecord, TxnTiming};

use crate::checkers::session::CheckSession;
use crate::checkers::{CheckerRegistry, TopicFilter};
use crate::clock::now_ms;
use crate::config::TxnSettings;
use crate::convert;
use crate::decision_metrics::DecisionTally;
use crate::proposer::Proposer;

/// The longest first-check delay a producer may ask for.
pub const MAX_REQUESTED_CHECK_DELAY: Duration = Duration::from_secs(3600);

/// What an item of a mixed batch needs for its response.
enum BatchItem {
    /// A half message, to its topic.
    Half(String),
    /// A decision, by this source.
    End(DecisionSource),
}

pub type CheckStream = Pin<Box<dyn Stream<Item = Result<pb::CheckRequest, Status>> + Send>>;

#[derive(Clone)]
pub struct TxnService {
    pub raft: Raft,
    pub proposer: Proposer,
    pub reader: StateReader,
    pub checkers: Arc<CheckerRegistry>,
    pub settings: TxnSettings,
    pub routes: Arc<crate::network::PeerRoutes>,
    pub max_message_bytes: usize,
}

fn decision_from_pb(d: i32) -> Result<Decision, Status> {
    match pb::Decision::try_from(d) {
        Ok(pb::Decision::Commit) => Ok(Decision::Commit),
        Ok(pb::Decision::Rollback) => Ok(Decision::Rollback),
        Ok(pb::Decision::Unknown) => Ok(Decision::Unknown),
        _ => Err(Status::invalid_argument(
            "decision must be commit, rollback or unknown",
        )),
    }
}

pub fn transaction_info(r: &TxnRecord, now: u64) -> pb::TransactionInfo {
    pb::TransactionInfo {
        transaction_id: r.id.to_string(),
        group: r.group.clone(),
        topic: r.topic.clone(),
        message_id: r.message_id(),
        state: r.state.as_str().into(),
        reason: r.reason.map(|s| s.as_str().to_string()).unwrap_or_default(),
        check_count: r.check_count,
        max_checks: r.timing.max_checks,
        age_seconds: now.saturating_sub(r.created_ms) as f64 / 1000.0,
        created_at_ms: r.created_ms,
        decided_at_ms: r.decided_ms.unwrap_or(0),
        next_check_at_ms: r.next_check_ms,
        deadline_at_ms: r.deadline_ms,
        history: r
            .history()
            .iter()
            .map(|e| pb::TransactionEvent {
                at_ms: e.at_ms,
                event: e.name().into(),
                description: e.describe(),
            })
            .collect(),
        queue: r.position.map(|(queue, _)| queue),
        offset: r.position.map(|(_, offset)| offset),
    }
}

impl TxnService {
    fn timing(&self, requested_delay_ms: u64) -> TxnTiming {
        let base = self.settings.first_check_delay.as_millis() as u64;
        let requested = requested_delay_ms.min(MAX_REQUESTED_CHECK_DELAY.as_millis() as u64);
        TxnTiming {
            first_check_delay_ms: base.max(requested),
            check_interval_ms: self.settings.check_interval.as_millis() as u64,
            max_checks: self.settings.max_checks,
            max_lifetime_ms: self.settings.max_lifetime.as_millis() as u64,
        }
    }

    /// Validates a half message and fixes its timing: the operation that stores it, and its
    /// topic (for the response).
    fn half_op(&self, req: pb::SendHalfRequest) -> Result<(String, Operation), Status> {
        limits::validate_name("producer group", &req.group).map_err(Status::invalid_argument)?;
        let timing = self.timing(req.check_delay_ms);
        let send = pb::SendRequest {
            topic: req.topic,
            body: req.body,
            key: req.key,
            tag: req.tag,
            properties: req.properties,
        };
        let (topic, message) = convert::new_message(send, self.max_message_bytes)?;
        let op = Operation::HalfMessage {
            topic: topic.clone(),
            group: req.group,
            message,
            timing,
        };
        Ok((topic, op))
    }

    pub async fn send_half(
        &self,
        req: pb::SendHalfRequest,
    ) -> Result<pb::SendHalfResponse, Status> {
        let (topic, op) = self.half_op(req)?;
        let response = half_response(topic, self.proposer.write(op).await?);
        if response.is_ok() {
            metrics::counter!("txmq_txn_half_messages_total").increment(1);
        }
        response
    }

    /// The half messages of a batched request, proposed together; one outcome per item.
    pub async fn send_half_batch(
        &self,
        halves: Vec<pb::SendHalfRequest>,
    ) -> Vec<Result<pb::SendHalfResponse, Status>> {
        self.transaction_batch(halves, Vec::new()).await.0
    }

    /// Validates a decision: its operation and who decided.
    fn end_op(
        &self,
        req: pb::EndTransactionRequest,
    ) -> Result<(DecisionSource, Operation), Status> {
        let decision = decision_from_pb(req.decision)?;
        parse_txn_id(&req.transaction_id)?;
        limits::validate_name("producer group", &req.group).map_err(Status::invalid_argument)?;
        let source = if req.operator {
            DecisionSource::Operator
        } else {
            DecisionSource::Producer
        };
        Ok((
            source,
            decide_op(req.transaction_id, req.group, decision, source),
        ))
    }

    pub async fn end_transaction(
        &self,
        req: pb::EndTransactionRequest,
    ) -> Result<pb::EndTransactionResponse, Status> {
        let (source, op) = self.end_op(req)?;
        let mut tally = DecisionTally::default();
        let response = end_response(source, self.proposer.write(op).await?, &mut tally);
        tally.record();
        response
    }

    /// The decisions of a batched request, proposed together; one outcome per item.
    pub async fn end_transaction_batch(
        &self,
        ends: Vec<pb::EndTransactionRequest>,
    ) -> Vec<Result<pb::EndTransactionResponse, Status>> {
        self.transaction_batch(Vec::new(), ends).await.1
    }

    /// Half messages and decisions of one request, proposed together (one submission, so one
    /// entry): the outcomes of the halves and of the decisions, each in request order.
    pub async fn transaction_batch(
        &self,
        halves: Vec<pb::SendHalfRequest>,
        ends: Vec<pb::EndTransactionRequest>,
    ) -> (
        Vec<Result<pb::SendHalfResponse, Status>>,
        Vec<Result<pb::EndTransactionResponse, Status>>,
    ) {
        let half_count = halves.len();
        let prepared = halves
            .into_iter()
            .map(|h| {
                self.half_op(h)
                    .map(|(topic, op)| (BatchItem::Half(topic), op))
            })
            .chain(ends.into_iter().map(|e| {
                self.end_op(e)
                    .map(|(source, op)| (BatchItem::End(source), op))
            }))
            .collect();
        let mut written = self.write_items(prepared).await;
        let ends_written = written.split_off(half_count.min(written.len()));
        let halves: Vec<_> = written
            .into_iter()
            .map(|item| match item? {
                (BatchItem::Half(topic), result) => half_response(topic, result),
                (BatchItem::End(_), _) => Err(Status::internal("a decision among the halves")),
            })
            .collect();
        let mut tally = DecisionTally::default();
        let ends = ends_written
            .into_iter()
            .map(|item| match item? {
                (BatchItem::End(source), result) => end_response(source, result, &mut tally),
                (BatchItem::Half(_), _) => Err(Status::internal("a half among the decisions")),
            })
            .collect();
        tally.record();
        let stored = halves.iter().filter(|r| r.is_ok()).count();
        if stored > 0 {
            metrics::counter!("txmq_txn_half_messages_total").increment(stored as u64);
        }
        (halves, ends)
    }

    /// Proposes the valid items of a batch in one submission and pairs each item's context
    /// with its committed result; invalid items keep their error, and a failed proposal
    /// fails every valid item with the same status.
    async fn write_items<T>(
        &self,
        prepared: Vec<Result<(T, Operation), Status>>,
    ) -> Vec<Result<(T, CommandResult), Status>> {
        let mut contexts = Vec::with_capacity(prepared.len());
        let mut ops = Vec::with_capacity(prepared.len());
        for item in prepared {
            contexts.push(item.map(|(context, op)| {
                ops.push(op);
                context
            }));
        }
        let count = ops.len();
        let results = match self.proposer.write_many(ops).await {
            Ok(results) if results.len() == count => Ok(results),
            Ok(results) => Err(Status::internal(format!(
                "{count} operations were proposed but {} results came back",
                results.len()
            ))),
            Err(e) => Err(Status::from(e)),
        };
        let mut results = match results {
            Ok(results) => results.into_iter(),
            Err(status) => {
                return contexts
                    .into_iter()
                    .map(|c| c.and_then(|_| Err(status.clone())))
                    .collect();
            }
        };
        contexts
            .into_iter()
            .map(|c| {
                let context = c?;
                let result = results
                    .next()
                    .ok_or_else(|| Status::internal("a batch item has no result"))?;
                Ok((context, result))
            })
            .collect()
    }

    /// A check-back's answer that arrived as a decision request (RocketMQ's EndTransaction
    /// with source SOURCE_SERVER_CHECK): recorded as decided by a check, like an answer on a
    /// check channel.
    pub async fn decide_after_check(
        &self,
        txn_id: String,
        group: String,
        decision: pb::Decision,
    ) -> Result<pb::EndTransactionResponse, Status> {
        let decision = decision_from_pb(decision as i32)?;
        parse_txn_id(&txn_id)?;
        limits::validate_name("producer group", &group).map_err(Status::invalid_argument)?;
        metrics::counter!("txmq_txn_checks_answered_total", "answer" => decision.as_str())
            .increment(1);
        self.decide(txn_id, group, decision, DecisionSource::Check)
            .await
    }

    async fn decide(
        &self,
        txn_id: String,
        group: String,
        decision: Decision,
        source: DecisionSource,
    ) -> Result<pb::EndTransactionResponse, Status> {
        let op = decide_op(txn_id, group, decision, source);
        let mut tally = DecisionTally::default();
        let response = end_response(source, self.proposer.write(op).await?, &mut tally);
        tally.record();
        response
    }

    pub fn list(&self, req: pb::ListTransactionsRequest) -> pb::ListTransactionsResponse {
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit.min(1000)
        } as usize;
        let group = (!req.group.is_empty()).then_some(req.group.as_str());
        let now = now_ms();
        pb::ListTransactionsResponse {
            transactions: self
                .reader
                .pending_transactions(group, limit)
                .iter()
                .map(|r| transaction_info(r, now))
                .collect(),
            pending_total: self.reader.pending_transaction_count() as u64,
        }
    }

    pub fn get(&self, id: &str) -> Result<pb::TransactionInfo, Status> {
        self.reader.transaction(id).map(|r| transaction_info(&r, now_ms())).ok_or_else(|| {
            Status::not_found(format!(
                "transaction '{id}' is unknown on this node (never existed, forgotten, or this node is behind)"
            ))
        })
    }

    /// Opens a check channel: only on the leader (see the proto for the redirect). The session
    /// itself is [`CheckSession`]'s; this turns its answers into decisions.
    pub async fn check_channel(
        &self,
        request: Request<Streaming<pb::CheckerMessage>>,
        may_check: TopicFilter,
    ) -> Result<Response<CheckStream>, Status> {
        if !self.raft.is_leader() {
            return Err(self.not_leader().await);
        }
        let mut inbound = request.into_inner();
        let (session, checks) =
            CheckSession::open(&self.checkers, &mut inbound, may_check.clone()).await?;
        let service = self.clone();
        let group = session.group().to_string();
        tokio::spawn(session.relay_answers(inbound, move |answer| {
            let (service, group, may_check) = (service.clone(), group.clone(), may_check.clone());
            async move {
                // An instance answers only for topics its user may produce to.
                let topic = service.reader.transaction_topic(&answer.transaction_id);
                if topic.is_some_and(|t| !may_check(&t)) {
                    tracing::warn!(target: "txmq::audit", txn = %answer.transaction_id, outcome = "denied", "check answer for a topic the checker may not produce to");
                    return;
                }
                service.apply_answer(group, answer).await
            }
        }));
        let stream = ReceiverStream::new(checks).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    /// One check answer as a decision (source `check`). An instance answers only for its own
    /// group (the state machine enforces it too); malformed answers are dropped here.
    async fn apply_answer(&self, group: String, answer: pb::CheckAnswer) {
        let Ok(decision) = decision_from_pb(answer.decision) else {
            return;
        };
        if TxnId::parse(&answer.transaction_id).is_none() {
            tracing::info!(txn = %answer.transaction_id, "check answer ignored: not a transaction id");
            return;
        }
        metrics::counter!("txmq_txn_checks_answered_total", "answer" => decision.as_str())
            .increment(1);
        let outcome = self
            .decide(
                answer.transaction_id.clone(),
                group,
                decision,
                DecisionSource::Check,
            )
            .await;
        match outcome {
            Ok(o) => tracing::info!(txn = %o.transaction_id, state = %o.state, "check answered"),
            Err(s) => {
                tracing::info!(txn = %answer.transaction_id, "check answer not applied: {}", s.message())
            }
        }
    }

    /// UNAVAILABLE with the leader's client address, so the client can reconnect there.
    async fn not_leader(&self) -> Status {
        let mut status =
            Status::unavailable("check channels are served by the leader; reconnect to it");
        if let Some(addr) = crate::status::leader_client_addr(&self.raft, &self.routes).await
            && let Ok(value) = addr.parse()
        {
            status.metadata_mut().insert("txmq-leader", value);
        }
        status
    }
}

/// A transaction id as clients write it (`T` + 24 hex digits), checked here so that a
/// malformed one is refused at once and never costs a Raft entry.
pub fn parse_txn_id(text: &str) -> Result<TxnId, Status> {
    if text.is_empty() {
        return Err(Status::invalid_argument("transaction id is empty"));
    }
    TxnId::parse(text).ok_or_else(|| {
        Status::invalid_argument(format!(
            "'{text}' is not a transaction id (they look like T followed by 24 hex digits, as \
             `txmq txn send` and `txmq txn list` print them)"
        ))
    })
}

fn decide_op(
    txn_id: String,
    group: String,
    decision: Decision,
    source: DecisionSource,
) -> Operation {
    Operation::EndTransaction {
        txn_id,
        group,
        decision,
        source,
    }
}

/// The response to a stored half message, from its committed result.
fn half_response(topic: String, result: CommandResult) -> Result<pb::SendHalfResponse, Status> {
    match result {
        CommandResult::HalfAccepted { txn_id } => Ok(pb::SendHalfResponse {
            transaction_id: txn_id.to_string(),
            message_id: txn_id.message_id(),
            topic,
        }),
        other => Err(convert::unexpected(other)),
    }
}

/// The response to a decision, from its committed result; the decision joins `tally`.
fn end_response(
    source: DecisionSource,
    result: CommandResult,
    tally: &mut DecisionTally,
) -> Result<pb::EndTransactionResponse, Status> {
    match result {
        CommandResult::TxnDecided(o) => {
            if !o.repeated {
                // 0: the leader that applied it predates the field.
                let created = Some(o.created_ms).filter(|&ms| ms > 0);
                tally.add(o.state.as_str(), source.as_str(), created);
            }
            let message_id = match o.position {
                Some(_) => o.txn_id.message_id(),
                None => String::new(),
            };
            Ok(pb::EndTransactionResponse {
                transaction_id: o.txn_id.to_string(),
                state: o.state.as_str().into(),
                reason: o.reason.map(|r| r.as_str().to_string()).unwrap_or_default(),
                repeated: o.repeated,
                message_id,
                queue: o.position.map(|(queue, _)| queue),
                offset: o.position.map(|(_, offset)| offset),
            })
        }
        other => Err(convert::unexpected(other)),
    }
}
