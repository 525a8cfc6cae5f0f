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
use txmq_proto::peer::{RaftMessage, SnapshotChunk, snapshot_chunk};
use txmq_raft_store::types::alias::{Snapshot, Vote};
use txmq_raft_store::{NodeId, NodeInfo, TypeConfig};
use txmq_state::codec;

use crate::peer_dialer::{PeerDialer, PeerRpc};
pub use crate::peer_limits::{MAX_PEER_MESSAGE, MIB, SPLIT_BYTES, peer_message_limit};
use crate::peer_link::PeerLink;
use crate::peer_payload;

/// A replication stream whose oldest unanswered request waited this long (or the heartbeat
/// interval, if longer) is declared stalled: openraft then ends the session and starts another.
const STREAM_STALL: Duration = Duration::from_secs(1);

/// Snapshot chunk size on the wire.
const SNAPSHOT_CHUNK: usize = 512 * 1024;
/// Where peers are (with overrides of their membership addresses) and how to dial them.
pub struct PeerRoutes {
    overrides: std::collections::BTreeMap<NodeId, String>,
    dialer: PeerDialer,
}

impl PeerRoutes {
    pub fn new(overrides: std::collections::BTreeMap<NodeId, String>, dialer: PeerDialer) -> Self {
        Self { overrides, dialer }
    }

