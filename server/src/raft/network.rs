//! Outgoing Raft traffic: openraft's network trait over our gRPC `Peer` service.
//!
//! openraft's requests are bincode-encoded into `RaftPayload` bytes; the peer's answer comes
//! back the same way. Channels are made lazily per peer and reused; a call that does not
//! answer within its deadline (openraft's, or the election timeout for appends) is reported
//! as unreachable so replication backs off. A snapshot's payload is built once and kept
//! until it reaches the peer: openraft retries a failed transfer every 100 ms, and building
//! it reads and encodes the whole checkpoint.
//! The receiving side is `peer_service`. Nothing here interprets entries.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use setpoint_proto::setpointpb::peer_client::PeerClient;
use setpoint_proto::setpointpb::RaftPayload;
use tonic::transport::{Channel, Endpoint};

use super::types::{LogId, Member, NodeId, Snapshot, TypeConfig, Vote};
use crate::config::url_to_addr;

/// Largest peer message: whole snapshots travel in one message.
pub const MAX_PEER_MESSAGE: usize = 1 << 30;

/// HTTP/2 flow-control windows on peer connections, both ends. With HTTP/2's default 64 KiB
/// an append of a large batch waited a round trip per 64 KiB for the receiver's window update.
pub const PEER_STREAM_WINDOW: u32 = 8 << 20;
pub const PEER_CONNECTION_WINDOW: u32 = 32 << 20;

/// Makes a lazily connecting channel to a member's first peer URL.
pub fn peer_channel(member: &Member) -> Result<Channel, String> {
    let url = member.peer_urls.first().ok_or("member has no peer URL")?;
    let addr = url_to_addr(url).ok_or_else(|| format!("bad peer URL {url}"))?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .initial_stream_window_size(PEER_STREAM_WINDOW)
        .initial_connection_window_size(PEER_CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(endpoint.connect_lazy())
}

pub fn peer_client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel)
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE)
}

/// Creates one connection per target member.
#[derive(Clone)]
pub struct Network {
    /// How long an append may take before the peer counts as unreachable.
    pub append_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        PeerConnection {
            target,
            client: peer_channel(node).map(peer_client),
            append_timeout: self.append_timeout,
            snapshot_payload: None,
        }
    }
}

/// A connection to one peer.
pub struct PeerConnection {
    target: NodeId,
    client: Result<PeerClient<Channel>, String>,
    append_timeout: Duration,
    /// The encoded install request of the snapshot being sent, with the vote and the last log
    /// id it was built for (a snapshot's content follows from that); dropped once the peer
    /// took it.
    snapshot_payload: Option<(Vote, Option<LogId>, Bytes)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerError(String);

impl PeerConnection {
    async fn call<Req, Resp, F, Fut>(
        &mut self,
        req: &Req,
        ttl: Duration,
        rpc: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, RaftPayload) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let data = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(data.into(), ttl, rpc).await
    }

