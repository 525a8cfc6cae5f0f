//! The client with endpoint failover.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::Endpoint;
use txmq_proto::client::txmq_client::TxmqClient;
use txmq_proto::client::{
    AckRequest, AckResult, AddNodeRequest, ChangeInvisibleDurationRequest, ClusterStatusRequest,
    ClusterStatusResponse, ConfigureGroupRequest, CreateTopicRequest, DescribeGroupRequest,
    DescribeTopicRequest, EndTransactionBatchRequest, EndTransactionOutcome, EndTransactionRequest,
    EndTransactionResponse, GetTransactionRequest, GroupInfo, ListGroupsRequest, ListTopicsRequest,
    ListTransactionsRequest, ListTransactionsResponse, Message, ReadRequest, ReceiveRequest,
    RemoveNodeRequest, ResetGroupRequest, SendBatchRequest, SendBatchResponse,
    SendHalfBatchRequest, SendHalfOutcome, SendHalfRequest, SendHalfResponse, SendRequest,
    SendResponse, TopicInfo, TopicType, TransactionBatchRequest, TransactionInfo,
    UpdateTopicRequest, end_transaction_outcome, send_half_outcome,
};

use crate::error::ClientError;
use crate::security::{Authorization, ClientTls, Credentials, Transport, is_loopback};

/// Whether a failed call got an answer from a server (any status it sent) rather than failing
/// to connect or losing the connection.
fn reached_a_server(status: &tonic::Status) -> bool {
    use std::error::Error;
    status
        .source()
        .is_none_or(|source| source.downcast_ref::<tonic::transport::Error>().is_none())
}

/// A failed call's message and, for a transport failure, its innermost cause (e.g.
/// "Connection refused"), which the message alone ("tcp connect error") does not say.
fn failure_detail(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut cause: Option<&dyn Error> = status.source();
    let mut innermost = None;
    while let Some(e) = cause {
        innermost = Some(e.to_string());
        cause = e.source();
    }
    match innermost {
        Some(inner) if inner != status.message() => format!("{}: {inner}", status.message()),
        _ => status.message().to_string(),
    }
}

/// Tuning of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one request may keep retrying across endpoints.
    pub retry_deadline: Duration,
    /// Per-attempt timeout.
    pub request_timeout: Duration,
    /// Largest message the client sends or accepts.
    pub max_message_bytes: usize,
    /// HTTP/2 connections to each node, used in turn: one connection's frames are read and
    /// written by one task, which many concurrent requests queue behind.
    pub connections_per_endpoint: usize,
    /// TLS towards the nodes; `None`: plaintext.
    pub tls: Option<ClientTls>,
    /// Sent with every request when the cluster has authentication on.
    pub credentials: Option<Credentials>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry_deadline: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 72 * 1024 * 1024,
            connections_per_endpoint: 2,
            tls: None,
            credentials: None,
        }
    }
}

/// A client of a txmq cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    endpoints: Arc<Vec<String>>,
    /// `connections_per_endpoint` channels per endpoint.
    channels: Arc<Vec<Vec<Transport>>>,
    /// Picks the next connection of an endpoint.
    next_connection: Arc<AtomicUsize>,
    /// The endpoint that worked last; requests start there.
    current: Arc<AtomicUsize>,
    /// Whether `current` was pointed at the leader since the last failure: requests then skip
    /// the follower-to-leader forwarding hop.
    leader_located: Arc<AtomicBool>,
    /// Whether any endpoint ever answered (a server's answer, even an error): until then a
    /// round of refused connections gives up after [`NEVER_REACHED_GIVE_UP`], not the full
    /// retry deadline meant for elections.
    answered: Arc<AtomicBool>,
    options: ClientOptions,
}

/// The gRPC endpoint for `addr` (`host:port`, or a URI), with TLS when configured.
fn endpoint(addr: &str, options: &ClientOptions) -> Result<Endpoint, ClientError> {
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    };
    let invalid = |err: tonic::transport::Error| {
        ClientError::new(
            "invalid_argument",
            format!("endpoint '{addr}' is not an address: {err}"),
        )
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(invalid)?
        .connect_timeout(Duration::from_secs(2))
        // Pings keep an idle connection (a waiting checker, a quiet consumer) from being closed
        // by the server's idle timeout, and find a dead server without waiting for a request.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(tls) = &options.tls {
        endpoint = endpoint.tls_config(tls.config()).map_err(|e| {
            ClientError::new(
                "invalid_argument",
                format!("TLS settings are not usable: {e}"),
            )
        })?;
    }
    Ok(endpoint)
}