    /// The address to dial for node `id` whose membership address is `addr`.
    pub fn resolve(&self, id: NodeId, addr: &str) -> String {
        self.overrides
            .get(&id)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// A client of the peer at `addr` (already resolved).
    pub fn client(&self, addr: &str) -> Result<PeerRpc, tonic::transport::Error> {
        self.dialer.client(addr)
    }

    /// See [`PeerDialer::generation`].
    pub fn generation(&self) -> u64 {
        self.dialer.generation()
    }
}

/// Creates one connection per target peer.
#[derive(Clone)]
pub struct PeerNetworkFactory {
    pub routes: Arc<PeerRoutes>,
    /// Turns the snapshot manifest into the full snapshot a follower installs.
    pub snapshots: txmq_raft_store::SnapshotSource,
    /// Each peer's reachability, shared by every connection to it (openraft makes a new one
    /// per replication session).
    pub links: Arc<Mutex<BTreeMap<NodeId, Arc<PeerLink>>>>,
}

impl PeerNetworkFactory {
    pub fn new(routes: Arc<PeerRoutes>, snapshots: txmq_raft_store::SnapshotSource) -> Self {
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
            routes: self.routes.clone(),
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
    routes: Arc<PeerRoutes>,
    client: Option<PeerRpc>,
    snapshots: txmq_raft_store::SnapshotSource,
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
    /// The error for a failed call; one that did not reach the peer is reported after a pause
    /// (see [`PeerLink`]).
    async fn failed(&self, status: tonic::Status) -> RpcErr {
        let error = status_to_rpc_error(status);
        if matches!(error, RPCError::Unreachable(_)) {
            let pause = self.link.failed(&error);
            tokio::time::sleep(pause).await;
        }
        error
    }

    fn client(&mut self) -> Result<PeerRpc, RpcErr> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let client = self
            .routes
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
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
        Req: crate::peer_payload::PeerPayload,
        Resp: crate::peer_payload::PeerPayload,
        F: FnOnce(PeerRpc, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let client = self.client()?;
        let data = peer_payload::encode(req).map_err(decode_err)?;
        let mut request = tonic::Request::new(RaftMessage { data: data.into() });
        request.set_timeout(ttl);
        match rpc(client, request).await {
            Ok(resp) => {
                self.link.succeeded();
                peer_payload::decode(&resp.into_inner().data).map_err(decode_err)
            }
            Err(status) => {
                // Drop the cached channel so the next attempt reconnects.
                self.client = None;
                Err(self.failed(status).await)
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
        let header = peer_payload::encode(&(vote, snapshot.meta.clone()))
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
        peer_payload::decode(&resp.into_inner().data)
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
                    return Err(self.failed(status).await);
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

/// The peer messages of a replication stream not answered yet, oldest first: when each went
/// out and its size.
#[derive(Clone, Default)]
struct SendTimes(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Sent>>>);

#[derive(Clone, Copy)]
struct Sent {
    at: std::time::Instant,
    bytes: usize,
}

/// How fast a follower is assumed to take in a big message at the least (decode, write,
/// fsync) when deciding that a stream made no progress.
const SLOWEST_BYTES_PER_SECOND: f64 = 8.0 * 1024.0 * 1024.0;

impl SendTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Sent>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sent(&self, bytes: usize) {
        self.lock().push_back(Sent {
            at: std::time::Instant::now(),
            bytes,
        });
    }

    fn answered(&self) {
        self.lock().pop_front();
    }

    /// Whether the oldest unanswered message has waited `limit` or longer, plus the time a slow
    /// follower needs for its bytes (a 16 MiB part may take a while; a stalled stream is one
    /// that stopped answering, not one that is busy with a big message).
    fn waited(&self, limit: Duration) -> bool {
        self.lock().front().is_some_and(|s| {
            let allowance = Duration::from_secs_f64(s.bytes as f64 / SLOWEST_BYTES_PER_SECOND);
            s.at.elapsed() >= limit + allowance
        })
    }
}

/// The requests as peer messages, a request that encodes to more than [`SPLIT_BYTES`] as
/// several, each part's `prev_log_id` the last entry of the part before it. The follower
/// answers every part, and each answer goes to openraft as it is: an answer names the log id
/// it matched (or the one in conflict), and openraft takes part of a request as acknowledged
/// when that id lies inside it. Each message is recorded as sent when the transport takes it.
/// An unencodable request (not expected) ends the stream: the answers to those before it still
/// arrive, and openraft resends from there.
fn encoded_appends<S>(
    input: S,
    unanswered: SendTimes,
) -> impl futures::Stream<Item = RaftMessage> + Send + 'static
where
    S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    use futures::StreamExt;
    let parts = futures::stream::unfold(input, |mut input| async move {
        let request = input.next().await?;
        match encode_split(request) {
            Ok(messages) => Some((futures::stream::iter(messages), input)),
            Err(e) => {
                tracing::error!("cannot encode an AppendEntries request: {e}");
                None
            }
        }
    });
    parts.flatten().map(move |message| {
        unanswered.sent(message.data.len());
        message
    })
}

/// One request as peer messages of at most [`SPLIT_BYTES`] each (or one entry each).
fn encode_split(
    request: AppendEntriesRequest<TypeConfig>,
) -> Result<Vec<RaftMessage>, codec::CodecError> {
    let data = peer_payload::encode(&request)?;
    if data.len() <= SPLIT_BYTES || request.entries.len() < 2 {
        return Ok(vec![RaftMessage { data: data.into() }]);
    }
    let AppendEntriesRequest {
        vote,
        prev_log_id,
        mut entries,
        leader_commit,
    } = request;
    let second = entries.split_off(entries.len() / 2);
    let middle = entries.last().map(|e| e.log_id);
    let mut out = encode_split(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })?;
    out.extend(encode_split(AppendEntriesRequest {
        vote,
        prev_log_id: middle,
        entries: second,
        leader_commit,
    })?);
    Ok(out)
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
                return match peer_payload::decode::<StreamAppendResult<TypeConfig>>(&message.data) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;
    use txmq_raft_store::types::alias::Entry;
    use txmq_state::{Command, NewMessage, Operation};

    fn entry(index: u64, body: usize) -> Entry {
        let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
        let message = NewMessage {
            key: String::new(),
            tag: String::new(),
            body: vec![7; body],
            properties: Default::default(),
        };
        let op = Operation::Publish {
            topic: "t".into(),
            messages: vec![message],
        };
        Entry::new(log_id, EntryPayload::Normal(Command::new(index, op)))
    }

    /// A request of 9 entries of 5 MiB goes out in parts of at most 16 MiB, each starting where
    /// the part before it ended, together holding every entry in order.
    #[test]
    fn a_big_request_is_split_into_chained_parts_below_the_limit() {
        let entries: Vec<Entry> = (11..20).map(|i| entry(i, 5 * MIB)).collect();
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 10)),
            entries,
            leader_commit: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 12)),
        };
        let messages = encode_split(request).expect("encodes");
        assert!(messages.len() >= 3, "{} parts", messages.len());
        let mut expected_prev = 10;
        let mut seen = Vec::new();
        for m in &messages {
            assert!(
                m.data.len() <= SPLIT_BYTES,
                "part of {} bytes",
                m.data.len()
            );
            let part: AppendEntriesRequest<TypeConfig> =
                peer_payload::decode(&m.data).expect("decodes");
            assert_eq!(part.prev_log_id.map(|l| l.index), Some(expected_prev));
            assert_eq!(part.leader_commit.map(|l| l.index), Some(12));
            for e in &part.entries {
                seen.push(e.log_id.index);
            }
            expected_prev = part.entries.last().expect("no empty part").log_id.index;
        }
        assert_eq!(seen, (11..20).collect::<Vec<_>>());
        // A small request stays whole.
        let small = AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: vec![entry(1, 100), entry(2, 100)],
            leader_commit: None,
        };
        assert_eq!(encode_split(small).expect("encodes").len(), 1);
    }

    #[test]
    fn the_peer_limit_fits_the_largest_entry() {
        assert_eq!(peer_message_limit(4 * MIB), 17 * MIB);
        assert_eq!(peer_message_limit(64 * MIB), 73 * MIB);
    }
}