    /// Sends an encoded request and decodes the answer.
    async fn send<Resp, F, Fut>(
        &mut self,
        data: Bytes,
        ttl: Duration,
        rpc: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, RaftPayload) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&PeerError(
                    e.clone(),
                ))))
            }
        };
        let reply = match tokio::time::timeout(ttl, rpc(client, RaftPayload { data })).await {
            Err(_) => {
                let msg = format!("peer {} did not answer in {:?}", self.target, ttl);
                return Err(RPCError::Unreachable(Unreachable::new(&PeerError(msg))));
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        bincode::deserialize(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = super::snapshot::SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        if !rpc.entries.is_empty() {
            fail::fail_point!("raftBeforeLeaderSend");
        }
        // openraft offers one heartbeat interval for an append. A follower that is alive but
        // busy (fsyncing a large batch, or short of CPU) often takes longer under load, and
        // calling it unreachable then restarts replication after a back-off — stalls of
        // hundreds of milliseconds for every write. Only a dead or cut-off peer should count
        // as unreachable, so an append gets the election timeout.
        let ttl = option.hard_ttl().max(self.append_timeout);
        self.call(
            &rpc,
            ttl,
            |mut c, p| async move { c.append_entries(p).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, p| async move {
            c.vote(p).await
        })
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&req, option.hard_ttl(), |mut c, p| async move {
            c.transfer_leader(p).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let payload = match &self.snapshot_payload {
            Some((v, upto, payload)) if *v == vote && *upto == snapshot.meta.last_log_id => {
                payload.clone()
            }
            _ => {
                self.snapshot_payload = None;
                let payload = encode_snapshot(vote, snapshot)
                    .await
                    .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
                self.snapshot_payload = Some(payload.clone());
                payload.2
            }
        };
        // A snapshot may be large; give it far longer than a heartbeat.
        let sent = self
            .send(payload, Duration::from_secs(300), |mut c, p| async move {
                c.install_snapshot(p).await
            })
            .await;
        if sent.is_ok() {
            self.snapshot_payload = None;
        }
        sent.map_err(|e| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            other => StreamingError::Network(NetworkError::new(&other)),
        })
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(100))))
    }
}

/// The encoded install request for `snapshot` (reading a checkpoint's rows is disk work:
/// off the runtime's workers), with the vote and the last log id it is for.
async fn encode_snapshot(
    vote: Vote,
    snapshot: Snapshot,
) -> Result<(Vote, Option<LogId>, Bytes), std::io::Error> {
    let upto = snapshot.meta.last_log_id;
    let data = tokio::task::spawn_blocking(move || {
        let bytes = snapshot.snapshot.to_bytes(&snapshot.meta)?;
        bincode::serialize(&(vote, snapshot.meta, bytes)).map_err(super::io_err)
    })
    .await
    .map_err(super::io_err)??;
    Ok((vote, upto, data.into()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use openraft::RaftNetworkFactory;

    use super::*;
    use crate::raft::snapshot::{RowSource, Rows, SnapshotData};
    use crate::raft::types::SnapshotMeta;

    /// Rows of a pretend checkpoint, counting how often they are read.
    struct CountedRows(AtomicUsize);

    impl RowSource for CountedRows {
        fn rows(&self) -> std::io::Result<Rows> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(vec![(0, b"k".to_vec(), vec![b'v'; 1024])])
        }
    }

    /// openraft retries a failed snapshot transfer every 100 ms; each retry must not read
    /// and encode the checkpoint again, and a new snapshot must not reuse the old payload.
    #[tokio::test]
    async fn a_retried_snapshot_transfer_reuses_its_payload() {
        // A port this test holds bound but never listens on: every connection is refused.
        let closed = tokio::net::TcpSocket::new_v4().expect("socket");
        closed
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let port = closed.local_addr().expect("local addr").port();
        let member = Member {
            name: "gone".into(),
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
        };
        let mut network = Network {
            append_timeout: Duration::from_millis(100),
        };
        let mut peer = network.new_client(2, &member).await;
        let source = Arc::new(CountedRows(AtomicUsize::new(0)));
        let snapshot = |index: u64| Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, index)),
                last_membership: Default::default(),
            },
            snapshot: SnapshotData::Checkpoint(source.clone()),
        };
        let vote = Vote::new(1, 1);
        let option = RPCOption::new(Duration::from_millis(100));
        for _ in 0..3 {
            let sent = peer
                .full_snapshot(vote, snapshot(5), std::future::pending(), option.clone())
                .await;
            assert!(sent.is_err(), "nothing listens on port {port}");
        }
        assert_eq!(
            source.0.load(Ordering::SeqCst),
            1,
            "rows read once for 3 tries"
        );
        let _ = peer
            .full_snapshot(vote, snapshot(9), std::future::pending(), option)
            .await;
        assert_eq!(
            source.0.load(Ordering::SeqCst),
            2,
            "a new snapshot is encoded"
        );
    }
}
