//! The resumable watcher against in-process mock Watch servers that follow a
//! script per created watch: where it resumes after a server dies or closes
//! the stream, that nothing is delivered twice or skipped, fragment
//! reassembly, and how server cancels and cancel requests end a watcher.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use setpoint_client::proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_client::proto::etcdserverpb::watch_server::{Watch, WatchServer};
use setpoint_client::proto::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use setpoint_client::proto::mvccpb::{event::EventType, Event, KeyValue};
use setpoint_client::{Client, ClientError, ConnectOptions, WatchBatch, WatchOptions, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

const WATCH_ID: i64 = 7;

/// What a mock does after a create request, in order; once the list is
/// exhausted the stream stays open (and answers cancel requests).
enum Action {
    Respond(WatchResponse),
    /// End the stream with this status.
    Fail(Status),
    /// End the stream cleanly (OK status).
    End,
}

/// The script: given the create request and how many creates this mock saw
/// before it, what to do.
type Plan = Box<dyn Fn(&WatchCreateRequest, usize) -> Vec<Action> + Send + Sync>;

struct State {
    plan: Plan,
    creates: Mutex<Vec<WatchCreateRequest>>,
    cancels: Mutex<Vec<i64>>,
    require_leader: Mutex<Vec<Option<String>>>,
}

impl State {
    fn creates(&self) -> Vec<WatchCreateRequest> {
        self.creates.lock().expect("lock").clone()
    }
    fn starts(&self) -> Vec<i64> {
        self.creates().iter().map(|c| c.start_revision).collect()
    }
}

struct Mock(Arc<State>);

#[tonic::async_trait]
impl Watch for Mock {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let leader = req
            .metadata()
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.0.require_leader.lock().expect("lock").push(leader);
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let state = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = incoming.message().await {
                match msg.request_union {
                    Some(RequestUnion::CreateRequest(create)) => {
                        let n = {
                            let mut creates = state.creates.lock().expect("lock");
                            creates.push(create.clone());
                            creates.len() - 1
                        };
                        for action in (state.plan)(&create, n) {
                            match action {
                                Action::Respond(resp) => {
                                    if tx.send(Ok(resp)).await.is_err() {
                                        return;
                                    }
                                }
                                Action::Fail(status) => {
                                    let _ = tx.send(Err(status)).await;
                                    return;
                                }
                                Action::End => return,
                            }
                        }
                    }
                    Some(RequestUnion::CancelRequest(cancel)) => {
                        state.cancels.lock().expect("lock").push(cancel.watch_id);
                        let _ = tx
                            .send(Ok(WatchResponse {
                                header: header(0),
                                watch_id: cancel.watch_id,
                                canceled: true,
                                ..Default::default()
                            }))
                            .await;
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn spawn_mock(
    plan: impl Fn(&WatchCreateRequest, usize) -> Vec<Action> + Send + Sync + 'static,
) -> (SocketAddr, Arc<State>) {
    let state = Arc::new(State {
        plan: Box::new(plan),
        creates: Mutex::new(Vec::new()),
        cancels: Mutex::new(Vec::new()),
        require_leader: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let svc = WatchServer::new(Mock(state.clone()));
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (addr, state)
}

/// A TCP proxy in front of a mock; `kill` drops the listener and every
/// connection at once, as if the member's process died.
struct Proxy {
    addr: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(backend: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("lock").push(conn);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Proxy { addr, tasks }
    }

    fn kill(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn created(revision: i64) -> Action {
    Action::Respond(WatchResponse {
        header: header(revision),
        watch_id: WATCH_ID,
        created: true,
        ..Default::default()
    })
}

/// A put of `key` at `revision`, valued with both.
fn ev(revision: i64, key: &str) -> Event {
    Event {
        r#type: EventType::Put as i32,
        kv: Some(KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: 2,
            mod_revision: revision,
            version: 1,
            value: format!("{key}@{revision}").into_bytes(),
            lease: 0,
        }),
        prev_kv: None,
    }
}

fn events(header_revision: i64, events: Vec<Event>) -> Action {
    Action::Respond(WatchResponse {
        header: header(header_revision),
        watch_id: WATCH_ID,
        events,
        ..Default::default()
    })
}

fn fragment(header_revision: i64, events: Vec<Event>) -> Action {
    Action::Respond(WatchResponse {
        header: header(header_revision),
        watch_id: WATCH_ID,
        fragment: true,
        events,
        ..Default::default()
    })
}

fn progress(revision: i64) -> Action {
    events(revision, Vec::new())
}

fn canceled(compact_revision: i64, reason: &str) -> WatchResponse {
    WatchResponse {
        header: header(100),
        watch_id: WATCH_ID,
        canceled: true,
        compact_revision,
        cancel_reason: reason.to_string(),
        ..Default::default()
    }
}

/// The history both members of the failover tests serve: one put per
/// revision 2..=11, except revision 5, a txn that put two keys.
fn history(from: i64, to: i64) -> Vec<Vec<Event>> {
    (from.max(2)..=to)
        .map(|rev| {
            if rev == 5 {
                vec![ev(5, "k/a"), ev(5, "k/b")]
            } else {
                vec![ev(rev, "k/a")]
            }
        })
        .collect()
}

fn options() -> ConnectOptions {
    ConnectOptions {
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(300),
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        watch_resume_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn client(endpoints: Vec<String>) -> Client {
    Client::connect(endpoints, options())
        .await
        .expect("connect")
}

async fn next(w: &mut Watcher) -> WatchBatch {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a batch within 10 s")
        .expect("no error")
        .expect("watcher still open")
}

async fn next_err(w: &mut Watcher) -> ClientError {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("an answer within 10 s")
        .expect_err("an error")
}

/// (revision, key) of every event in the batches.
fn revs(batches: &[WatchBatch]) -> Vec<(i64, String)> {
    batches
        .iter()
        .flat_map(|b| &b.events)
        .filter_map(|e| e.kv.as_ref())
        .map(|kv| {
            (
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key).into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn resumes_on_next_endpoint_after_member_dies_without_dup_or_gap() {
    // A serves revisions 2..=6 (5 is two events), in uneven responses, then
    // dies. B, asked to resume, replays from two revisions earlier than it
    // was asked (a sloppy server): the client must drop the overlap.
    let (a, state_a) = spawn_mock(|_, _| {
        let h = history(2, 6);
        vec![
            created(1),
            events(3, [&h[0][..], &h[1][..]].concat()),
            events(4, h[2].clone()),
            events(6, [&h[3][..], &h[4][..]].concat()),
        ]
    })
    .await;
    let (b, state_b) = spawn_mock(|create, _| {
        let mut plan = vec![created(11)];
        for evs in history(create.start_revision - 2, 11) {
            plan.push(events(11, evs));
        }
        plan
    })
    .await;
    let proxy = Proxy::start(a).await;
    let c = client(vec![proxy.addr.clone(), b.to_string()]).await;
    let mut w = c
        .watch("k/", WatchOptions::default().with_prefix("k/"))
        .await
        .expect("watch");
    assert_eq!(w.endpoint(), Some(0));
    let mut got = Vec::new();
    while revs(&got).last().map(|r| r.0) != Some(6) {
        got.push(next(&mut w).await);
    }
    assert_eq!(w.resume_revision(), 7);
    proxy.kill();
    while revs(&got).last().map(|r| r.0) != Some(11) {
        got.push(next(&mut w).await);
    }
    let mut want: Vec<(i64, String)> = (2..=11).map(|r| (r, "k/a".to_string())).collect();
    want.insert(4, (5, "k/b".to_string()));
    assert_eq!(revs(&got), want);
    assert!(got
        .iter()
        .all(|b| !b.progress_notify && !b.events.is_empty()));
    assert_eq!(state_a.starts(), vec![0]);
    assert_eq!(state_b.starts(), vec![7], "resumed right after revision 6");
    assert_eq!(state_b.creates()[0].range_end, b"k0");
    assert_eq!(w.endpoint(), Some(1));
    assert_eq!(c.current_endpoint(), 1);
    // Both streams asked the server to require a leader.
    for state in [&state_a, &state_b] {
        assert_eq!(
            *state.require_leader.lock().expect("lock"),
            vec![Some("true".to_string())]
        );
    }
}

#[tokio::test]
async fn without_events_resumes_after_the_created_revision() {
    let (a, state_a) = spawn_mock(|_, _| {
        vec![
            created(41),
            Action::Fail(Status::unavailable("etcdserver: no leader")),
        ]
    })
    .await;
    let (b, state_b) = spawn_mock(|_, _| vec![created(45), events(45, vec![ev(42, "k")])]).await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let mut w = c.watch("k", WatchOptions::default()).await.expect("watch");
    assert_eq!(w.resume_revision(), 42);
    let batch = next(&mut w).await;
    assert_eq!(revs(&[batch]), vec![(42, "k".to_string())]);
    assert_eq!(state_a.starts(), vec![0]);
    assert_eq!(state_b.starts(), vec![42]);
}

#[tokio::test]
async fn without_events_resumes_at_the_requested_start_revision() {
    let (a, _) = spawn_mock(|_, _| vec![created(30), Action::Fail(Status::internal("boom"))]).await;
    let (b, state_b) = spawn_mock(|create, _| {
        let mut plan = vec![created(30)];
        for rev in create.start_revision..=6 {
            plan.push(events(30, vec![ev(rev, "k")]));
        }
        plan
    })
    .await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let mut w = c
        .watch("k", WatchOptions::default().with_start_revision(5))
        .await
        .expect("watch");
    let got = vec![next(&mut w).await, next(&mut w).await];
    assert_eq!(revs(&got), vec![(5, "k".to_string()), (6, "k".to_string())]);
    assert_eq!(state_b.starts(), vec![5]);
}

#[tokio::test]
async fn progress_notify_advances_the_resume_point_and_closed_stream_resumes() {
    // A sends a progress notification, then closes the stream cleanly.
    let (a, state_a) = spawn_mock(|_, _| vec![created(10), progress(20), Action::End]).await;
    let (b, state_b) = spawn_mock(|_, _| {
        vec![
            created(25),
            events(25, vec![ev(21, "k")]),
            events(25, vec![ev(25, "k")]),
        ]
    })
    .await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let mut w = c
        .watch("k", WatchOptions::default().with_progress_notify())
        .await
        .expect("watch");
    let p = next(&mut w).await;
    assert!(p.progress_notify);
    assert!(p.events.is_empty());
    assert_eq!(p.header_revision, 20);
    assert_eq!(w.resume_revision(), 21);
    let got = vec![next(&mut w).await, next(&mut w).await];
    assert_eq!(
        revs(&got),
        vec![(21, "k".to_string()), (25, "k".to_string())]
    );
    assert!(state_a.creates()[0].progress_notify);
    assert_eq!(state_b.starts(), vec![21]);
}

#[tokio::test]
async fn fragments_are_reassembled_into_one_batch() {
    let (a, state_a) = spawn_mock(|_, _| {
        vec![
            created(4),
            fragment(5, vec![ev(5, "a"), ev(5, "b")]),
            fragment(5, vec![ev(5, "c")]),
            events(5, vec![ev(5, "d")]),
            events(6, vec![ev(6, "e")]),
        ]
    })
    .await;
    let c = client(vec![a.to_string()]).await;
    let mut w = c
        .watch("", WatchOptions::default().with_prefix("").with_fragment())
        .await
        .expect("watch");
    let first = next(&mut w).await;
    assert_eq!(first.header_revision, 5);
    assert_eq!(
        revs(std::slice::from_ref(&first)),
        ["a", "b", "c", "d"].map(|k| (5, k.to_string()))
    );
    let second = next(&mut w).await;
    assert_eq!(revs(&[second]), vec![(6, "e".to_string())]);
    let create = &state_a.creates()[0];
    assert!(create.fragment);
    assert_eq!(create.range_end, [0]);
}

#[tokio::test]
async fn interrupted_fragments_are_discarded_and_the_revision_resent_whole() {
    let (a, _) = spawn_mock(|_, _| {
        vec![
            created(4),
            fragment(5, vec![ev(5, "a"), ev(5, "b")]),
            Action::Fail(Status::unavailable("member stopping")),
        ]
    })
    .await;
    let (b, state_b) = spawn_mock(|_, _| {
        vec![
            created(6),
            events(6, ["a", "b", "c"].map(|k| ev(5, k)).to_vec()),
            events(6, vec![ev(6, "d")]),
        ]
    })
    .await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let mut w = c
        .watch("", WatchOptions::default().with_from_key().with_fragment())
        .await
        .expect("watch");
    let got = vec![next(&mut w).await, next(&mut w).await];
    assert_eq!(
        revs(&got),
        vec![
            (5, "a".to_string()),
            (5, "b".to_string()),
            (5, "c".to_string()),
            (6, "d".to_string())
        ]
    );
    assert_eq!(got[0].events.len(), 3);
    assert_eq!(state_b.starts(), vec![5]);
}

#[tokio::test]
async fn compaction_cancel_is_an_error_and_ends_the_watcher() {
    let (a, state_a) =
        spawn_mock(|_, _| vec![created(100), Action::Respond(canceled(50, ""))]).await;
    let (b, state_b) = spawn_mock(|_, _| vec![created(100)]).await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let mut w = c
        .watch("k", WatchOptions::default().with_start_revision(2))
        .await
        .expect("watch");
    let err = next_err(&mut w).await;
    assert!(
        matches!(
            err,
            ClientError::Compacted {
                compact_revision: 50
            }
        ),
        "{err:?}"
    );
    assert!(matches!(w.next().await, Ok(None)));
    assert_eq!(state_a.creates().len(), 1);
    assert!(state_b.creates().is_empty(), "a compaction is not resumed");
}

#[tokio::test]
async fn compaction_at_create_fails_the_watch_call() {
    let (a, _) = spawn_mock(|_, _| {
        let mut resp = canceled(50, "");
        resp.created = true;
        vec![Action::Respond(resp)]
    })
    .await;
    let (b, state_b) = spawn_mock(|_, _| vec![created(100)]).await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let err = c
        .watch("k", WatchOptions::default().with_start_revision(2))
        .await
        .expect_err("compacted");
    assert!(
        matches!(
            err,
            ClientError::Compacted {
                compact_revision: 50
            }
        ),
        "{err:?}"
    );
    assert!(state_b.creates().is_empty());
}

#[tokio::test]
async fn cancel_reason_is_an_error() {
    let (a, _) = spawn_mock(|_, _| {
        vec![
            created(3),
            Action::Respond(canceled(0, "etcdserver: permission denied")),
        ]
    })
    .await;
    let c = client(vec![a.to_string()]).await;
    let mut w = c.watch("k", WatchOptions::default()).await.expect("watch");
    match next_err(&mut w).await {
        ClientError::WatchCanceled { reason } => {
            assert_eq!(reason, "etcdserver: permission denied")
        }
        other => panic!("expected WatchCanceled, got {other:?}"),
    }
    assert!(matches!(w.next().await, Ok(None)));
}

#[tokio::test]
async fn cancel_sends_a_cancel_request_and_ends_without_resuming() {
    let (a, state_a) = spawn_mock(|_, _| vec![created(3)]).await;
    let (b, state_b) = spawn_mock(|_, _| vec![created(3)]).await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let mut w = c.watch("k", WatchOptions::default()).await.expect("watch");
    assert_eq!(w.watch_id(), Some(WATCH_ID));
    w.cancel().await.expect("server confirms");
    assert_eq!(*state_a.cancels.lock().expect("lock"), vec![WATCH_ID]);
    assert!(matches!(w.next().await, Ok(None)));
    assert_eq!(w.watch_id(), None);
    assert_eq!(state_a.creates().len(), 1);
    assert!(state_b.creates().is_empty());
}

#[tokio::test]
async fn gives_up_after_the_resume_timeout() {
    // The only member accepts every watch and drops it at once.
    let (a, state_a) = spawn_mock(|_, _| {
        vec![
            created(8),
            Action::Fail(Status::unavailable("etcdserver: no leader")),
        ]
    })
    .await;
    let c = Client::connect(
        vec![a.to_string()],
        ConnectOptions {
            watch_resume_timeout: Duration::from_millis(600),
            ..options()
        },
    )
    .await
    .expect("connect");
    let mut w = c.watch("k", WatchOptions::default()).await.expect("watch");
    let began = Instant::now();
    let err = next_err(&mut w).await;
    let took = began.elapsed();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err:?}");
    assert!(took >= Duration::from_millis(500), "gave up after {took:?}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    let starts = state_a.starts();
    assert!(starts.len() >= 3, "retried: {starts:?}");
    assert_eq!(starts[0], 0);
    assert!(starts[1..].iter().all(|&s| s == 9), "{starts:?}");
    assert!(matches!(w.next().await, Ok(None)));
}

#[tokio::test]
async fn invalid_request_is_neither_retried_nor_failed_over() {
    let (a, state_a) = spawn_mock(|_, _| {
        vec![Action::Fail(Status::invalid_argument(
            "etcdserver: key is not provided",
        ))]
    })
    .await;
    let (b, state_b) = spawn_mock(|_, _| vec![created(3)]).await;
    let c = client(vec![a.to_string(), b.to_string()]).await;
    let err = c
        .watch("k", WatchOptions::default())
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert_eq!(state_a.creates().len(), 1);
    assert!(state_b.creates().is_empty());
}

#[tokio::test]
async fn create_fails_over_when_first_member_is_down() {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let (b, state_b) = spawn_mock(|_, _| vec![created(3), events(4, vec![ev(4, "k")])]).await;
    let c = client(vec![down, b.to_string()]).await;
    let mut w = c.watch("k", WatchOptions::default()).await.expect("watch");
    assert_eq!(w.endpoint(), Some(1));
    assert_eq!(revs(&[next(&mut w).await]), vec![(4, "k".to_string())]);
    assert_eq!(state_b.starts(), vec![0]);
}
