//! The Raft network: how this node's openraft reaches its peers, over the peer gRPC API.
//!
//! Openraft structures travel MessagePack-encoded inside `bytes` fields. Snapshots are streamed
//! from the snapshot file in chunks, never loaded whole.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::base::BoxFuture;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
    VoteResponse,
};
use tonic::transport::{Channel, Endpoint};
use txmq_proto::peer::peer_client::PeerClient;
use txmq_proto::peer::{RaftMessage, SnapshotChunk, snapshot_chunk};
use txmq_raft_store::codec;
use txmq_raft_store::types::alias::{Snapshot, Vote};
use txmq_raft_store::{NodeId, NodeInfo, TypeConfig};

use crate::peer_link::PeerLink;

/// A replication stream whose oldest unanswered request waited this long (or the heartbeat
/// interval, if longer) is declared stalled: openraft then ends the session and starts another.
const STREAM_STALL: Duration = Duration::from_secs(1);

/// Snapshot chunk size on the wire.
const SNAPSHOT_CHUNK: usize = 512 * 1024;
/// Peer messages may carry batches of entries with messages up to the body limit.
pub const MAX_PEER_MESSAGE: usize = 512 * 1024 * 1024;

/// Opens a lazily connecting channel to a peer address.
pub fn peer_channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}

pub fn peer_client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel)
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE)
}

/// Where to reach each peer: the address in the membership, unless this node was told to use
/// another one for that peer (`--peer-override ID=HOST:PORT`: NAT, a sidecar, or the chaos
/// tests' fault-injecting proxies).
#[derive(Debug, Clone, Default)]
pub struct PeerRoutes {
    overrides: std::collections::BTreeMap<NodeId, String>,
}

impl PeerRoutes {
    pub fn new(overrides: std::collections::BTreeMap<NodeId, String>) -> Self {
        Self { overrides }
    }

    /// The address to dial for node `id` whose membership address is `addr`.
    pub fn resolve(&self, id: NodeId, addr: &str) -> String {
        self.overrides
            .get(&id)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }
}

/// Creates one connection per target peer.
#[derive(Clone)]
pub struct PeerNetworkFactory {
    pub routes: Arc<PeerRoutes>,
    /// Turns the snapshot manifest into the full snapshot a follower installs.
    pub snapshots: txmq_raft_store::sm_store::SnapshotSource,
    /// Each peer's reachability, shared by every connection to it (openraft makes a new one
    /// per replication session).
    pub links: Arc<Mutex<BTreeMap<NodeId, Arc<PeerLink>>>>,
}

impl PeerNetworkFactory {
    pub fn new(
        routes: Arc<PeerRoutes>,
        snapshots: txmq_raft_store::sm_store::SnapshotSource,
    ) -> Self {
        Self {
            routes,
            snapshots,
            links: Arc::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConnection {
        let link = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target)
            .or_insert_with(|| Arc::new(PeerLink::new(target)))
            .clone();
        PeerConnection {
            target,
            addr: self.routes.resolve(target, &node.peer_addr),
            client: None,
            snapshots: self.snapshots.clone(),
            link,
        }
    }
}

/// A connection to one peer, created lazily and re-created after failures.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    client: Option<PeerClient<Channel>>,
    snapshots: txmq_raft_store::sm_store::SnapshotSource,
    link: Arc<PeerLink>,
}

type RpcErr = RPCError<TypeConfig>;

