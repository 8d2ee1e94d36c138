//! Resumable watches. [`Client::watch`] opens one etcd v3 Watch stream for
//! one watcher and returns a [`Watcher`] that yields the changes of a key or
//! range as [`WatchBatch`]es, in revision order. When the stream fails
//! (connection lost, member stopped, `Unavailable`, the server closing the
//! stream) the watcher re-creates the watch on the next endpoint, starting
//! right after the last event or progress notification it delivered, and
//! drops anything the new member repeats: no event is delivered twice and
//! none is skipped. It is meant for callers that must see every change once
//! across member failures (tests, Jepsen checkers, tools). It is not a
//! multiplexer (each `Watcher` owns a gRPC stream: thousands of watchers
//! should share streams through the raw [`Client::watch_client`]), and it
//! does not hide compaction: a resume point that has been compacted away ends
//! the watcher with [`ClientError::Compacted`], and the caller must re-read.
//!
//! Streams are opened with etcd's "require leader" metadata, so a member
//! that loses its leader closes them (`Unavailable: no leader`) instead of
//! silently serving a stale view; the watcher then moves on.

use std::fmt;
use std::mem;
use std::time::Instant;

use futures::channel::mpsc;
use futures::SinkExt;
use setpoint_proto::etcdserverpb::watch_client::WatchClient;
use setpoint_proto::etcdserverpb::watch_create_request::FilterType;
use setpoint_proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use setpoint_proto::mvccpb::Event;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::retry::{classify, FailureClass};

/// The watch id etcd puts on the answer to a `WatchProgressRequest`: it
/// concerns every watcher of the stream.
const BROADCAST_WATCH_ID: i64 = -1;

/// etcd's metadata asking the server to close the stream when it has no
/// leader (`rpctypes.MetadataRequireLeaderKey` / `MetadataHasLeader`).
const REQUIRE_LEADER_KEY: &str = "hasleader";
const REQUIRE_LEADER_VALUE: &str = "true";

/// What to watch besides the key, and how. Start from `Default` (just the
/// key, changes from now on) and use the `with_*` helpers or set fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// End of the watched range, exclusive. Empty: the key alone. `[0]`:
    /// every key from the key on. See [`WatchOptions::with_prefix`].
    pub range_end: Vec<u8>,
    /// First revision to deliver (history is replayed from there). 0 or
    /// less: changes made after the watch is created.
    pub start_revision: i64,
    /// Ask for each event's previous key-value.
    pub prev_kv: bool,
    /// Leave out put events.
    pub no_put: bool,
    /// Leave out delete events.
    pub no_delete: bool,
    /// Ask the server for periodic progress notifications while idle.
    pub progress_notify: bool,
    /// Let the server split a large revision over several responses; the
    /// watcher reassembles them into one batch.
    pub fragment: bool,
}

impl WatchOptions {
    /// Watch every key starting with `prefix`: sets `range_end` to etcd's
    /// prefix end. Pass the same prefix as the key to [`Client::watch`]; an
    /// empty prefix watches the whole key space.
    pub fn with_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.range_end = prefix_range_end(prefix.as_ref());
        self
    }

    /// Watch every key greater than or equal to the key (`range_end` `[0]`).
    pub fn with_from_key(mut self) -> Self {
        self.range_end = vec![0];
        self
    }

    /// Watch keys in `[key, range_end)`.
    pub fn with_range_end(mut self, range_end: impl Into<Vec<u8>>) -> Self {
        self.range_end = range_end.into();
        self
    }

    /// Replay history from `revision` on.
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Ask for previous key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Leave out put events.
    pub fn with_no_put(mut self) -> Self {
        self.no_put = true;
        self
    }

    /// Leave out delete events.
    pub fn with_no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }

    /// Ask for periodic progress notifications.
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }

    /// Allow fragmented responses (reassembled by the watcher).
    pub fn with_fragment(mut self) -> Self {
        self.fragment = true;
        self
    }

    fn create_request(&self, key: Vec<u8>) -> WatchCreateRequest {
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        WatchCreateRequest {
            key,
            range_end: self.range_end.clone(),
            start_revision: self.start_revision.max(0),
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: self.fragment,
        }
    }
}

