//! The handle the API layer holds: propose a command, wait for a linearizable read point,
//! and ask who leads, which term, which members.
//!
//! A write proposed on a follower is forwarded to the leader over the peer service's write
//! stream ([`super::forward`]) and the leader's result comes back unchanged. Linearizable
//! reads are batched: all reads that arrive while one read-index round is in flight share the
//! next round (one quorum heartbeat for many reads), and a follower asks the leader for the
//! read index, then waits until it has applied that far. Both travel over one kept connection
//! per peer (a connection per call cost a TCP and HTTP/2 handshake per forwarded write). This
//! module does not interpret commands; `apply` does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{ClientWriteError, RaftError};
use openraft::rt::WatchReceiver;
use openraft::ReadPolicy;
use setpoint_proto::etcdserverpb::ResponseHeader;
use setpoint_proto::setpointpb::peer_client::PeerClient;
use setpoint_proto::setpointpb::ReadIndexRequest;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

use super::forward::Forwarder;
use super::network::{peer_channel, peer_client};
use super::types::{Member, Raft};
use super::{ApplyResult, Command, NodeId};
use crate::error::{Error, Result};
use crate::metrics::ForwardMetrics;

type ReadWaiter = oneshot::Sender<Result<()>>;

/// Facts about the Raft state for Status and headers.
#[derive(Debug, Clone, Default)]
pub struct RaftStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
}

/// Setpoint's Raft member.
pub struct RaftNode {
    pub raft: Raft,
    pub id: NodeId,
    pub cluster_id: u64,
    request_timeout: Duration,
    reads: mpsc::UnboundedSender<ReadWaiter>,
    /// Links to the members writes and read-index requests were sent to.
    peers: Mutex<HashMap<NodeId, PeerLink>>,
    forward_metrics: ForwardMetrics,
}

/// What this member keeps for talking to one other member.
struct PeerLink {
    /// The peer URL the channel was made for.
    url: String,
    channel: Channel,
    /// The write stream to it, once a write was forwarded there.
    forwarder: Option<Forwarder>,
}

impl RaftNode {
    pub fn new(
        raft: Raft,
        id: NodeId,
        cluster_id: u64,
        request_timeout: Duration,
        forward_metrics: ForwardMetrics,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let node = Arc::new(RaftNode {
            raft,
            id,
            cluster_id,
            request_timeout,
            reads: tx,
            peers: Mutex::new(HashMap::new()),
            forward_metrics,
        });
        tokio::spawn(read_index_loop(Arc::downgrade(&node), rx));
        node
    }