fn status_to_rpc_error(status: tonic::Status) -> RpcErr {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn decode_err(e: codec::CodecError) -> RpcErr {
    RPCError::Network(NetworkError::new(&e))
}

impl PeerConnection {
    /// The error for a failed call; one that did not reach the peer delays the next attempt.
    fn failed(&self, status: tonic::Status) -> RpcErr {
        let error = status_to_rpc_error(status);
        if matches!(error, RPCError::Unreachable(_)) {
            self.link.failed(&error);
        }
        error
    }

    fn client(&mut self) -> Result<PeerClient<Channel>, RpcErr> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel =
            peer_channel(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let client = peer_client(channel);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one request/response Raft RPC with a deadline.
    async fn call<Req, Resp, F, Fut>(
        &mut self,
        req: &Req,
        ttl: Duration,
        rpc: F,
    ) -> Result<Resp, RpcErr>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        self.link.wait_turn().await;
        let client = self.client()?;
        let data = codec::encode(req).map_err(decode_err)?;
        let mut request = tonic::Request::new(RaftMessage { data: data.into() });
        request.set_timeout(ttl);
        match rpc(client, request).await {
            Ok(resp) => {
                self.link.succeeded();
                codec::decode(&resp.into_inner().data).map_err(decode_err)
            }
            Err(status) => {
                // Drop the cached channel so the next attempt reconnects.
                self.client = None;
                Err(self.failed(status))
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcErr> {
        self.call(&rpc, option.soft_ttl(), |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcErr> {
        self.call(&rpc, option.soft_ttl(), |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self
            .client()
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let header = codec::encode(&(vote, snapshot.meta.clone()))
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        // A bounded channel: the snapshot is produced only as fast as the peer accepts chunks.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let target = self.target;
        let file = snapshot.snapshot.into_std().await;
        let snapshots = self.snapshots.clone();
        let feeder = tokio::task::spawn_blocking(move || {
            let first = SnapshotChunk {
                kind: Some(snapshot_chunk::Kind::Header(header.into())),
            };
            if tx.blocking_send(first).is_err() {
                return Ok(());
            }
            // The manifest on disk becomes the full snapshot as it is sent.
            let mut chunks = ChunkWriter {
                tx,
                buf: Vec::with_capacity(SNAPSHOT_CHUNK),
            };
            chunks = snapshots.expand(file, chunks)?;
            chunks.flush_chunk()
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let send = client.install_snapshot(stream);
        let result = tokio::select! {
            closed = cancel => {
                feeder.abort();
                return Err(StreamingError::Closed(closed));
            }
            r = send => r,
        };
        let fed = feeder.await;
        // The peer's answer first: when it failed, the feeder only saw the stream close.
        let resp = result.map_err(|s| {
            self.client = None;
            tracing::warn!(target_node = target, "snapshot transfer failed: {s}");
            StreamingError::Network(NetworkError::new(&s))
        })?;
        match fed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StreamingError::Network(NetworkError::new(&e))),
            Err(e) => return Err(StreamingError::Network(NetworkError::new(&e))),
        }
        codec::decode(&resp.into_inner().data)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }

    /// Pipelined replication over one bidirectional gRPC stream: requests go out as openraft
    /// produces them, without waiting for the previous answer; the follower answers each in
    /// order (see `PeerService::stream_append`). This replaces openraft's default, which waits
    /// for each AppendEntries response before sending the next request.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            futures::stream::BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RpcErr>>,
            RpcErr,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            let stall = option.soft_ttl().max(STREAM_STALL);
            let unanswered = SendTimes::default();
            let requests = encoded_appends(input, unanswered.clone());
            self.link.wait_turn().await;
            let mut client = self.client()?;
            let opened = tokio::time::timeout(stall, client.stream_append(requests))
                .await
                .map_err(|_| stalled(self.target))?;
            let responses = match opened {
                Ok(r) => {
                    self.link.succeeded();
                    r.into_inner()
                }
                Err(status) => {
                    self.client = None;
                    return Err(self.failed(status));
                }
            };
            let results = futures::stream::unfold(
                Some((responses, unanswered, self.target)),
                move |state| async move {
                    let (responses, unanswered, target) = state?;
                    next_append_result(responses, unanswered, target, stall).await
                },
            );
            Ok(Box::pin(results) as futures::stream::BoxStream<'s, _>)
        })
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(100))))
    }
}

/// When each not yet answered request of a replication stream was sent, oldest first.
#[derive(Clone, Default)]
struct SendTimes(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>>);

impl SendTimes {
    fn sent(&self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(std::time::Instant::now());
    }

    fn answered(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    }

    /// Whether the oldest unanswered request has waited `limit` or longer.
    fn waited(&self, limit: Duration) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .is_some_and(|t| t.elapsed() >= limit)
    }
}

/// The requests as peer messages. An unencodable request (not expected) ends the stream: the
/// answers to those before it still arrive, and openraft resends from there.
fn encoded_appends<S>(
    input: S,
    unanswered: SendTimes,
) -> impl futures::Stream<Item = RaftMessage> + Send + 'static
where
    S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    use futures::StreamExt;
    futures::stream::unfold((input, unanswered), |(mut input, unanswered)| async move {
        let request = input.next().await?;
        match codec::encode(&request) {
            Ok(data) => {
                unanswered.sent();
                Some((RaftMessage { data: data.into() }, (input, unanswered)))
            }
            Err(e) => {
                tracing::error!("cannot encode an AppendEntries request: {e}");
                None
            }
        }
    })
}

type ResponseState = Option<(tonic::Streaming<RaftMessage>, SendTimes, NodeId)>;

/// The next answer of the follower, or a stall error when an answer is overdue. An idle stream
/// (nothing unanswered) may stay quiet for as long as openraft sends nothing.
async fn next_append_result(
    mut responses: tonic::Streaming<RaftMessage>,
    unanswered: SendTimes,
    target: NodeId,
    stall: Duration,
) -> Option<(
    Result<StreamAppendResult<TypeConfig>, RpcErr>,
    ResponseState,
)> {
    use futures::StreamExt;
    loop {
        match tokio::time::timeout(stall, responses.next()).await {
            Ok(None) => return None,
            Ok(Some(Ok(message))) => {
                unanswered.answered();
                return match codec::decode::<StreamAppendResult<TypeConfig>>(&message.data) {
                    Ok(result) => Some((Ok(result), Some((responses, unanswered, target)))),
                    Err(e) => Some((Err(decode_err(e)), None)),
                };
            }
            Ok(Some(Err(status))) => return Some((Err(status_to_rpc_error(status)), None)),
            Err(_) if unanswered.waited(stall) => return Some((Err(stalled(target)), None)),
            Err(_) => {}
        }
    }
}

fn stalled(target: NodeId) -> RpcErr {
    let e = std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("replication stream to node {target} made no progress"),
    );
    RPCError::Unreachable(Unreachable::new(&e))
}

/// Cuts a byte stream into snapshot chunks for the gRPC stream (blocking sends: it runs on a
/// blocking thread and waits for the peer, which bounds memory to a few chunks).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<SnapshotChunk>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        let chunk = SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Data(data.into())),
        };
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the snapshot transfer was cancelled",
            )
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = SNAPSHOT_CHUNK - self.buf.len();
        let n = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