/// The `range_end` that makes a range or watch cover every key starting with
/// `prefix`, as etcd's clients compute it: the prefix with its last byte
/// below 0xff incremented and the rest cut off; `[0]` (every key from the
/// key on) when there is no such byte (empty prefix, all 0xff).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// What [`Watcher::next`] yields: the events of one server response (or of
/// the fragments of one), or a progress notification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchBatch {
    /// The store revision in the response header.
    pub header_revision: i64,
    /// The events, in revision order; empty for a progress notification.
    pub events: Vec<Event>,
    /// The server says every change up to `header_revision` has been sent.
    pub progress_notify: bool,
}

/// One watch on one stream, resumed on another endpoint when the stream
/// fails. Dropping it ends the stream; [`Watcher::cancel`] also tells the
/// server first.
pub struct Watcher {
    client: Client,
    /// The request the watch is (re-)created with; `start_revision` is
    /// replaced by `resume_revision` each time.
    create: WatchCreateRequest,
    /// Where a re-created watch starts: one past the last delivered event
    /// or progress notification, else the revision the watch started at (0
    /// only until the first Created response, for a watch "from now").
    resume_revision: i64,
    /// Revision of the last delivered event (0: none). Events at or below
    /// it are never delivered again.
    last_event_revision: i64,
    stream: Option<Stream>,
    /// Events of a fragmented response, until its last fragment.
    fragments: Vec<Event>,
    /// No more batches: canceled, or ended by an error.
    ended: bool,
    /// Start of the current run of failures without a healthy stream in
    /// between; resuming gives up `watch_resume_timeout` after it.
    failing_since: Instant,
    /// Failed attempts in that run (drives the backoff).
    failures: usize,
}

/// The live gRPC stream of a watcher.
struct Stream {
    endpoint: usize,
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
    watch_id: i64,
    /// The revision this stream's watch started at: the server must not
    /// send anything older, and what it does send is dropped.
    start_revision: i64,
    created_at: Instant,
    /// Something other than the Created response arrived on it.
    active: bool,
}

/// How long [`Watcher::connect`] keeps trying.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// This many attempts in all (creating a watch, like a unary request).
    Attempts(usize),
    /// Until this instant (resuming).
    Until(Instant),
}

impl Client {
    /// Watches `key` (and the range or prefix in `options`) on the current
    /// endpoint, failing over like a read if the watch cannot be created.
    /// Returns once the server confirmed the watch (Created response), so
    /// every change after that point will be delivered.
    pub async fn watch(&self, key: impl Into<Vec<u8>>, options: WatchOptions) -> Result<Watcher> {
        let mut watcher = Watcher {
            client: self.clone(),
            create: options.create_request(key.into()),
            resume_revision: options.start_revision.max(0),
            last_event_revision: 0,
            stream: None,
            fragments: Vec::new(),
            ended: false,
            failing_since: Instant::now(),
            failures: 0,
        };
        let attempts = self.policy().max_attempts;
        watcher.connect(Budget::Attempts(attempts), None).await?;
        watcher.failures = 0;
        Ok(watcher)
    }
}

