//! Writes a follower forwards to the leader: one stream per leader, many writes per message.
//!
//! openraft takes proposals only on the leader, so a write sent to a follower is proposed by
//! the leader and its verdict comes back. A call per write cost both members an HTTP/2
//! stream, headers, trailers and a task each: more CPU than the write itself. Here a follower
//! keeps one `Forward` stream to the leader it knows ([`Forwarder`]). Every write queued
//! while a message was being sent goes in the next message, and the leader ([`serve`])
//! proposes each as it arrives and answers, in one message, every verdict ready at once.
//!
//! This module neither picks the leader nor retries: `node` does both. It promises only
//! which failures are safe to retry: [`Error::NoLeader`] means the write certainly did not
//! reach the leader, [`Error::Timeout`] that it may have.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use setpoint_proto::setpointpb::peer_client::PeerClient;
use setpoint_proto::setpointpb::{ForwardBatch, ForwardVerdict, ForwardVerdicts, ForwardedWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::node::RaftNode;
use super::{ApplyResult, Command};
use crate::error::{Error, Result};
use crate::metrics::ForwardMetrics;

/// Most writes in one message.
const MAX_BATCH_WRITES: usize = 512;
/// A message takes no more writes once their commands reach this many bytes (a single
/// larger write still travels alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

type Reply = oneshot::Sender<Result<ApplyResult>>;

/// A write waiting for the stream.
struct Queued {
    command: Bytes,
    reply: Reply,
}

/// The follower's end of the stream to one leader; cheap to clone.
///
/// Its task opens the stream with the first write, and again with the first write after the
/// stream ended. It ends with the last handle, once every write handed to it is answered.
#[derive(Clone)]
pub struct Forwarder {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Forwarder {
    pub fn new(client: PeerClient<Channel>, metrics: ForwardMetrics) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, rx, metrics));
        Forwarder { queue }
    }

    /// Has the leader propose `cmd` and returns its verdict. `NoLeader`: it never reached
    /// the leader; `Timeout`: the stream broke after it was sent (the outcome is unknown).
    pub async fn forward(&self, cmd: &Command) -> Result<ApplyResult> {
        let command = bincode::serialize(cmd).map_err(|e| Error::Internal(e.to_string()))?;
        let (reply, verdict) = oneshot::channel();
        self.queue
            .send(Queued {
                command: command.into(),
                reply,
            })
            .map_err(|_| Error::Stopped)?;
        // A task gone without answering may have sent the write.
        verdict.await.unwrap_or(Err(Error::Timeout))
    }
}

async fn run(
    mut client: PeerClient<Channel>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    metrics: ForwardMetrics,
) {
    while let Some(first) = queue.recv().await {
        let batch = fill(&mut queue, first);
        stream(&mut client, &mut queue, batch, &metrics).await;
    }
}

/// `first` and every write already queued after it, up to one message's worth.
fn fill(queue: &mut mpsc::UnboundedReceiver<Queued>, first: Queued) -> Vec<Queued> {
    let mut bytes = first.command.len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
        let Ok(next) = queue.try_recv() else { break };
        bytes += next.command.len();
        batch.push(next);
    }
    batch
}

/// The writes of one stream, sent and not yet answered, by id.
struct InFlight<'a> {
    sent: mpsc::UnboundedSender<ForwardBatch>,
    waiting: HashMap<u64, Reply>,
    next_id: u64,
    metrics: &'a ForwardMetrics,
}

