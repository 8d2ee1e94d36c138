//! The watch workload: writers put, delete and run multi-key txns on a few keys while
//! watchers watch one key, the prefix or a sub-range, from random revisions, on random
//! members, and reconnect to another random member (from the revision after the last event
//! they got) whenever a stream breaks. Each watcher's events must be exactly its slice of
//! the revision history all members agree on (`checker::watch`).
//!
//! Watches here use raw gRPC streams, not setpoint-client's resuming `Watcher`, so nothing
//! between the server and the checker drops a duplicate or hides a gap.

use super::{ops, AckedWrite, Ctx, Outcome, Proc};
use crate::checker::watch::{Change, Keys, Observation};
use crate::cluster::lock;
use crate::history::{Op, OpType, Process};
use futures::channel::mpsc;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use setpoint_client::proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_client::proto::etcdserverpb::{
    response_op, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use setpoint_client::proto::mvccpb::event::EventType;
use setpoint_client::{prefix_range_end, Client};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PREFIX: &str = "jw/";
/// After the progress notification that ends a watch, this long without a response means
/// nothing sent before it is still on the way (etcd 3.4 may answer progress before queued
/// events).
const QUIET: Duration = Duration::from_secs(2);
const KEYS: u64 = 8;

fn key(i: u64) -> Vec<u8> {
    format!("{PREFIX}{i}").into_bytes()
}

/// The ranges watchers pick from.
fn ranges() -> Vec<Keys> {
    vec![
        Keys::One(key(3)),
        Keys::Range(
            PREFIX.as_bytes().to_vec(),
            prefix_range_end(PREFIX.as_bytes()),
        ),
        Keys::Range(key(2), key(6)),
    ]
}

fn keys_json(k: &Keys) -> Value {
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    match k {
        Keys::One(a) => json!({"key": s(a)}),
        Keys::From(a) => json!({"from": s(a)}),
        Keys::Range(a, b) => json!({"key": s(a), "range_end": s(b)}),
    }
}

/// Why a raw watch stream ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The start revision is compacted away (the server's compact revision).
    Compacted(i64),
    /// Anything else: connection lost, no leader, server error.
    Broken(String),
}

/// A raw watch stream on one member: one watcher, events as they come.
pub struct RawWatch {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

impl RawWatch {
    /// Opens a stream on `client`'s member and creates a watch over `keys` from `start`.
    pub async fn open(
        client: &Client,
        keys: &Keys,
        start: i64,
        require_leader: bool,
        timeout: Duration,
    ) -> Result<RawWatch, StreamEnd> {
        let (key, range_end) = match keys {
            Keys::One(k) => (k.clone(), Vec::new()),
            Keys::From(k) => (k.clone(), vec![0]),
            Keys::Range(k, e) => (k.clone(), e.clone()),
        };
        let (mut requests, rx) = mpsc::channel(4);
        requests
            .try_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key,
                    range_end,
                    start_revision: start,
                    ..Default::default()
                })),
            })
            .map_err(|e| StreamEnd::Broken(e.to_string()))?;
        let mut request = tonic::Request::new(rx);
        if require_leader {
            request.metadata_mut().insert(
                "hasleader",
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        let mut wc = client.watch_client();
        let opened = tokio::time::timeout(timeout, async {
            let mut responses = wc
                .watch(request)
                .await
                .map_err(|e| StreamEnd::Broken(e.to_string()))?
                .into_inner();
            match responses.message().await {
                Ok(Some(r)) if r.created && !r.canceled => Ok(responses),
                Ok(Some(r)) if r.compact_revision > 0 => {
                    Err(StreamEnd::Compacted(r.compact_revision))
                }
                Ok(Some(r)) => Err(StreamEnd::Broken(format!(
                    "watch not created: {}",
                    r.cancel_reason
                ))),
                Ok(None) => Err(StreamEnd::Broken("stream closed".into())),
                Err(e) => Err(StreamEnd::Broken(e.to_string())),
            }
        })
        .await
        .map_err(|_| StreamEnd::Broken("timed out creating the watch".into()))??;
        Ok(RawWatch {
            requests,
            responses: opened,
        })
    }

    /// The next response's events, or `Ok(None)` for a progress notification carrying the
    /// header revision, or how the stream ended.
    pub async fn next(&mut self) -> Result<(Vec<Change>, Option<i64>), StreamEnd> {
        match self.responses.message().await {
            Ok(Some(r)) => {
                if r.canceled {
                    if r.compact_revision > 0 {
                        return Err(StreamEnd::Compacted(r.compact_revision));
                    }
                    return Err(StreamEnd::Broken(format!("canceled: {}", r.cancel_reason)));
                }
                let changes: Vec<Change> = r
                    .events
                    .iter()
                    .filter_map(|e| {
                        let kv = e.kv.as_ref()?;
                        Some(Change {
                            revision: kv.mod_revision,
                            key: kv.key.clone(),
                            value: (e.r#type == EventType::Put as i32).then(|| kv.value.clone()),
                        })
                    })
                    .collect();
                let progress = if r.events.is_empty() {
                    r.header.map(|h| h.revision)
                } else {
                    None
                };
                Ok((changes, progress))
            }
            Ok(None) => Err(StreamEnd::Broken("stream closed by the server".into())),
            Err(e) => Err(StreamEnd::Broken(e.to_string())),
        }
    }

    /// Asks for a progress notification.
    pub fn request_progress(&mut self) -> bool {
        self.requests
            .try_send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            })
            .is_ok()
    }
}

