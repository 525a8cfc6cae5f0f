//! The peer gRPC service: Raft RPCs, snapshot streaming and forwarded writes. Served on the peer
//! port only.

use std::path::PathBuf;

use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::storage::Snapshot;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tonic::{Request, Response, Status, Streaming};
use txmq_proto::client::CheckRequest;
use txmq_proto::peer::peer_server::Peer;
use txmq_proto::peer::{
    DeliverCheckRequest, DeliverCheckResponse, ForwardRequest, ForwardResponse, NodeStatusRequest,
    NodeStatusResponse, RaftMessage, SnapshotChunk, snapshot_chunk,
};
use txmq_raft_store::types::alias::{SnapshotMeta, Vote};
use txmq_raft_store::{Raft, TypeConfig};

use crate::leader_op::{ForwardReply, LeaderOp};
use crate::peer_payload;
use crate::proposer::Proposer;
use crate::status::local_status;

pub struct PeerService {
    pub raft: Raft,
    /// Closed while this node rebuilds damaged storage (see [`crate::repair`]).
    pub vote_gate: std::sync::Arc<crate::repair::VoteGate>,
    /// This node's data volume, reported in its status.
    pub disk: std::sync::Arc<crate::disk::DiskMonitor>,
    pub proposer: Proposer,
    pub incoming_dir: PathBuf,
    pub client_addr: String,
    pub peer_addr: String,
    /// This node's advertised RocketMQ address ("" when that listener is off).
    pub rocketmq_addr: String,
    /// The check-back channels on this node, which the leader hands checks to.
    pub checkers: std::sync::Arc<crate::checkers::CheckerRegistry>,
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft is not running on this node: {e}"))
}

fn reply<T: peer_payload::PeerPayload>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let data = peer_payload::encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { data: data.into() }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    type StreamAppendStream = futures::stream::BoxStream<'static, Result<RaftMessage, Status>>;

    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        let requests = decoded_appends(request.into_inner());
        let results = self.raft.stream_append(requests).map(|item| match item {
            Ok(result) => peer_payload::encode(&result)
                .map(|data| RaftMessage { data: data.into() })
                .map_err(|e| Status::internal(e.to_string())),
            Err(fatal) => Err(stopped(fatal)),
        });
        Ok(Response::new(Box::pin(results)))
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            peer_payload::decode(&request.into_inner().data).map_err(bad_request)?;
        let resp = self.raft.append_entries(rpc).await.map_err(stopped)?;
        reply(&resp)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        if self.vote_gate.refusing() {
            return Err(Status::unavailable(
                "this node is rebuilding damaged storage and votes again once it holds the \
                 leader's log",
            ));
        }
        let rpc: VoteRequest<TypeConfig> =
            peer_payload::decode(&request.into_inner().data).map_err(bad_request)?;
        let resp = self.raft.vote(rpc).await.map_err(stopped)?;
        reply(&resp)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(SnapshotChunk {
                kind: Some(snapshot_chunk::Kind::Header(h)),
            })) => h,
            Some(Err(s)) => return Err(s),
            _ => {
                return Err(Status::invalid_argument(
                    "snapshot stream must start with a header chunk",
                ));
            }
        };
        let (vote, meta): (Vote, SnapshotMeta) =
            peer_payload::decode(&header).map_err(bad_request)?;
        tokio::fs::create_dir_all(&self.incoming_dir)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let path = self
            .incoming_dir
            .join(format!("incoming-{}.snap.tmp", crate::clock::now_ms()));
        let result = receive_and_install(&self.raft, &path, &mut stream, vote, meta).await;
        let _ = tokio::fs::remove_file(&path).await;
        result
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let op: LeaderOp = peer_payload::decode(&request.into_inner().op).map_err(bad_request)?;
        let outcome: ForwardReply = self.proposer.execute_local(op).await;
        let bytes = peer_payload::encode(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardResponse {
            result: bytes.into(),
        }))
    }

    async fn node_status(
        &self,
        _request: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusResponse>, Status> {
        let mut status = local_status(&self.raft, &self.disk, &self.client_addr, &self.peer_addr);
        status.rocketmq_addr = self.rocketmq_addr.clone();
        status.checker_groups = self.checkers.groups();
        Ok(Response::new(status))
    }

    async fn deliver_check(
        &self,
        request: Request<DeliverCheckRequest>,
    ) -> Result<Response<DeliverCheckResponse>, Status> {
        let check = <CheckRequest as prost::Message>::decode(request.into_inner().check)
            .map_err(bad_request)?;
        Ok(Response::new(DeliverCheckResponse {
            delivered: self.checkers.send(check),
        }))
    }
}

/// The leader's AppendEntries requests as they arrive. The stream ends at the first transport
/// error or undecodable message; the leader's replication session then ends and restarts.
fn decoded_appends(
    incoming: Streaming<RaftMessage>,
) -> impl futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + 'static {
    futures::stream::unfold(incoming, |mut incoming| async move {
        match incoming.next().await? {
            Ok(message) => match peer_payload::decode(&message.data) {
                Ok(request) => Some((request, incoming)),
                Err(e) => {
                    tracing::warn!("undecodable AppendEntries in a replication stream: {e}");
                    None
                }
            },
            Err(status) => {
                tracing::debug!("replication stream from the leader ended: {status}");
                None
            }
        }
    })
}

/// Writes the streamed snapshot to a file (never to memory) and hands it to Raft.
async fn receive_and_install(
    raft: &Raft,
    path: &std::path::Path,
    stream: &mut Streaming<SnapshotChunk>,
    vote: Vote,
    meta: SnapshotMeta,
) -> Result<Response<RaftMessage>, Status> {
    let io = |e: std::io::Error| Status::internal(format!("writing received snapshot: {e}"));
    let mut file = tokio::fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .await
        .map_err(io)?;
    while let Some(chunk) = stream.next().await {
        match chunk?.kind {
            Some(snapshot_chunk::Kind::Data(bytes)) => file.write_all(&bytes).await.map_err(io)?,
            _ => {
                return Err(Status::invalid_argument(
                    "unexpected chunk in snapshot stream",
                ));
            }
        }
    }
    file.flush().await.map_err(io)?;
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
    tracing::info!(snapshot = ?meta.last_log_id, "installing snapshot received from the leader");
    let resp = raft
        .install_full_snapshot(
            vote,
            Snapshot {
                meta,
                snapshot: file,
            },
        )
        .await
        .map_err(stopped)?;
    reply(&resp)
}
