//! Randomized watch check on three real members: puts, deletes and txns go in through every
//! member while members are kill -9'd and restarted; watchers start at random revisions on
//! random members, over random key ranges, some with prev_kv; when their member dies (or
//! the test drops their stream on purpose) they resume on another member from the last
//! revision they saw + 1. At the end every member must give the same full history, every
//! acknowledged write must be in it, and every watcher's events must be exactly the slice of
//! that history it asked for: in order, no duplicates, no gaps, txns whole, prev_kv right.
//! Members snapshot every 30 entries, so a restarted member may catch up by snapshot.
//! The seed is printed; `WATCH_HISTORY_SEED=N` replays a run's choices.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{setpoint_bin, Cluster};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use setpoint_client::proto::etcdserverpb::watch_client::WatchClient;
use setpoint_client::proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_client::proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use setpoint_client::proto::mvccpb::event::EventType;
use setpoint_client::{Client, ConnectOptions};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const KEYS: usize = 8;
const WATCHERS: usize = 12;
const WRITE_FOR: Duration = Duration::from_secs(10);

/// Streams reopened after a break, over all watchers (the test must exercise resuming).
static RESUMES: AtomicUsize = AtomicUsize::new(0);

/// One event as a watcher saw it: (revision, is_delete, key, value, prev value).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    rev: i64,
    delete: bool,
    key: String,
    value: String,
    prev: Option<String>,
}

#[derive(Debug, Clone)]
struct Spec {
    member: usize,
    start: i64,
    key: String,
    range_end: String,
    prev_kv: bool,
    /// Drop the stream on purpose after this many event responses (then resume).
    drop_after: Option<usize>,
}

impl Spec {
    fn covers(&self, key: &str) -> bool {
        match self.range_end.as_str() {
            "" => key == self.key,
            "\0" => key >= self.key.as_str(),
            end => key >= self.key.as_str() && key < end,
        }
    }
}

fn key(i: usize) -> String {
    format!("k{i}")
}

fn random_spec(rng: &mut StdRng, current: i64) -> Spec {
    let (k, end) = match rng.gen_range(0..4) {
        0 => (key(rng.gen_range(0..KEYS)), String::new()),
        1 => ("k".to_string(), "l".to_string()),
        2 => ("\0".to_string(), "\0".to_string()),
        _ => (key(2), key(6)),
    };
    Spec {
        member: rng.gen_range(0..3),
        start: rng.gen_range(1..=current + 3),
        key: k,
        range_end: end,
        prev_kv: rng.gen_bool(0.5),
        drop_after: rng.gen_bool(0.4).then(|| rng.gen_range(1..20)),
    }
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn del_op(k: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: k.into(),
                ..Default::default()
            },
        )),
    }
}

/// What an acknowledged write promised: its revision and the puts it made.
type Ack = (i64, Vec<(String, String)>);

/// Random writes through all members until `WRITE_FOR` passes; returns acknowledged ones.
async fn writer(client: Client, seed: u64) -> Vec<Ack> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acks = Vec::new();
    let began = Instant::now();
    let mut n = 0;
    while began.elapsed() < WRITE_FOR {
        n += 1;
        let v = format!("v{n}");
        let k = key(rng.gen_range(0..KEYS));
        match rng.gen_range(0..10) {
            0..=5 => {
                let req = PutRequest {
                    key: k.clone().into(),
                    value: v.clone().into(),
                    ..Default::default()
                };
                if let Ok(r) = client.put(req).await {
                    acks.push((r.header.map_or(0, |h| h.revision), vec![(k, v)]));
                }
            }
            6..=7 => {
                let req = DeleteRangeRequest {
                    key: k.into(),
                    ..Default::default()
                };
                let _ = client.delete_range(req).await;
            }
            _ => {
                let (a, b, c) = (
                    key(rng.gen_range(0..KEYS)),
                    key(rng.gen_range(0..KEYS)),
                    key(rng.gen_range(0..KEYS)),
                );
                let mut ops = vec![put_op(&a, &v)];
                let mut puts = vec![(a.clone(), v.clone())];
                if b != a {
                    ops.push(put_op(&b, &v));
                    puts.push((b.clone(), v.clone()));
                }
                if c != a && c != b {
                    ops.push(del_op(&c));
                }
                let req = TxnRequest {
                    success: ops,
                    ..Default::default()
                };
                if let Ok(r) = client.txn(req).await {
                    acks.push((r.header.map_or(0, |h| h.revision), puts));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2..15))).await;
    }
    acks
}