impl InFlight<'_> {
    fn send(&mut self, batch: Vec<Queued>) {
        let mut writes = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for q in batch {
            self.next_id += 1;
            writes.push(ForwardedWrite {
                id: self.next_id,
                command: q.command,
            });
            replies.push((self.next_id, q.reply));
        }
        if self.sent.send(ForwardBatch { writes }).is_err() {
            // The stream is gone and this message never left.
            for (_, reply) in replies {
                let _ = reply.send(Err(Error::NoLeader));
            }
            return;
        }
        self.metrics.messages.inc();
        self.metrics.writes.inc_by(replies.len() as u64);
        self.waiting.extend(replies);
    }

    fn answer(&mut self, verdicts: ForwardVerdicts) {
        for v in verdicts.verdicts {
            if let Some(reply) = self.waiting.remove(&v.id) {
                let verdict = bincode::deserialize::<Result<ApplyResult>>(&v.verdict)
                    .unwrap_or_else(|e| Err(Error::Internal(e.to_string())));
                let _ = reply.send(verdict);
            }
        }
    }

    fn fail_all(&mut self, error: Error) {
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// One stream: opened with `first`, then fed from `queue` until it breaks or the queue closes
/// and every write sent is answered.
async fn stream(
    client: &mut PeerClient<Channel>,
    queue: &mut mpsc::UnboundedReceiver<Queued>,
    first: Vec<Queued>,
    metrics: &ForwardMetrics,
) {
    let (sent, outbound) = mpsc::unbounded_channel();
    let mut inflight = InFlight {
        sent,
        waiting: HashMap::new(),
        next_id: 0,
        metrics,
    };
    inflight.send(first);
    let mut inbound = match client.forward(UnboundedReceiverStream::new(outbound)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            tracing::debug!(%status, "cannot open the write stream to the leader");
            inflight.fail_all(if never_sent(&status) {
                Error::NoLeader
            } else {
                Error::Timeout
            });
            return;
        }
    };
    let mut queue_open = true;
    loop {
        tokio::select! {
            next = queue.recv(), if queue_open => match next {
                Some(q) => inflight.send(fill(queue, q)),
                None => queue_open = false,
            },
            message = inbound.message() => match message {
                Ok(Some(verdicts)) => inflight.answer(verdicts),
                Ok(None) | Err(_) => {
                    if let Err(status) = message {
                        tracing::debug!(%status, "the write stream to the leader broke");
                    }
                    // Sent, maybe proposed: the outcome of each is unknown.
                    inflight.fail_all(Error::Timeout);
                    return;
                }
            },
        }
        if !queue_open && inflight.waiting.is_empty() {
            return;
        }
    }
}

/// Whether a failed peer call certainly never reached the peer (no connection was made), so
/// the request may be sent again without risk of applying it twice.
fn never_sent(status: &Status) -> bool {
    use std::error::Error as _;
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotConnected
            );
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    status.message().contains("tcp connect error")
}

/// The leader's end of a follower's stream: proposes each write as its message arrives and
/// sends every verdict ready at once in one message. A write whose follower went away stays
/// proposed; only its verdict is lost.
pub fn serve(node: Arc<RaftNode>, inbound: Streaming<ForwardBatch>) -> Verdicts {
    serve_with(inbound, move |cmd| {
        let node = node.clone();
        async move { node.propose_as_leader(cmd).await }
    })
}

/// The stream of verdicts [`serve`] answers with.
pub type Verdicts = UnboundedReceiverStream<std::result::Result<ForwardVerdicts, Status>>;

/// [`serve`] with the proposing step given (tests stand in for Raft).
fn serve_with<F, P>(mut inbound: Streaming<ForwardBatch>, propose: F) -> Verdicts
where
    F: Fn(Command) -> P + Send + 'static,
    P: Future<Output = Result<ApplyResult>> + Send + 'static,
{
    let (out, verdicts) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut proposing = FuturesUnordered::new();
        let mut inbound_open = true;
        loop {
            tokio::select! {
                message = inbound.message(), if inbound_open => match message {
                    Ok(Some(batch)) => {
                        for write in batch.writes {
                            proposing.push(verdict_of(write, &propose));
                        }
                    }
                    Ok(None) | Err(_) => inbound_open = false,
                },
                Some(first) = proposing.next(), if !proposing.is_empty() => {
                    let mut ready = vec![first];
                    // And every other one already decided, polled with this task's context.
                    std::future::poll_fn(|cx| {
                        while let Poll::Ready(Some(more)) = proposing.poll_next_unpin(cx) {
                            ready.push(more);
                        }
                        Poll::Ready(())
                    })
                    .await;
                    if out.send(Ok(ForwardVerdicts { verdicts: ready })).is_err() {
                        return;
                    }
                }
                else => return,
            }
        }
    });
    UnboundedReceiverStream::new(verdicts)
}

