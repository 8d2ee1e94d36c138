//! Incoming Raft traffic: the `Peer` gRPC service that hands peers' messages to openraft,
//! takes the writes followers forward (see `forward`) and answers their read-index questions.
//!
//! Payloads are bincode-encoded openraft messages (see `network`). This service is served on
//! the peer URLs only, never on client URLs.

use std::sync::Arc;

use setpoint_proto::setpointpb::peer_server::Peer;
use setpoint_proto::setpointpb::{ForwardBatch, RaftPayload, ReadIndexRequest, ReadIndexResponse};
use tonic::{Request, Response, Status, Streaming};

use super::forward;
use super::node::RaftNode;
use super::snapshot::SnapshotData;
use super::types::{Snapshot, SnapshotMeta, Vote};
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
    Ok(Response::new(RaftPayload { data: data.into() }))
}

/// Decodes a peer's message, hands it to openraft with `call` and encodes openraft's answer;
/// openraft's own failure (it stopped) is UNAVAILABLE.
async fn relay<Q, A, E, F>(
    req: Request<RaftPayload>,
    call: impl FnOnce(Q) -> F,
) -> Result<Response<RaftPayload>, Status>
where
    Q: serde::de::DeserializeOwned,
    A: serde::Serialize,
    E: std::fmt::Display,
    F: std::future::Future<Output = std::result::Result<A, E>>,
{
    let answer = call(decode(req)?)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    encode(&answer)
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        relay(req, |rpc| self.node.raft.append_entries(rpc)).await
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        relay(req, |rpc| self.node.raft.vote(rpc)).await
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        relay(req, |rpc| self.node.raft.handle_transfer_leader(rpc)).await
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
                    snapshot: SnapshotData::Received(data),
                },
            )
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        encode(&resp)
    }

    type ForwardStream = forward::Verdicts;

    async fn forward(
        &self,
        req: Request<Streaming<ForwardBatch>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        Ok(Response::new(forward::serve(
            self.node.clone(),
            req.into_inner(),
        )))
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