    pub fn status(&self) -> RaftStatus {
        // Read the fields in place: this runs for every response header.
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        RaftStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        }
    }

    /// Members as Raft's current membership has them.
    pub fn members(&self) -> Vec<(NodeId, Member)> {
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    /// etcd's response header for a given store revision.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.status().term,
        }
    }

    /// Replicates `cmd` and returns what applying it answered; forwards to the leader when
    /// this member is a follower.
    pub async fn propose(&self, cmd: Command) -> Result<ApplyResult> {
        match tokio::time::timeout(self.request_timeout, self.propose_inner(cmd)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn propose_inner(&self, cmd: Command) -> Result<ApplyResult> {
        loop {
            match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(node)) if id != self.id => {
                            // A leader whose outbound traffic is lost (one-way partition) takes
                            // the request but never answers, so stop waiting once this member
                            // sees an election or another leader: the outcome is unknown (etcd's
                            // "leader changed") and the request is never sent again from here.
                            let forwarded = tokio::select! {
                                r = self.forward(id, &node, &cmd) => r,
                                r = self.leader_changed(id) => r.and(Err(Error::LeaderChanged)),
                            };
                            match forwarded {
                                // The leader we know of is gone and never saw the request: wait for
                                // the next one and try again (still inside the request timeout).
                                Err(Error::NoLeader) => {
                                    tokio::time::sleep(Duration::from_millis(50)).await
                                }
                                other => return other,
                            }
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(Error::LeaderChanged)
                }
                Err(RaftError::Fatal(e)) => return Err(Error::Internal(e.to_string())),
                Err(RaftError::APIError(e)) => return Err(Error::Internal(e.to_string())),
            }
        }
    }

    /// Proposes only if this member leads (the receiving end of a forwarded write).
    pub async fn propose_as_leader(&self, cmd: Command) -> Result<ApplyResult> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(Error::NotLeader),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(Error::LeaderChanged)
            }
            Err(e) => Err(Error::Internal(e.to_string())),
        }
    }

    /// Runs `f` on the kept link to member `id`, made on first use and remade when the
    /// member's peer URL changed (a member re-added under another URL).
    fn with_link<T>(
        &self,
        id: NodeId,
        member: &Member,
        f: impl FnOnce(&mut PeerLink) -> T,
    ) -> Result<T> {
        let url = member.peer_urls.first().cloned().unwrap_or_default();
        let mut peers = self
            .peers
            .lock()
            .map_err(|_| Error::Internal("peer channel table poisoned".into()))?;
        let link = match peers.remove(&id) {
            Some(link) if link.url == url => link,
            _ => PeerLink {
                channel: peer_channel(member).map_err(Error::Internal)?,
                url,
                forwarder: None,
            },
        };
        Ok(f(peers.entry(id).or_insert(link)))
    }

    /// A client on the kept channel to member `id` (lazily connecting, and reconnecting by
    /// itself after the peer restarts).
    fn peer(&self, id: NodeId, member: &Member) -> Result<PeerClient<Channel>> {
        self.with_link(id, member, |link| peer_client(link.channel.clone()))
    }

    /// The write stream to member `id`, over its kept channel (made on first use).
    fn forwarder(&self, id: NodeId, member: &Member) -> Result<Forwarder> {
        self.with_link(id, member, |link| {
            link.forwarder
                .get_or_insert_with(|| {
                    Forwarder::new(
                        peer_client(link.channel.clone()),
                        self.forward_metrics.clone(),
                    )
                })
                .clone()
        })
    }

    async fn forward(&self, id: NodeId, leader: &Member, cmd: &Command) -> Result<ApplyResult> {
        match self.forwarder(id, leader)?.forward(cmd).await {
            Err(Error::NotLeader) => Err(Error::LeaderChanged),
            other => other,
        }
    }

    /// Returns once this member has applied everything committed before the call: the point
    /// after which a local read is linearizable.
    pub async fn read_index(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.reads.send(tx).map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The leader's confirmed read index (only on the leader).
    pub async fn leader_read_index(&self) -> Result<u64> {
        let linearizer = self
            .raft
            .get_read_linearizer(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| match e {
                RaftError::APIError(openraft::errors::LinearizableReadError::ForwardToLeader(
                    _,
                )) => Error::NotLeader,
                RaftError::APIError(_) => Error::Timeout,
                RaftError::Fatal(f) => Error::Internal(f.to_string()),
            })?;
        Ok(linearizer.read_log_id().log_id().index)
    }

    /// One read-index round: find the leader's read index, wait to apply it locally.
    async fn read_round(&self) -> Result<()> {
        let index = loop {
            let status = self.status();
            match status.leader {
                Some(l) if l == self.id => match self.leader_read_index().await {
                    Err(Error::NotLeader) => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => break other?,
                },
                // Asking a leader that has lost its outbound traffic would hang this round (and
                // every read queued behind it) until the connection dies: ask again once another
                // member leads. A read index is safe to fetch twice.
                Some(l) => tokio::select! {
                    r = self.remote_read_index(l) => break r?,
                    r = self.leader_changed(l) => {
                        r?;
                        continue;
                    }
                },
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.raft
            .wait(Some(self.request_timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|_| Error::Timeout)?;
        Ok(())
    }

    /// Hands leadership from this member (which must lead) to the voter `target`, and returns
    /// once this member sees `target` lead: etcd's MoveLeader. The transfer is Raft's: the
    /// target is told to start an election at once, which it wins when its log is up to date.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<()> {
        let mut metrics = self.raft.server_metrics();
        {
            let m = metrics.borrow_watched();
            if m.current_leader != Some(self.id) {
                return Err(Error::NotLeader);
            }
            if !m.membership_config.voter_ids().any(|v| v == target) {
                return Err(Error::BadLeaderTransferee);
            }
        }
        if target == self.id {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|_| Error::Stopped)?;
        let led_by_target = async {
            loop {
                if metrics.borrow_watched().current_leader == Some(target) {
                    return Ok(());
                }
                metrics.changed().await.map_err(|_| Error::Stopped)?;
            }
        };
        tokio::time::timeout(self.request_timeout, led_by_target)
            .await
            .map_err(|_| Error::LeaderTransferTimeout)?
    }

    /// Resolves once this member no longer takes `leader` for the leader (another member was
    /// elected, or an election is under way); `Stopped` if Raft shut down first.
    ///
    /// It watches the server metrics, which change only with the vote, leader or membership:
    /// the full metrics change with every append and apply, and waking every forwarded write
    /// in flight on each of those cost a follower more CPU than forwarding them.
    async fn leader_changed(&self, leader: NodeId) -> Result<()> {
        let mut metrics = self.raft.server_metrics();
        loop {
            if metrics.borrow_watched().current_leader != Some(leader) {
                return Ok(());
            }
            metrics.changed().await.map_err(|_| Error::Stopped)?;
        }
    }

    async fn remote_read_index(&self, leader: NodeId) -> Result<u64> {
        let member = self
            .members()
            .into_iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, m)| m)
            .ok_or(Error::NoLeader)?;
        let reply = self
            .peer(leader, &member)?
            .read_index(ReadIndexRequest {})
            .await
            .map_err(|_| Error::LeaderChanged)?;
        Ok(reply.into_inner().index)
    }
}

/// Serves read-index waiters in rounds: every waiter queued when a round starts shares it.
async fn read_index_loop(
    node: std::sync::Weak<RaftNode>,
    mut rx: mpsc::UnboundedReceiver<ReadWaiter>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        let Some(node) = node.upgrade() else { return };
        let result = node.read_round().await;
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