fn verdict_of<F, P>(write: ForwardedWrite, propose: &F) -> impl Future<Output = ForwardVerdict>
where
    F: Fn(Command) -> P,
    P: Future<Output = Result<ApplyResult>>,
{
    let proposed = bincode::deserialize::<Command>(&write.command)
        .map(propose)
        .map_err(|e| Error::Internal(format!("undecodable forwarded write: {e}")));
    async move {
        let verdict = match proposed {
            Ok(p) => p.await,
            Err(e) => Err(e),
        };
        // A verdict that cannot be serialized goes back empty, which the follower reads as
        // an internal error.
        ForwardVerdict {
            id: write.id,
            verdict: bincode::serialize(&verdict).unwrap_or_default().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use setpoint_proto::setpointpb::peer_server::{Peer, PeerServer};
    use setpoint_proto::setpointpb::{RaftPayload, ReadIndexRequest, ReadIndexResponse};
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response};

    use super::*;
    use crate::metrics::Metrics;

    type Answer<T> = std::result::Result<Response<T>, Status>;

    /// A stand-in leader, serving the `Forward` stream as `behaviour` says.
    struct StandInLeader {
        streams: Arc<AtomicUsize>,
        behaviour: Behaviour,
    }

    #[derive(Clone)]
    enum Behaviour {
        /// Each stream takes one message, answers every write in it with the stream's number
        /// as the revision, and ends.
        OneMessage,
        /// Each stream takes one message, answers nothing, and ends.
        Silent,
        /// Streams are served as the real leader serves them ([`serve_with`]), each write
        /// decided only once the test releases the sender it left here.
        Held(Held),
        /// Streams are served as the real leader serves them, each write decided after 0-3 ms;
        /// the counter counts the writes decided.
        Delayed(Arc<AtomicUsize>),
    }

    fn applied(revision: i64) -> ApplyResult {
        ApplyResult {
            revision,
            body: Vec::new(),
            error: None,
        }
    }

    type Held = Arc<std::sync::Mutex<Vec<oneshot::Sender<()>>>>;

    fn held_proposal(held: &Held) -> impl Future<Output = Result<ApplyResult>> {
        let (release, released) = oneshot::channel();
        held.lock().expect("held").push(release);
        async move {
            released.await.map_err(|_| Error::Stopped)?;
            Ok(applied(7))
        }
    }

    #[tonic::async_trait]
    impl Peer for StandInLeader {
        async fn append_entries(&self, _: Request<RaftPayload>) -> Answer<RaftPayload> {
            Err(Status::unimplemented("not a Raft member"))
        }
        async fn vote(&self, _: Request<RaftPayload>) -> Answer<RaftPayload> {
            Err(Status::unimplemented("not a Raft member"))
        }
        async fn install_snapshot(&self, _: Request<RaftPayload>) -> Answer<RaftPayload> {
            Err(Status::unimplemented("not a Raft member"))
        }
        async fn transfer_leader(&self, _: Request<RaftPayload>) -> Answer<RaftPayload> {
            Err(Status::unimplemented("not a Raft member"))
        }
        async fn read_index(&self, _: Request<ReadIndexRequest>) -> Answer<ReadIndexResponse> {
            Err(Status::unimplemented("not a Raft member"))
        }

        type ForwardStream = UnboundedReceiverStream<std::result::Result<ForwardVerdicts, Status>>;

        async fn forward(
            &self,
            req: Request<Streaming<ForwardBatch>>,
        ) -> Answer<Self::ForwardStream> {
            let stream = self.streams.fetch_add(1, Ordering::SeqCst) + 1;
            let silent = match self.behaviour.clone() {
                Behaviour::OneMessage => false,
                Behaviour::Silent => true,
                Behaviour::Held(held) => {
                    return Ok(Response::new(serve_with(req.into_inner(), move |_| {
                        held_proposal(&held)
                    })));
                }
                Behaviour::Delayed(decided) => {
                    return Ok(Response::new(serve_with(req.into_inner(), move |_| {
                        let n = decided.fetch_add(1, Ordering::SeqCst);
                        async move {
                            tokio::time::sleep(Duration::from_millis((n % 4) as u64)).await;
                            Ok(applied(7))
                        }
                    })));
                }
            };
            let mut inbound = req.into_inner();
            let (out, verdicts) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                if let Ok(Some(batch)) = inbound.message().await {
                    if silent {
                        return;
                    }
                    let verdict: Result<ApplyResult> = Ok(applied(stream as i64));
                    let verdict = Bytes::from(bincode::serialize(&verdict).expect("encode"));
                    let verdicts = batch
                        .writes
                        .iter()
                        .map(|w| ForwardVerdict {
                            id: w.id,
                            verdict: verdict.clone(),
                        })
                        .collect();
                    let _ = out.send(Ok(ForwardVerdicts { verdicts }));
                }
            });
            Ok(Response::new(UnboundedReceiverStream::new(verdicts)))
        }
    }

    async fn forwarder_to(leader: StandInLeader) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PeerServer::new(leader))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        forwarder_at(addr).await
    }

    async fn forwarder_at(addr: std::net::SocketAddr) -> Forwarder {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        let metrics = Metrics::new().expect("metrics").forward;
        Forwarder::new(PeerClient::new(channel), metrics)
    }

    fn command() -> Command {
        Command::Put(b"a put".to_vec())
    }

    #[tokio::test]
    async fn a_stream_that_ended_is_opened_again_for_later_writes() {
        let streams = Arc::new(AtomicUsize::new(0));
        let f = forwarder_to(StandInLeader {
            streams: streams.clone(),
            behaviour: Behaviour::OneMessage,
        })
        .await;
        let first = f.forward(&command()).await.expect("first write");
        assert_eq!(first.revision, 1);
        // A write racing the end of the first stream may be lost with it (its outcome
        // unknown); one after it must travel on a new stream.
        let mut later = None;
        for _ in 0..20 {
            match f.forward(&command()).await {
                Ok(r) => {
                    later = Some(r);
                    break;
                }
                Err(Error::Timeout) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        let later = later.expect("no write went through after the first stream ended");
        assert!(later.revision >= 2, "answered on stream {}", later.revision);
        assert!(streams.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn writes_on_a_stream_that_ends_unanswered_end_as_unknown() {
        let f = forwarder_to(StandInLeader {
            streams: Arc::new(AtomicUsize::new(0)),
            behaviour: Behaviour::Silent,
        })
        .await;
        let verdict = tokio::time::timeout(Duration::from_secs(10), f.forward(&command()))
            .await
            .expect("a write on a dead stream must not wait forever");
        assert_eq!(verdict, Err(Error::Timeout));
    }

    #[tokio::test]
    async fn a_write_to_a_leader_that_cannot_be_reached_was_never_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let f = forwarder_at(addr).await;
        assert_eq!(f.forward(&command()).await, Err(Error::NoLeader));
    }

    /// Waits (bounded) until `n` writes are being proposed.
    async fn proposing(held: &Held, n: usize) {
        for _ in 0..500 {
            if held.lock().expect("held").len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} writes never reached the proposing step");
    }

    #[tokio::test]
    async fn a_verdict_decided_after_an_earlier_one_was_sent_is_sent_too() {
        let held = Held::default();
        let f = forwarder_to(StandInLeader {
            streams: Arc::new(AtomicUsize::new(0)),
            behaviour: Behaviour::Held(held.clone()),
        })
        .await;
        let first = tokio::spawn({
            let f = f.clone();
            async move { f.forward(&command()).await }
        });
        proposing(&held, 1).await;
        let second = tokio::spawn({
            let f = f.clone();
            async move { f.forward(&command()).await }
        });
        proposing(&held, 2).await;
        // The first is decided and answered while the second is still being proposed.
        let release_first = held.lock().expect("held").remove(0);
        let _ = release_first.send(());
        let verdict = first.await.expect("first write's task");
        assert_eq!(verdict.map(|r| r.revision), Ok(7));
        let release_second = held.lock().expect("held").remove(0);
        let _ = release_second.send(());
        let verdict = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second verdict was never sent")
            .expect("second write's task");
        assert_eq!(verdict.map(|r| r.revision), Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_write_of_a_steady_load_is_answered() {
        let decided = Arc::new(AtomicUsize::new(0));
        let f = forwarder_to(StandInLeader {
            streams: Arc::new(AtomicUsize::new(0)),
            behaviour: Behaviour::Delayed(decided.clone()),
        })
        .await;
        // 50 clients, 40 writes each, one at a time, as a load generator sends them.
        let clients = (0..50).map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let verdict =
                        tokio::time::timeout(Duration::from_secs(10), f.forward(&command()))
                            .await
                            .expect("a write was never answered");
                    assert_eq!(verdict.map(|r| r.revision), Ok(7));
                }
            })
        });
        for client in futures::future::join_all(clients).await {
            client.expect("client task");
        }
        assert_eq!(decided.load(Ordering::SeqCst), 2000);
    }
}