impl Watcher {
    /// The next batch of events or progress notification; `Ok(None)` once
    /// the watcher was canceled or has returned an error. Resumes on another
    /// endpoint as needed (see the module docs); a server cancel becomes
    /// [`ClientError::Compacted`] or [`ClientError::WatchCanceled`].
    ///
    /// Cancel-safe: dropping the future loses nothing; the next call
    /// continues where it stopped.
    pub async fn next(&mut self) -> Result<Option<WatchBatch>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let Some(stream) = self.stream.as_mut() else {
                // A resume was interrupted (the caller dropped `next`).
                let deadline = self.failing_since + self.client.options().watch_resume_timeout;
                let result = self.connect(Budget::Until(deadline), None).await;
                self.end_on_error(result)?;
                continue;
            };
            let failure = match stream.responses.message().await {
                Ok(Some(resp)) => match self.handle(resp) {
                    Ok(Some(batch)) => return Ok(Some(batch)),
                    Ok(None) => continue,
                    Err(err) => return self.end_on_error(Err(err)),
                },
                Ok(None) => ClientError::StreamClosed,
                Err(status) => ClientError::Status(status),
            };
            if !resumable(&failure) {
                return self.end_on_error(Err(failure));
            }
            let result = self.resume(failure).await;
            self.end_on_error(result)?;
        }
    }

    /// Cancels the watch (`WatchCancelRequest`), waits up to the request
    /// timeout for the server to confirm, and ends the stream. Afterwards
    /// [`Watcher::next`] returns `Ok(None)`. Fails only with
    /// [`ClientError::Timeout`] when no confirmation came; the stream is
    /// closed either way.
    pub async fn cancel(&mut self) -> Result<()> {
        self.ended = true;
        self.fragments.clear();
        let Some(mut stream) = self.stream.take() else {
            return Ok(());
        };
        let watch_id = stream.watch_id;
        let request = WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
        };
        if stream.requests.send(request).await.is_err() {
            // The RPC is already over, and the watch with it.
            return Ok(());
        }
        let confirmed = async {
            loop {
                match stream.responses.message().await {
                    Ok(Some(resp)) if resp.canceled && resp.watch_id == watch_id => return,
                    Ok(Some(_)) => continue,
                    // The stream ended: so did the watch.
                    Ok(None) | Err(_) => return,
                }
            }
        };
        let timeout = self.client.options().request_timeout;
        let result = tokio::time::timeout(timeout, confirmed)
            .await
            .map_err(|_| ClientError::Timeout);
        stream.requests.close_channel();
        result
    }

    /// Asks the server for a progress notification (`WatchProgressRequest`);
    /// it arrives through [`Watcher::next`]. Fails with
    /// [`ClientError::StreamClosed`] if there is no live stream right now.
    pub async fn request_progress(&mut self) -> Result<()> {
        let stream = self.stream.as_mut().ok_or(ClientError::StreamClosed)?;
        let request = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        stream
            .requests
            .send(request)
            .await
            .map_err(|_| ClientError::StreamClosed)
    }

    /// The server's id of the watch on the current stream (`None` between
    /// streams and once ended).
    pub fn watch_id(&self) -> Option<i64> {
        self.stream.as_ref().map(|s| s.watch_id)
    }

    /// Index in [`Client::endpoints`] of the endpoint the current stream is
    /// on.
    pub fn endpoint(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.endpoint)
    }

    /// The revision a re-created watch would start at.
    pub fn resume_revision(&self) -> i64 {
        self.resume_revision
    }

    /// Interprets one response of the current stream; `Ok(None)` when there
    /// is nothing to deliver yet.
    fn handle(&mut self, resp: WatchResponse) -> Result<Option<WatchBatch>> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        if resp.watch_id != stream.watch_id && resp.watch_id != BROADCAST_WATCH_ID {
            return Ok(None);
        }
        if resp.canceled {
            return Err(cancel_error(&resp));
        }
        if resp.created {
            return Ok(None);
        }
        stream.active = true;
        let header_revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.fragment {
            self.fragments.extend(resp.events);
            return Ok(None);
        }
        let mut events = mem::take(&mut self.fragments);
        events.extend(resp.events);
        if events.is_empty() {
            // A watcher's own progress notification means every change up to the header
            // revision has been sent. A reply to a progress request (id -1) does not promise
            // that on every server (etcd 3.4 answers at once, ahead of queued events), so it
            // does not move the resume point.
            if resp.watch_id != BROADCAST_WATCH_ID {
                self.resume_revision = self.resume_revision.max(header_revision + 1);
            }
            return Ok(Some(WatchBatch {
                header_revision,
                events,
                progress_notify: true,
            }));
        }
        // Anything the server repeats (a resumed watch overlapping what was
        // delivered, or starting before where it was asked to) is dropped.
        let floor = stream.start_revision.max(self.last_event_revision + 1);
        events.retain(|ev| ev.kv.as_ref().is_none_or(|kv| kv.mod_revision >= floor));
        let Some(last) = events
            .iter()
            .rev()
            .find_map(|ev| ev.kv.as_ref().map(|kv| kv.mod_revision))
        else {
            return Ok(None);
        };
        self.last_event_revision = last;
        self.resume_revision = self.resume_revision.max(last + 1);
        Ok(Some(WatchBatch {
            header_revision,
            events,
            progress_notify: false,
        }))
    }

    /// The current stream failed with `failure`: move to the next endpoint
    /// and re-create the watch from `resume_revision`.
    async fn resume(&mut self, failure: ClientError) -> Result<()> {
        self.fragments.clear();
        let timeout = self.client.options().watch_resume_timeout;
        let Some(old) = self.stream.take() else {
            return Err(failure);
        };
        if old.active || old.created_at.elapsed() >= timeout {
            // The stream was healthy: this is a new run of failures.
            self.failing_since = Instant::now();
            self.failures = 0;
        } else {
            // It died before proving itself: part of the current run.
            self.failures += 1;
        }
        self.client.failover_from(old.endpoint);
        tracing::debug!(
            endpoint = %self.client.endpoints()[old.endpoint],
            resume_revision = self.resume_revision,
            error = %failure,
            "watch stream failed, resuming"
        );
        drop(old);
        let deadline = self.failing_since + timeout;
        self.connect(Budget::Until(deadline), Some(failure)).await
    }

    /// Opens streams, moving through the endpoints with backoff, until one
    /// carries a created watch or `budget` runs out (then returns the last
    /// error). Errors that another attempt cannot fix are returned at once.
    async fn connect(&mut self, budget: Budget, mut last: Option<ClientError>) -> Result<()> {
        let policy = self.client.policy();
        loop {
            if self.failures > 0 {
                let now = Instant::now();
                let delay = policy.backoff(self.failures - 1);
                let delay = match budget {
                    Budget::Attempts(n) if self.failures >= n => None,
                    Budget::Attempts(_) => Some(delay),
                    Budget::Until(deadline) if now >= deadline => None,
                    Budget::Until(deadline) => Some(delay.min(deadline - now)),
                };
                let Some(delay) = delay else {
                    return Err(last.unwrap_or(ClientError::Timeout));
                };
                tokio::time::sleep(delay).await;
            }
            let endpoint = self.client.current_endpoint();
            match self.open(endpoint).await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(err) if resumable(&err) => {
                    tracing::debug!(
                        endpoint = %self.client.endpoints()[endpoint],
                        error = %err,
                        failures = self.failures + 1,
                        "watch create failed"
                    );
                    self.client.failover_from(endpoint);
                    self.failures += 1;
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One attempt: a new stream on `endpoint` with the watch created from
    /// `resume_revision`, within the request timeout.
    async fn open(&mut self, endpoint: usize) -> Result<Stream> {
        let start = self.resume_revision;
        let create = WatchCreateRequest {
            start_revision: start,
            ..self.create.clone()
        };
        let (mut requests, rx) = mpsc::channel(4);
        requests
            .try_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .map_err(|_| ClientError::StreamClosed)?;
        let mut request = tonic::Request::new(rx);
        request.metadata_mut().insert(
            REQUIRE_LEADER_KEY,
            MetadataValue::from_static(REQUIRE_LEADER_VALUE),
        );
        let client = self.client.watch_client_at(endpoint);
        let timeout = self.client.options().request_timeout;
        let (responses, created) = tokio::time::timeout(timeout, await_created(client, request))
            .await
            .map_err(|_| ClientError::Timeout)??;
        if created.canceled {
            return Err(cancel_error(&created));
        }
        let start_revision = if start > 0 {
            start
        } else {
            // "From now": the server started right after its header revision.
            created.header.as_ref().map_or(0, |h| h.revision + 1)
        };
        if self.resume_revision <= 0 {
            self.resume_revision = start_revision;
        }
        Ok(Stream {
            endpoint,
            requests,
            responses,
            watch_id: created.watch_id,
            start_revision,
            created_at: Instant::now(),
            active: false,
        })
    }

    /// Ends the watcher if `result` is an error, passing it on.
    fn end_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.ended = true;
            self.stream = None;
            self.fragments.clear();
        }
        result
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("key", &String::from_utf8_lossy(&self.create.key))
            .field(
                "range_end",
                &String::from_utf8_lossy(&self.create.range_end),
            )
            .field("endpoint", &self.endpoint())
            .field("watch_id", &self.watch_id())
            .field("resume_revision", &self.resume_revision)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Starts the RPC and waits for the Created response (the create request is
/// already queued on the request stream).
async fn await_created(
    mut client: WatchClient<Channel>,
    request: tonic::Request<mpsc::Receiver<WatchRequest>>,
) -> Result<(Streaming<WatchResponse>, WatchResponse)> {
    let mut responses = client.watch(request).await?.into_inner();
    loop {
        match responses.message().await? {
            Some(resp) if resp.created => return Ok((responses, resp)),
            // Nothing precedes Created on a fresh stream; ignore strays.
            Some(_) => continue,
            None => return Err(ClientError::StreamClosed),
        }
    }
}

/// The error for a canceled watch response.
fn cancel_error(resp: &WatchResponse) -> ClientError {
    if resp.compact_revision != 0 {
        ClientError::Compacted {
            compact_revision: resp.compact_revision,
        }
    } else {
        ClientError::WatchCanceled {
            reason: resp.cancel_reason.clone(),
        }
    }
}

/// Whether a failed stream (or create attempt) is worth another try on
/// another endpoint: everything except a server cancel and statuses that
/// describe the request itself, which another member would answer alike.
fn resumable(err: &ClientError) -> bool {
    match err {
        ClientError::Status(status) => {
            classify(err) != FailureClass::Definite
                || !matches!(
                    status.code(),
                    Code::InvalidArgument
                        | Code::NotFound
                        | Code::AlreadyExists
                        | Code::PermissionDenied
                        | Code::Unauthenticated
                        | Code::FailedPrecondition
                        | Code::OutOfRange
                        | Code::Unimplemented
                )
        }
        ClientError::Transport(_) | ClientError::Timeout | ClientError::StreamClosed => true,
        ClientError::NoEndpoints
        | ClientError::InvalidEndpoint(_)
        | ClientError::Compacted { .. }
        | ClientError::WatchCanceled { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_like_etcd() {
        assert_eq!(prefix_range_end(b"foo"), b"fop");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_range_end(b""), [0]);
    }

    #[test]
    fn options_become_a_create_request() {
        let req = WatchOptions::default()
            .with_prefix("k/")
            .with_start_revision(9)
            .with_prev_kv()
            .with_no_put()
            .with_no_delete()
            .with_progress_notify()
            .with_fragment()
            .create_request(b"k/".to_vec());
        assert_eq!(req.key, b"k/");
        assert_eq!(req.range_end, b"k0");
        assert_eq!(req.start_revision, 9);
        assert_eq!(
            req.filters,
            vec![FilterType::Noput as i32, FilterType::Nodelete as i32]
        );
        assert!(req.prev_kv && req.progress_notify && req.fragment);
        assert_eq!(req.watch_id, 0);
        let from_key = WatchOptions::default()
            .with_from_key()
            .with_start_revision(-3)
            .create_request(b"a".to_vec());
        assert_eq!(from_key.range_end, [0]);
        assert_eq!(from_key.start_revision, 0);
    }

    #[test]
    fn which_failures_resume() {
        for st in [
            tonic::Status::unavailable("etcdserver: no leader"),
            tonic::Status::internal("stream terminated"),
            tonic::Status::unknown("server going away"),
            tonic::Status::cancelled("cancelled"),
        ] {
            assert!(resumable(&st.into()));
        }
        assert!(resumable(&ClientError::StreamClosed));
        assert!(resumable(&ClientError::Timeout));
        for st in [
            tonic::Status::invalid_argument("etcdserver: key is not provided"),
            tonic::Status::permission_denied("etcdserver: permission denied"),
            tonic::Status::unimplemented("no watch here"),
        ] {
            assert!(!resumable(&st.into()));
        }
        assert!(!resumable(&ClientError::Compacted {
            compact_revision: 3
        }));
        assert!(!resumable(&ClientError::WatchCanceled {
            reason: String::new()
        }));
    }
}
