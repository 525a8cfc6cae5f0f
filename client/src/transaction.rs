//! Transactional producing, in the shape RocketMQ users know:
//!
//! 1. [`TransactionProducer::send_in_transaction`] stores a half message (invisible to
//!    consumers), runs your local transaction, and sends the decision it returns.
//! 2. A [`TransactionChecker`] you implement answers the broker's check-backs for transactions
//!    whose decision never arrived (producer crashed, network cut, `Unknown`). Start it with
//!    [`TransactionProducer::start_checker`]; it keeps a stream open to the cluster's leader and
//!    reconnects by itself after failures and leader changes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use txmq_proto::client::{
    CheckAnswer, CheckRequest, CheckerMessage, CheckerRegister, Decision, EndTransactionRequest,
    EndTransactionResponse, SendHalfRequest, SendHalfResponse, TransactionBatchRequest,
    checker_message,
};

use crate::batcher::{BatchOptions, Batcher};
use crate::{Client, ClientError};

/// The outcome of a local transaction, or the answer to a check-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTransactionState {
    Commit,
    Rollback,
    /// Still running or not known: the broker keeps the transaction pending and checks back.
    Unknown,
}

impl LocalTransactionState {
    pub fn to_pb(self) -> Decision {
        match self {
            LocalTransactionState::Commit => Decision::Commit,
            LocalTransactionState::Rollback => Decision::Rollback,
            LocalTransactionState::Unknown => Decision::Unknown,
        }
    }
}

/// Answers check-backs from the producer's own records (its database is the truth).
pub trait TransactionChecker: Send + Sync + 'static {
    fn check(&self, request: &CheckRequest) -> impl Future<Output = LocalTransactionState> + Send;
}

/// What [`TransactionProducer::send_in_transaction`] did.
#[derive(Debug, Clone)]
pub struct TransactionResult {
    pub half: SendHalfResponse,
    pub local_state: LocalTransactionState,
    /// The broker's answer to the decision (`None` when the local state was `Unknown`, or the
    /// decision could not be delivered — then the broker will check back).
    pub end: Option<EndTransactionResponse>,
}

/// A producer of transactional messages for one producer group.
#[derive(Clone)]
pub struct TransactionProducer {
    client: Client,
    group: String,
    /// With [`TransactionProducer::with_batching`]: concurrent half messages and decisions
    /// travel together in batched requests.
    batching: Option<Batcher<TxnItem, TxnReply>>,
}

/// One item of a batched transaction request.
enum TxnItem {
    Half(SendHalfRequest),
    End(EndTransactionRequest),
}

enum TxnReply {
    Half(SendHalfResponse),
    End(EndTransactionResponse),
}

impl TransactionProducer {
    pub fn new(client: Client, group: impl Into<String>) -> Self {
        Self {
            client,
            group: group.into(),
            batching: None,
        }
    }

    /// Carries the half messages and decisions of concurrent transactions (of this producer and
    /// its clones) in batched requests; each call still waits for its own result. For
    /// services that run many transactions at once.
    ///
    /// The half messages and decisions that queue up meanwhile leave in one request
    /// (`TransactionBatch`) and are stored in one entry: half as many requests as batching
    /// each kind on its own, at the same wait per item.
    pub fn with_batching(mut self, options: BatchOptions) -> Self {
        let client = self.client.clone();
        let size = |item: &TxnItem| match item {
            TxnItem::Half(h) => h.body.len(),
            TxnItem::End(_) => 64,
        };
        self.batching = Some(Batcher::start(&options, size, move |items| {
            let client = client.clone();
            async move { send_mixed(&client, items).await }
        }));
        self
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Stores a half message. `check_delay` asks for a later first check than the server's
    /// default (capped at 1h by the server).
    pub async fn send_half(
        &self,
        mut request: SendHalfRequest,
        check_delay: Option<Duration>,
    ) -> Result<SendHalfResponse, ClientError> {
        request.group = self.group.clone();
        request.check_delay_ms = check_delay.map(|d| d.as_millis() as u64).unwrap_or(0);
        match &self.batching {
            Some(b) => match b.submit(TxnItem::Half(request)).await? {
                TxnReply::Half(half) => Ok(half),
                TxnReply::End(_) => Err(mismatched_reply()),
            },
            None => self.client.send_half(request).await,
        }
    }

    /// Decides a transaction of this group.
    pub async fn end(
        &self,
        transaction_id: &str,
        state: LocalTransactionState,
    ) -> Result<EndTransactionResponse, ClientError> {
        let request = EndTransactionRequest {
            transaction_id: transaction_id.into(),
            group: self.group.clone(),
            decision: state.to_pb() as i32,
            operator: false,
        };
        match &self.batching {
            Some(b) => match b.submit(TxnItem::End(request)).await? {
                TxnReply::End(end) => Ok(end),
                TxnReply::Half(_) => Err(mismatched_reply()),
            },
            None => self.client.end_transaction(request).await,
        }
    }

    /// Half message → `local_transaction` → decision. If the decision cannot be delivered the
    /// error is logged and the broker's check-back finishes the job; the half message is never
    /// lost and never delivered unless committed.
    pub async fn send_in_transaction<F, Fut>(
        &self,
        request: SendHalfRequest,
        local_transaction: F,
    ) -> Result<TransactionResult, ClientError>
    where
        F: FnOnce(SendHalfResponse) -> Fut,
        Fut: Future<Output = LocalTransactionState>,
    {
        let half = self.send_half(request, None).await?;
        let local_state = local_transaction(half.clone()).await;
        let end = match local_state {
            LocalTransactionState::Unknown => None,
            state => match self.end(&half.transaction_id, state).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(txn = %half.transaction_id, "decision not delivered, the broker will check back: {e}");
                    None
                }
            },
        };
        Ok(TransactionResult {
            half,
            local_state,
            end,
        })
    }

    /// Starts answering check-backs for this group in the background until the handle is
    /// dropped or stopped.
    pub fn start_checker<C: TransactionChecker>(
        &self,
        checker: Arc<C>,
        instance_id: impl Into<String>,
    ) -> CheckerHandle {
        let (connected_tx, connected) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(run_checker(
            self.client.clone(),
            self.group.clone(),
            instance_id.into(),
            checker,
            connected_tx,
        ));
        CheckerHandle { task, connected }
    }
}

