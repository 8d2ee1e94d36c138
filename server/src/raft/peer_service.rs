//! Incoming Raft traffic: the `Peer` gRPC service that hands peers' messages to openraft,
//! accepts writes forwarded by followers and answers their read-index questions.
//!
//! Payloads are bincode-encoded openraft messages (see `network`). This service is served on
//! the peer URLs only, never on client URLs.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use openraft::raft::AppendEntriesRequest;
use setpoint_proto::setpointpb::peer_server::Peer;
use setpoint_proto::setpointpb::{RaftPayload, ReadIndexRequest, ReadIndexResponse};
use tonic::{Request, Response, Status, Streaming};

use super::node::RaftNode;
use super::types::{Snapshot, SnapshotMeta, TypeConfig, Vote};
use super::Command;
use crate::error::Result;

pub struct PeerService {
    node: Arc<RaftNode>,
}

impl PeerService {
    pub fn new(node: Arc<RaftNode>) -> Self {
        PeerService { node }
    }
}

fn decode<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    bincode::deserialize(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data = bincode::serialize(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    type StreamAppendStream = BoxStream<'static, Result<RaftPayload, Status>>;

    /// A leader's replication stream: each request goes to openraft as it arrives; answers go
    /// back in the same order. A broken or undecodable request ends the stream (the leader
    /// opens another one and resends what was not answered).
    async fn stream_append(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        let requests = req.into_inner().scan((), |_, item| {
            let decoded = match item {
                Ok(payload) => {
                    bincode::deserialize::<AppendEntriesRequest<TypeConfig>>(&payload.data)
                        .map_err(|e| tracing::warn!("undecodable append from the leader: {e}"))
                        .ok()
                }
                Err(status) => {
                    tracing::debug!(%status, "replication stream from the leader broke");
                    None
                }
            };
            futures::future::ready(decoded)
        });
        let answers = self.node.raft.stream_append(requests).map(|answer| {
            let answer = answer.map_err(|fatal| Status::unavailable(fatal.to_string()))?;
            let data = bincode::serialize(&answer).map_err(|e| Status::internal(e.to_string()))?;
            Ok(RaftPayload { data })
        });
        Ok(Response::new(answers.boxed()))
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        let resp = self
            .node
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        encode(&resp)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        let resp = self
            .node
            .raft
            .vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        encode(&resp)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = decode(req)?;
        let resp = self
            .node
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: data,
                },
            )
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        encode(&resp)
    }

    async fn propose(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let cmd: Command = decode(req)?;
        let verdict = self.node.propose_as_leader(cmd).await;
        encode(&verdict)
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self.node.leader_read_index().await?;
        Ok(Response::new(ReadIndexResponse {
            index,
            term: self.node.status().term,
        }))
    }
}