fn to_seen(e: &setpoint_client::proto::mvccpb::Event) -> Seen {
    let kv = e.kv.clone().unwrap_or_default();
    Seen {
        rev: kv.mod_revision,
        delete: e.r#type == EventType::Delete as i32,
        key: String::from_utf8_lossy(&kv.key).into(),
        value: String::from_utf8_lossy(&kv.value).into(),
        prev: e
            .prev_kv
            .as_ref()
            .map(|p| String::from_utf8_lossy(&p.value).into()),
    }
}

/// Runs one watcher to the end: until a progress response shows it has everything up to the
/// final revision. Resumes on another member whenever its stream breaks.
async fn watcher(
    spec: Spec,
    endpoints: Vec<String>,
    mut final_rev: watch::Receiver<Option<i64>>,
) -> Result<Vec<Seen>, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen: Vec<Seen> = Vec::new();
    let mut next = spec.start;
    let mut member = spec.member;
    let mut responses = 0usize;
    let mut dropped = false;
    let mut opened_once = false;
    'streams: loop {
        if Instant::now() > deadline {
            return Err(format!(
                "watcher {spec:?} did not finish; next revision {next}"
            ));
        }
        let (tx, rx) = mpsc::channel(4);
        let create = WatchCreateRequest {
            key: spec.key.clone().into(),
            range_end: spec.range_end.clone().into(),
            start_revision: next,
            prev_kv: spec.prev_kv,
            ..Default::default()
        };
        let _ = tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await;
        let opened = async {
            let mut c = WatchClient::connect(endpoints[member].clone()).await.ok()?;
            c.watch(ReceiverStream::new(rx)).await.ok()
        };
        let Some(resp) = tokio::time::timeout(Duration::from_secs(2), opened)
            .await
            .ok()
            .flatten()
        else {
            member = (member + 1) % endpoints.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if opened_once {
            RESUMES.fetch_add(1, Ordering::Relaxed);
        }
        opened_once = true;
        let mut stream = resp.into_inner();
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(Ok(r)) = msg else {
                        // The member died or refused: resume elsewhere.
                        member = (member + 1) % endpoints.len();
                        continue 'streams;
                    };
                    if r.canceled {
                        return Err(format!("watch canceled: {r:?}"));
                    }
                    if r.created {
                        continue;
                    }
                    if r.watch_id == -1 {
                        let target = *final_rev.borrow();
                        if let Some(t) = target {
                            if r.header.as_ref().is_some_and(|h| h.revision >= t) {
                                return Ok(seen);
                            }
                        }
                        continue;
                    }
                    for e in &r.events {
                        let s = to_seen(e);
                        if s.rev < next {
                            return Err(format!("event at {} after resuming from {next}", s.rev));
                        }
                        seen.push(s);
                    }
                    if let Some(last) = seen.last() {
                        next = last.rev + 1;
                    }
                    responses += 1;
                    if !dropped && spec.drop_after == Some(responses) {
                        dropped = true;
                        member = (member + 1) % endpoints.len();
                        continue 'streams;
                    }
                }
                _ = tick.tick() => {
                    if final_rev.borrow_and_update().is_some() {
                        let progress = WatchRequest {
                            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                        };
                        if tx.send(progress).await.is_err() {
                            continue 'streams;
                        }
                    }
                }
            }
        }
    }
}

/// The history as the server keeps it: everything from revision 1 on every key.
fn full_spec() -> Spec {
    Spec {
        member: 0,
        start: 1,
        key: "\0".into(),
        range_end: "\0".into(),
        prev_kv: true,
        drop_after: None,
    }
}

/// The value each key had just before each revision, from the history (for prev_kv).
fn expected_prev(history: &[Seen], upto_rev: i64, key: &str) -> Option<String> {
    let mut value = None;
    for e in history.iter().filter(|e| e.rev < upto_rev && e.key == key) {
        value = (!e.delete).then(|| e.value.clone());
    }
    value
}