/// Runs one writer process until the run's deadline.
pub async fn writer(ctx: &Ctx, mut proc: Proc) {
    let mut rng = ctx.rng(proc.number);
    while ctx.running() {
        let mut chosen: Vec<u64> = (0..KEYS).collect();
        chosen.shuffle(&mut rng);
        let n = match rng.gen_range(0..4) {
            0 => rng.gen_range(2..=3),
            _ => 1,
        };
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for &k in &chosen[..n] {
            let value = (!rng.gen_bool(0.25)).then(|| ctx.unique().to_string().into_bytes());
            writes.push((key(k), value));
        }
        let shown: Vec<Value> = writes
            .iter()
            .map(|(k, v)| {
                json!([
                    String::from_utf8_lossy(k),
                    v.as_ref().map(|v| String::from_utf8_lossy(v).to_string())
                ])
            })
            .collect();
        let value = Value::Array(shown);
        let mut applied: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let outcome = proc
            .invoke(ctx, "wtxn", value.clone(), |c| {
                write_txn(c, writes, value, &mut applied)
            })
            .await;
        if outcome.kind == OpType::Ok {
            for (key, value) in applied {
                ctx.ack(AckedWrite {
                    revision: outcome.revision.unwrap_or(0),
                    key,
                    value,
                });
            }
        }
        ctx.think(&mut rng).await;
    }
}

/// One put, one delete, or a txn of several; `applied` gets the changes that made events
/// (a delete of a missing key makes none).
async fn write_txn(
    c: Client,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    value: Value,
    applied: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Outcome {
    let result = if writes.len() == 1 {
        let (k, v) = &writes[0];
        match v {
            Some(v) => c
                .put(PutRequest {
                    key: k.clone(),
                    value: v.clone(),
                    ..Default::default()
                })
                .await
                .map(|r| (r.header.map(|h| h.revision), vec![true])),
            None => c
                .delete_range(DeleteRangeRequest {
                    key: k.clone(),
                    ..Default::default()
                })
                .await
                .map(|r| (r.header.map(|h| h.revision), vec![r.deleted > 0])),
        }
    } else {
        let req = TxnRequest {
            compare: vec![],
            success: writes
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => ops::put(k, v),
                    None => ops::delete(k),
                })
                .collect(),
            failure: vec![],
        };
        c.txn(req).await.map(|r| {
            let changed = r
                .responses
                .iter()
                .map(|op| match &op.response {
                    Some(response_op::Response::ResponseDeleteRange(d)) => d.deleted > 0,
                    _ => true,
                })
                .collect();
            (r.header.map(|h| h.revision), changed)
        })
    };
    match result {
        Ok((revision, changed)) => {
            for (w, changed) in writes.into_iter().zip(changed) {
                if changed {
                    applied.push(w);
                }
            }
            Outcome::ok(value, revision.unwrap_or(0))
        }
        Err(e) => Outcome::from_error(value, &e, false),
    }
}