/// The first endpoint on another machine that `options` would send credentials to without
/// TLS (anyone on the path could read them), if any.
pub fn credentials_in_clear<'a>(
    endpoints: &'a [String],
    options: &ClientOptions,
) -> Option<&'a str> {
    if options.credentials.is_none() || options.tls.is_some() {
        return None;
    }
    endpoints
        .iter()
        .find(|e| !is_loopback(e))
        .map(String::as_str)
}

fn warn_if_credentials_in_clear(endpoints: &[String], options: &ClientOptions) {
    if let Some(remote) = credentials_in_clear(endpoints, options) {
        tracing::warn!(
            endpoint = %remote,
            "sending credentials without TLS to another machine; anyone on the path can read them"
        );
    }
}

/// How long a client that never reached any endpoint keeps trying.
const NEVER_REACHED_GIVE_UP: Duration = Duration::from_secs(3);

impl Client {
    /// A client of the nodes at `endpoints` (`host:port` of their client API).
    pub fn new<I, S>(endpoints: I) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_options(endpoints, ClientOptions::default())
    }

    pub fn with_options<I, S>(endpoints: I, options: ClientOptions) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.as_ref().trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::new(
                "invalid_argument",
                "no endpoints given; pass --endpoints host:port[,host:port...] or set TXMQ_ENDPOINTS",
            ));
        }
        warn_if_credentials_in_clear(&endpoints, &options);
        let authorization = Authorization::new(options.credentials.as_ref())?;
        let mut channels = Vec::with_capacity(endpoints.len());
        for e in &endpoints {
            let endpoint = endpoint(e, &options)?.tcp_nodelay(true);
            let connections = options.connections_per_endpoint.max(1);
            channels.push(
                (0..connections)
                    .map(|_| Transport::new(endpoint.connect_lazy(), authorization.clone()))
                    .collect(),
            );
        }
        Ok(Client {
            endpoints: Arc::new(endpoints),
            channels: Arc::new(channels),
            next_connection: Arc::new(AtomicUsize::new(0)),
            current: Arc::new(AtomicUsize::new(0)),
            leader_located: Arc::new(AtomicBool::new(false)),
            answered: Arc::new(AtomicBool::new(false)),
            options,
        })
    }

    /// A client of other endpoints with the same options (TLS, credentials, timeouts).
    pub fn for_endpoints<I, S>(&self, endpoints: I) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_options(endpoints, self.options.clone())
    }

    /// The endpoints this client uses.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A gRPC client of an arbitrary address (a leader hint), not necessarily in the list.
    pub(crate) fn grpc_for(&self, addr: &str) -> Result<TxmqClient<Transport>, ClientError> {
        if let Some(i) = self.endpoints.iter().position(|e| e == addr) {
            return Ok(self.grpc(i));
        }
        let channel = Transport::new(
            endpoint(addr, &self.options)?.connect_lazy(),
            Authorization::new(self.options.credentials.as_ref())?,
        );
        Ok(TxmqClient::new(channel)
            .max_decoding_message_size(self.options.max_message_bytes)
            .max_encoding_message_size(self.options.max_message_bytes))
    }

    fn grpc(&self, i: usize) -> TxmqClient<Transport> {
        let connections = &self.channels[i];
        let pick = self.next_connection.fetch_add(1, Ordering::Relaxed) % connections.len();
        TxmqClient::new(connections[pick].clone())
            .max_decoding_message_size(self.options.max_message_bytes)
            .max_encoding_message_size(self.options.max_message_bytes)
    }

    /// Runs `call` against the endpoints, moving on when one is unavailable, until the deadline.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(TxmqClient<Transport>, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.options.retry_deadline;
        let n = self.endpoints.len();
        if n > 1 && !self.leader_located.swap(true, Ordering::Relaxed) {
            self.locate_leader().await;
        }
        let mut tried: Vec<Option<String>> = vec![None; n];
        let mut attempt = 0usize;
        loop {
            let i = (self.current.load(Ordering::Relaxed) + attempt) % n;
            match call(self.grpc(i), self.options.request_timeout).await {
                Ok(v) => {
                    self.answered.store(true, Ordering::Relaxed);
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(status) => {
                    if reached_a_server(&status) {
                        self.answered.store(true, Ordering::Relaxed);
                    }
                    tried[i] = Some(failure_detail(&status));
                    let err = ClientError::from(status);
                    let now = Instant::now();
                    let never_reached = !self.answered.load(Ordering::Relaxed)
                        && attempt + 1 >= n
                        && now >= started + NEVER_REACHED_GIVE_UP;
                    if !err.is_retryable() {
                        return Err(err);
                    }
                    if now >= deadline || never_reached {
                        return Err(self.naming_endpoints(err, &tried, never_reached));
                    }
                    tracing::debug!(endpoint = %self.endpoints[i], "retrying elsewhere: {}", err.message);
                    self.leader_located.store(false, Ordering::Relaxed);
                }
            }
            attempt += 1;
            // A short pause after each full round over the endpoints (an election takes ~1s).
            if attempt.is_multiple_of(n) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// `err` with the endpoints tried and why each failed, so a person sees which addresses
    /// were wrong or down.
    fn naming_endpoints(
        &self,
        err: ClientError,
        tried: &[Option<String>],
        never_reached: bool,
    ) -> ClientError {
        let each: Vec<String> = self
            .endpoints
            .iter()
            .zip(tried)
            .map(|(e, why)| format!("{e} ({})", why.as_deref().unwrap_or("not tried")))
            .collect();
        let what = if never_reached {
            "no endpoint could be reached"
        } else {
            "the cluster did not answer in time"
        };
        ClientError::new(
            &err.code,
            format!(
                "{what}; tried {} — check --endpoints / TXMQ_ENDPOINTS and that the nodes run",
                each.join(", ")
            ),
        )
    }

    /// Points `current` at the leader's endpoint when the leader is among the endpoints (best
    /// effort: any node accepts any request, this only saves the forwarding hop).
    async fn locate_leader(&self) {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let mut request = tonic::Request::new(ClusterStatusRequest {});
        request.set_timeout(Duration::from_secs(2));
        let Ok(status) = self
            .grpc(i)
            .cluster_status(request)
            .await
            .map(|r| r.into_inner())
        else {
            return;
        };
        let Some(leader) = status.nodes.iter().find(|n| n.id == status.leader_id) else {
            return;
        };
        if let Some(j) = self.endpoints.iter().position(|e| *e == leader.client_addr) {
            self.current.store(j, Ordering::Relaxed);
        }
    }

    pub async fn create_topic(
        &self,
        name: &str,
        kind: TopicType,
        queues: u32,
    ) -> Result<TopicInfo, ClientError> {
        let req = CreateTopicRequest {
            name: name.into(),
            r#type: kind as i32,
            queues,
            ..Default::default()
        };
        self.create_topic_with(req).await
    }

    pub async fn create_topic_with(
        &self,
        req: CreateTopicRequest,
    ) -> Result<TopicInfo, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.create_topic(r).await }
            })
            .await?;
        resp.into_inner()
            .topic
            .ok_or_else(|| ClientError::new("internal", "server returned no topic"))
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let resp = self
            .retrying(|mut c, _| async move { c.list_topics(ListTopicsRequest {}).await })
            .await?;
        Ok(resp.into_inner().topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = DescribeTopicRequest { name: name.into() };
                async move { c.describe_topic(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Publishes one message. Acknowledged only once a quorum has it on disk.
    pub async fn send(&self, req: SendRequest) -> Result<SendResponse, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.send(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Sends several messages to one topic in one request: all stored (positions in the order
    /// sent) or none. See [`crate::Publisher`] for batching concurrent sends automatically.
    pub async fn send_batch(
        &self,
        req: SendBatchRequest,
    ) -> Result<SendBatchResponse, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.send_batch(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Up to 1000 half messages in one request; one result per item, in order.
    pub async fn send_half_batch(
        &self,
        halves: Vec<SendHalfRequest>,
    ) -> Result<Vec<Result<SendHalfResponse, ClientError>>, ClientError> {
        let req = SendHalfBatchRequest { halves };
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.send_half_batch(r).await }
            })
            .await?;
        Ok(resp
            .into_inner()
            .outcomes
            .into_iter()
            .map(half_result)
            .collect())
    }

    /// Half messages and decisions in one request (1 to 1000 items in all), stored in one
    /// entry; one result per item, for the halves and for the decisions, each in order.
    pub async fn transaction_batch(
        &self,
        halves: Vec<SendHalfRequest>,
        ends: Vec<EndTransactionRequest>,
    ) -> Result<TransactionBatchResults, ClientError> {
        self.send_transaction_batch(&TransactionBatchRequest { halves, ends })
            .await
    }

    /// [`Self::transaction_batch`] of a request the caller keeps (to send it another way if
    /// the server is older than the method).
    pub(crate) async fn send_transaction_batch(
        &self,
        req: &TransactionBatchRequest,
    ) -> Result<TransactionBatchResults, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.transaction_batch(r).await }
            })
            .await?
            .into_inner();
        let halves = resp.halves.into_iter().map(half_result).collect();
        let ends = resp.ends.into_iter().map(end_result).collect();
        Ok((halves, ends))
    }

    /// Up to 1000 decisions in one request; one result per item, in order.
    pub async fn end_transaction_batch(
        &self,
        ends: Vec<EndTransactionRequest>,
    ) -> Result<Vec<Result<EndTransactionResponse, ClientError>>, ClientError> {
        let req = EndTransactionBatchRequest { ends };
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.end_transaction_batch(r).await }
            })
            .await?;
        Ok(resp
            .into_inner()
            .outcomes
            .into_iter()
            .map(end_result)
            .collect())
    }

    /// Reads committed messages from the node this client currently talks to.
    pub async fn read(&self, req: ReadRequest) -> Result<Vec<Message>, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.read(r).await }
            })
            .await?;
        Ok(resp.into_inner().messages)
    }

    /// Reads from one specific endpoint (by index), without failover: to see what that node holds.
    pub async fn read_from(
        &self,
        endpoint: usize,
        req: ReadRequest,
    ) -> Result<Vec<Message>, ClientError> {
        let i = endpoint % self.endpoints.len();
        Ok(self.grpc(i).read(req).await?.into_inner().messages)
    }

    /// Stores a half message (invisible until committed).
    pub async fn send_half(&self, req: SendHalfRequest) -> Result<SendHalfResponse, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.send_half(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Decides a transaction. Safe to retry: a repeated decision is an idempotent success.
    pub async fn end_transaction(
        &self,
        req: EndTransactionRequest,
    ) -> Result<EndTransactionResponse, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.end_transaction(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn list_transactions(
        &self,
        group: &str,
        limit: u32,
    ) -> Result<ListTransactionsResponse, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = ListTransactionsRequest {
                    group: group.into(),
                    limit,
                };
                async move { c.list_transactions(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn get_transaction(&self, id: &str) -> Result<TransactionInfo, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = GetTransactionRequest {
                    transaction_id: id.into(),
                };
                async move { c.get_transaction(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Receives up to `req.max` messages for a consumer group (long-polling `req.wait_ms`).
    pub async fn receive(&self, req: ReceiveRequest) -> Result<Vec<Message>, ClientError> {
        let wait = Duration::from_millis(req.wait_ms);
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t + wait);
                async move { c.receive(r).await }
            })
            .await?;
        Ok(resp.into_inner().messages)
    }

    /// Acknowledges received messages; one outcome per receipt handle.
    pub async fn ack(
        &self,
        group: &str,
        topic: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<AckResult>, ClientError> {
        let req = AckRequest {
            group: group.into(),
            topic: topic.into(),
            receipt_handles,
        };
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.ack(r).await }
            })
            .await?;
        Ok(resp.into_inner().results)
    }

    /// Extends (or shortens) a received message's invisibility; returns its new receipt handle.
    pub async fn change_invisible_duration(
        &self,
        group: &str,
        topic: &str,
        receipt_handle: &str,
        invisible: Duration,
    ) -> Result<String, ClientError> {
        let req = ChangeInvisibleDurationRequest {
            group: group.into(),
            topic: topic.into(),
            receipt_handle: receipt_handle.into(),
            invisible_ms: invisible.as_millis() as u64,
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.change_invisible_duration(r).await }
            })
            .await?;
        Ok(resp.into_inner().receipt_handle)
    }

    /// Deletes a topic with its messages and groups; how many messages it held. If the answer
    /// is lost to a failover, the retry answers `not_found`: the topic is gone.
    pub async fn delete_topic(&self, name: &str) -> Result<u64, ClientError> {
        let req = txmq_proto::client::DeleteTopicRequest { name: name.into() };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.delete_topic(r).await }
            })
            .await?;
        Ok(resp.into_inner().messages)
    }

    /// A retained message by its id, with its transaction for a transactional message.
    pub async fn get_message(
        &self,
        message_id: &str,
    ) -> Result<txmq_proto::client::GetMessageResponse, ClientError> {
        let req = txmq_proto::client::GetMessageRequest {
            message_id: message_id.into(),
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.get_message(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Changes a topic's retention (fields left `None` keep their value).
    pub async fn update_topic(&self, req: UpdateTopicRequest) -> Result<TopicInfo, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.update_topic(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Forgets a consumer group's progress on a topic.
    pub async fn delete_group(&self, group: &str, topic: &str) -> Result<(), ClientError> {
        let req = txmq_proto::client::DeleteGroupRequest {
            group: group.into(),
            topic: topic.into(),
        };
        self.retrying(|mut c, _| {
            let r = req.clone();
            async move { c.delete_group(r).await }
        })
        .await?;
        Ok(())
    }

    pub async fn reset_group(&self, req: ResetGroupRequest) -> Result<GroupInfo, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.reset_group(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn configure_group(
        &self,
        group: &str,
        topic: &str,
        max_delivery_attempts: u32,
    ) -> Result<GroupInfo, ClientError> {
        let req = ConfigureGroupRequest {
            group: group.into(),
            topic: topic.into(),
            max_delivery_attempts,
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.configure_group(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        let resp = self
            .retrying(|mut c, _| async move { c.list_groups(ListGroupsRequest {}).await })
            .await?;
        Ok(resp.into_inner().groups)
    }

    pub async fn describe_group(&self, group: &str, topic: &str) -> Result<GroupInfo, ClientError> {
        let resp = self
            .retrying(|mut c, _| {
                let r = DescribeGroupRequest {
                    group: group.into(),
                    topic: topic.into(),
                };
                async move { c.describe_group(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse, ClientError> {
        let resp = self
            .retrying(|mut c, _| async move { c.cluster_status(ClusterStatusRequest {}).await })
            .await?;
        Ok(resp.into_inner())
    }

    /// Cluster status as seen by one specific endpoint, without failover.
    pub async fn cluster_status_from(
        &self,
        endpoint: usize,
    ) -> Result<ClusterStatusResponse, ClientError> {
        let i = endpoint % self.endpoints.len();
        Ok(self
            .grpc(i)
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// The state digest of one endpoint (no failover): for comparing replicas.
    pub async fn state_digest_from(
        &self,
        endpoint: usize,
    ) -> Result<txmq_proto::client::StateDigestResponse, ClientError> {
        let i = endpoint % self.endpoints.len();
        Ok(self
            .grpc(i)
            .state_digest(txmq_proto::client::StateDigestRequest {})
            .await?
            .into_inner())
    }

    pub async fn add_node(
        &self,
        req: AddNodeRequest,
    ) -> Result<ClusterStatusResponse, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(t);
                async move { c.add_node(r).await }
            })
            .await?;
        Ok(resp.into_inner().status.unwrap_or_default())
    }

    pub async fn remove_node(&self, id: u64) -> Result<ClusterStatusResponse, ClientError> {
        let resp = self
            .retrying(|mut c, t| {
                let mut r = tonic::Request::new(RemoveNodeRequest { id });
                r.set_timeout(t);
                async move { c.remove_node(r).await }
            })
            .await?;
        Ok(resp.into_inner().status.unwrap_or_default())
    }
}

/// One item's result of a batch of half messages.
fn half_result(o: SendHalfOutcome) -> Result<SendHalfResponse, ClientError> {
    batch_item(o.result.map(|r| match r {
        send_half_outcome::Result::Half(h) => Ok(h),
        send_half_outcome::Result::Error(f) => Err(f),
    }))
}

/// One item's result of a batch of decisions.
fn end_result(o: EndTransactionOutcome) -> Result<EndTransactionResponse, ClientError> {
    batch_item(o.result.map(|r| match r {
        end_transaction_outcome::Result::End(e) => Ok(e),
        end_transaction_outcome::Result::Error(f) => Err(f),
    }))
}

/// The results of [`Client::transaction_batch`]: the halves', then the decisions'.
pub type TransactionBatchResults = (
    Vec<Result<SendHalfResponse, ClientError>>,
    Vec<Result<EndTransactionResponse, ClientError>>,
);

/// One item of a batch answer: its result, its failure (with the code a single request would
/// have had), or an error when the broker left the outcome empty.
fn batch_item<T>(
    outcome: Option<Result<T, txmq_proto::client::Failure>>,
) -> Result<T, ClientError> {
    match outcome {
        Some(Ok(item)) => Ok(item),
        Some(Err(f)) => Err(ClientError::new(&f.code, f.message)),
        None => Err(ClientError::new(
            "internal",
            "an empty outcome in a batch answer",
        )),
    }
}