/// Stops the checker when dropped.
pub struct CheckerHandle {
    task: tokio::task::JoinHandle<()>,
    connected: tokio::sync::watch::Receiver<Option<String>>,
}

impl CheckerHandle {
    pub fn stop(self) {}

    /// The endpoint (the leader) whose check channel is open now, `None` while reconnecting.
    /// Wait for changes with `changed()` on the returned receiver.
    pub fn connection(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.connected.clone()
    }
}

impl Drop for CheckerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_checker<C: TransactionChecker>(
    client: Client,
    group: String,
    instance_id: String,
    checker: Arc<C>,
    connected: tokio::sync::watch::Sender<Option<String>>,
) {
    let mut leader_hint: Option<String> = None;
    let mut attempt = 0usize;
    loop {
        let target = leader_hint.take().unwrap_or_else(|| {
            attempt += 1;
            client.endpoints()[attempt % client.endpoints().len()].clone()
        });
        let serving = serve_checks(
            &client,
            &target,
            &group,
            &instance_id,
            checker.as_ref(),
            &connected,
        );
        let outcome = serving.await;
        connected.send_replace(None);
        match outcome {
            Ok(()) => tracing::info!(%target, "check channel closed; reconnecting"),
            Err(status) => {
                leader_hint = status
                    .metadata()
                    .get("txmq-leader")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .filter(|l| *l != target);
                tracing::debug!(%target, "check channel not open: {}", status.message());
            }
        }
        // Reconnect quickly after a redirect, with a pause otherwise (elections take ~1s).
        let pause = if leader_hint.is_some() { 20 } else { 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// One connection: register, then answer checks until the stream ends.
async fn serve_checks<C: TransactionChecker>(
    client: &Client,
    target: &str,
    group: &str,
    instance_id: &str,
    checker: &C,
    connected: &tokio::sync::watch::Sender<Option<String>>,
) -> Result<(), tonic::Status> {
    let (tx, rx) = mpsc::channel::<CheckerMessage>(64);
    let register = CheckerMessage {
        kind: Some(checker_message::Kind::Register(CheckerRegister {
            group: group.into(),
            instance_id: instance_id.into(),
        })),
    };
    tx.send(register)
        .await
        .map_err(|_| tonic::Status::internal("check channel closed"))?;
    let mut grpc = client
        .grpc_for(target)
        .map_err(|e| tonic::Status::invalid_argument(e.message))?;
    let mut checks = grpc
        .check_channel(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tracing::info!(%target, %group, "check channel open");
    connected.send_replace(Some(target.to_string()));
    while let Some(request) = checks.next().await {
        let request = request?;
        let state = checker.check(&request).await;
        let answer = CheckerMessage {
            kind: Some(checker_message::Kind::Answer(CheckAnswer {
                transaction_id: request.transaction_id.clone(),
                group: group.into(),
                decision: state.to_pb() as i32,
            })),
        };
        if tx.send(answer).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Sends a batch of half messages and decisions in one request and answers each item in
/// order. A server older than `TransactionBatch` gets the two kinds in two requests instead.
async fn send_mixed(client: &Client, items: Vec<TxnItem>) -> Vec<Result<TxnReply, ClientError>> {
    let n = items.len();
    let (mut halves, mut ends, mut order) = (Vec::new(), Vec::new(), Vec::with_capacity(n));
    for item in items {
        match item {
            TxnItem::Half(h) => {
                order.push(true);
                halves.push(h);
            }
            TxnItem::End(e) => {
                order.push(false);
                ends.push(e);
            }
        }
    }
    let req = TransactionBatchRequest { halves, ends };
    let (halves, ends) = match client.send_transaction_batch(&req).await {
        Err(e) if e.code == "unimplemented" => {
            let TransactionBatchRequest { halves, ends } = req;
            let (half_count, end_count) = (halves.len(), ends.len());
            let halves = if halves.is_empty() {
                Vec::new()
            } else {
                per_item(half_count, client.send_half_batch(halves).await)
            };
            let ends = if ends.is_empty() {
                Vec::new()
            } else {
                per_item(end_count, client.end_transaction_batch(ends).await)
            };
            (halves, ends)
        }
        Err(e) => return (0..n).map(|_| Err(e.clone())).collect(),
        Ok(results) => results,
    };
    let missing = || ClientError::new("internal", "the broker answered fewer items than sent");
    let (mut halves, mut ends) = (halves.into_iter(), ends.into_iter());
    order
        .into_iter()
        .map(|is_half| {
            if is_half {
                halves
                    .next()
                    .unwrap_or_else(|| Err(missing()))
                    .map(TxnReply::Half)
            } else {
                ends.next()
                    .unwrap_or_else(|| Err(missing()))
                    .map(TxnReply::End)
            }
        })
        .collect()
}

fn mismatched_reply() -> ClientError {
    ClientError::new(
        "internal",
        "a batched transaction item got another kind of reply",
    )
}

/// A batch call's per-item results, or its one error for every item.
fn per_item<T>(
    n: usize,
    result: Result<Vec<Result<T, ClientError>>, ClientError>,
) -> Vec<Result<T, ClientError>> {
    match result {
        Ok(items) => items,
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
    }
}