/// The current revision as member `member` sees it.
async fn current_revision(client: &Client) -> Option<i64> {
    client
        .range(RangeRequest {
            key: key(0),
            serializable: true,
            ..Default::default()
        })
        .await
        .ok()
        .and_then(|r| r.header.map(|h| h.revision))
}

/// One logical watch: a key range from a start revision, carried across streams on random
/// members until it ends.
struct Session {
    keys: Keys,
    start: i64,
    member: usize,
    changes: Vec<Change>,
    stream: Option<RawWatch>,
    reconnects: u64,
    compacted: Option<i64>,
    /// Revisions whose events came in two responses (a txn delivered in parts).
    split: Vec<i64>,
}

/// What one step of a session produced.
enum Step {
    Events,
    /// A progress notification with this header revision.
    Progress(i64),
    /// Nothing before the time limit.
    Idle,
    /// The stream broke or could not be opened; the session moved to another member.
    Moved,
}

impl Session {
    /// Opens a stream if there is none, or waits (until `until`) for the next response.
    async fn step(&mut self, ctx: &Ctx, rng: &mut rand::rngs::StdRng, until: Instant) -> Step {
        let n = ctx.cluster.size();
        let Some(stream) = self.stream.as_mut() else {
            let next = self.changes.last().map_or(self.start, |c| c.revision + 1);
            let opened = match ctx.cluster.client(self.member, ctx.timeout).await {
                Ok(c) => RawWatch::open(&c, &self.keys, next, true, ctx.timeout).await,
                Err(e) => Err(StreamEnd::Broken(e.to_string())),
            };
            return match opened {
                Ok(s) => {
                    self.stream = Some(s);
                    Step::Idle
                }
                Err(end) => self.ended(end, rng, n).await,
            };
        };
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => Step::Idle,
            Ok(Ok((got, progress))) => {
                if let (Some(prev), Some(first)) = (self.changes.last(), got.first()) {
                    if prev.revision == first.revision {
                        self.split.push(first.revision);
                    }
                }
                self.changes.extend(got);
                match progress {
                    Some(rev) => Step::Progress(rev),
                    None => Step::Events,
                }
            }
            Ok(Err(end)) => self.ended(end, rng, n).await,
        }
    }

    async fn ended(&mut self, end: StreamEnd, rng: &mut rand::rngs::StdRng, n: usize) -> Step {
        self.stream = None;
        match end {
            StreamEnd::Compacted(r) => self.compacted = Some(r),
            StreamEnd::Broken(_) => {
                self.reconnects += 1;
                self.member = rng.gen_range(0..n);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Step::Moved
    }

    fn last_revision(&self) -> i64 {
        self.changes.last().map_or(self.start - 1, |c| c.revision)
    }

    /// After the run: waits for the final revision, then reads until a progress notification
    /// at or past it and a quiet second after that, so nothing sent is still in flight.
    /// Returns the revision the session is complete through, or `None` if it could not.
    async fn finish(&mut self, ctx: &Ctx, rng: &mut rand::rngs::StdRng) -> Option<i64> {
        let limit = Instant::now() + Duration::from_secs(180);
        let last = loop {
            let f = ctx.final_revision.load(Ordering::SeqCst);
            if f > 0 {
                break f;
            }
            if Instant::now() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let limit = Instant::now() + Duration::from_secs(60);
        let mut progressed = false;
        let mut quiet_since = Instant::now();
        while Instant::now() < limit && self.compacted.is_none() {
            if let Some(s) = self.stream.as_mut() {
                if !progressed {
                    s.request_progress();
                }
            }
            match self
                .step(ctx, rng, Instant::now() + Duration::from_secs(1))
                .await
            {
                Step::Progress(rev) if rev >= last => {
                    progressed = true;
                    quiet_since = Instant::now();
                }
                Step::Idle if progressed && quiet_since.elapsed() >= QUIET => {
                    return Some(last.max(self.start - 1))
                }
                Step::Idle => {}
                Step::Events => quiet_since = Instant::now(),
                Step::Moved => progressed = false,
                _ => {}
            }
        }
        None
    }
}

/// Runs one watcher process until the run's deadline; its observations go to `out`. The
/// last observation stays open until the run's final revision is known and checks the
/// whole tail; earlier ones end at their last event (a progress notification does not
/// promise, on every etcd version, that earlier events were sent).
pub async fn watcher(ctx: &Ctx, mut proc: Proc, out: &Mutex<Vec<Observation>>) {
    let mut rng = ctx.rng(proc.number);
    let n = ctx.cluster.size();
    while ctx.running() {
        let keys = ranges()
            .choose(&mut rng)
            .cloned()
            .unwrap_or(Keys::One(key(0)));
        let member = rng.gen_range(0..n);
        let Ok(client) = ctx.cluster.client(member, ctx.timeout).await else {
            ctx.think(&mut rng).await;
            continue;
        };
        let Some(now) = current_revision(&client).await else {
            ctx.think(&mut rng).await;
            continue;
        };
        let start = rng.gen_range((now - 30).max(1)..=now + 1);
        let span = Duration::from_millis(rng.gen_range(2_000..8_000));
        proc.member = member;
        let process = Process::Client(proc.number);
        let invoke = json!({"keys": keys_json(&keys), "start": start});
        ctx.recorder.record(Op {
            index: 0,
            time: 0,
            process,
            kind: OpType::Invoke,
            f: "watch".into(),
            value: invoke.clone(),
            error: None,
            member: Some(member),
            revision: None,
        });
        let mut session = Session {
            keys,
            start,
            member,
            changes: Vec::new(),
            stream: None,
            reconnects: 0,
            compacted: None,
            split: Vec::new(),
        };
        let until = Instant::now() + span;
        while Instant::now() < until && ctx.running() && session.compacted.is_none() {
            session.step(ctx, &mut rng, until.min(ctx.deadline)).await;
        }
        let mut complete_through = session.last_revision();
        let mut kind = OpType::Ok;
        if !ctx.running() && session.compacted.is_none() {
            match session.finish(ctx, &mut rng).await {
                Some(r) => complete_through = r.max(session.last_revision()),
                // The tail could not be confirmed: only what arrived is checked.
                None => kind = OpType::Info,
            }
        }
        let shown: Vec<Value> = session
            .changes
            .iter()
            .map(|c| {
                json!([
                    c.revision,
                    String::from_utf8_lossy(&c.key),
                    c.value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).to_string())
                ])
            })
            .collect();
        ctx.recorder.record(Op {
            index: 0,
            time: 0,
            process,
            kind,
            f: "watch".into(),
            value: json!({
                "keys": keys_json(&session.keys),
                "start": start,
                "complete_through": complete_through,
                "reconnects": session.reconnects,
                "compacted": session.compacted,
                "split_revisions": session.split,
                "changes": shown,
            }),
            error: None,
            member: Some(session.member),
            revision: Some(complete_through),
        });
        if !session.split.is_empty() {
            lock(&ctx.split_txns).extend(session.split.iter().copied());
        }
        lock(out).push(Observation {
            keys: session.keys,
            start_revision: start,
            complete_through,
            changes: session.changes,
        });
        ctx.think(&mut rng).await;
    }
}