#[test]
fn watchers_see_exactly_their_slice_of_history_across_failures() {
    let seed: u64 = std::env::var("WATCH_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("WATCH_HISTORY_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    // Frequent snapshots: a member restarted after missing writes may catch up by installing
    // one, and its watchers must still see every revision.
    let mut cluster = Cluster::start(&setpoint_bin(), 3, &["--snapshot-count", "30"]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client::connect(endpoints.clone(), ConnectOptions::default())
            .await
            .expect("connect");
        let (final_tx, final_rx) = watch::channel(None);
        let writes = tokio::spawn(writer(client.clone(), rng.gen()));

        let mut specs = Vec::new();
        let mut watchers = Vec::new();
        let began = Instant::now();
        let mut faults = vec![
            Duration::from_millis(rng.gen_range(1500..3000)),
            Duration::from_millis(rng.gen_range(5000..7000)),
        ];
        let mut next_watcher = Duration::ZERO;
        while began.elapsed() < WRITE_FOR {
            if specs.len() < WATCHERS && began.elapsed() >= next_watcher {
                let current = client
                    .range(RangeRequest {
                        key: "k".into(),
                        serializable: true,
                        ..Default::default()
                    })
                    .await
                    .ok()
                    .and_then(|r| r.header)
                    .map_or(1, |h| h.revision);
                let spec = random_spec(&mut rng, current);
                specs.push(spec.clone());
                watchers.push(tokio::spawn(watcher(
                    spec,
                    endpoints.clone(),
                    final_rx.clone(),
                )));
                next_watcher += WRITE_FOR / WATCHERS as u32;
            }
            if faults.first().is_some_and(|&t| began.elapsed() >= t) {
                faults.remove(0);
                let victim = rng.gen_range(0..3);
                println!("kill -9 member {victim} at {:?}", began.elapsed());
                cluster.members[victim].kill();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2000))).await;
                cluster.members[victim].start();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let acks = writes.await.expect("writer");
        for i in 0..3 {
            cluster.wait_ready(i);
        }
        let final_rev = client
            .range(RangeRequest {
                key: "k".into(),
                ..Default::default()
            })
            .await
            .expect("final read")
            .header
            .expect("header")
            .revision;
        final_tx
            .send(Some(final_rev))
            .expect("announce final revision");
        println!(
            "{} acknowledged writes, final revision {final_rev}",
            acks.len()
        );

        // Ground truth: the full history from every member, which must agree.
        let rx = final_rx.clone();
        let histories: Vec<Vec<Seen>> = futures::future::join_all(
            (0..3).map(|m| watcher(full_spec(), vec![endpoints[m].clone()], rx.clone())),
        )
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("full history from every member");
        let history = histories[0].clone();
        for (m, h) in histories.iter().enumerate() {
            assert_eq!(h, &history, "member {m} has a different history");
        }
        let revs: Vec<i64> = history.iter().map(|e| e.rev).collect();
        let mut distinct = revs.clone();
        distinct.dedup();
        assert_eq!(
            distinct,
            (2..=final_rev).collect::<Vec<_>>(),
            "revisions without gaps"
        );
        for e in &history {
            if e.delete {
                assert_eq!(e.prev, expected_prev(&history, e.rev, &e.key), "{e:?}");
            }
        }
        for (rev, puts) in &acks {
            for (k, v) in puts {
                assert!(
                    history
                        .iter()
                        .any(|e| e.rev == *rev && !e.delete && &e.key == k && &e.value == v),
                    "acknowledged write {k}={v} at {rev} missing from the history"
                );
            }
        }

        // Every watcher: exactly its slice.
        let mut total = 0;
        for (spec, w) in specs.iter().zip(watchers) {
            let got = tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .expect("watcher finishes")
                .expect("watcher task")
                .unwrap_or_else(|e| panic!("{e}"));
            let want: Vec<Seen> = history
                .iter()
                .filter(|e| e.rev >= spec.start && spec.covers(&e.key))
                .map(|e| Seen {
                    prev: if spec.prev_kv && !e.delete {
                        expected_prev(&history, e.rev, &e.key)
                    } else if spec.prev_kv {
                        e.prev.clone()
                    } else {
                        None
                    },
                    ..e.clone()
                })
                .collect();
            assert_eq!(got, want, "watcher {spec:?}");
            total += got.len();
        }
        let resumes = RESUMES.load(Ordering::Relaxed);
        let installs: usize = cluster
            .members
            .iter()
            .map(|m| m.log_text().matches("installed snapshot").count())
            .sum();
        println!(
            "{} watchers checked, {total} events, {resumes} resumed streams, {installs} snapshot installs",
            specs.len()
        );
        assert!(
            resumes > 0,
            "no watcher resumed: the test did not exercise resuming"
        );
        assert!(
            total > 0,
            "the watchers saw nothing: the test checked nothing"
        );
        assert!(
            acks.len() > 50,
            "too few acknowledged writes: {}",
            acks.len()
        );
    });
}
