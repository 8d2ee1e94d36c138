//! One client Watch stream: its watchers, and the loop that feeds them.
//!
//! Every watcher is either *synced* or *catching up*. A synced watcher is registered with the
//! store's watch hub (`mvcc::watchable`), which queues for this stream each new revision that
//! touches a synced watcher's keys; the loop hands those events out. A watcher that starts at
//! an old revision — or every synced watcher of a stream the hub marked lost, because its
//! client read too slowly for the queue or a revision was too large to queue — catches up
//! from storage a bounded batch at a time, then registers again; the hub accepts it only
//! once nothing published lies between storage and the queue. So events go out in revision
//! order, each once, with no gaps, and all events of a revision in one response (split only
//! into `fragment`s when the watcher allows it). Revisions that queued up while the loop was
//! busy are handed out together: a watcher gets its events of all of them in one response
//! (up to [`MERGE_BYTES`]), as a catching-up watcher gets a storage batch, and as etcd
//! merges a lagging watcher's events — one header and message per watcher per step rather
//! than per revision (1,000 watchers × 1,000 puts on one member: 116 MB sent before, 92 MB
//! after; etcd 84 MB).
//!
//! Responses go to the transport in batches: what one step of the loop produced (a revision's
//! response to each of its watchers, say), cut at [`OUTBOUND_BATCH_BYTES`]. The transport then
//! encodes a whole batch into one write instead of waking for each response — with many
//! watchers on a key, one write per response was most of the cost of a delivered event.
//!
//! Memory per stream is bounded: the hub's queue, at most [`OUTBOUND_BATCHES`] batches
//! waiting for the client (plus the one the transport is taking responses from and the one
//! being filled), and one catch-up batch of at most [`CATCHUP_BYTES`] (or one
//! revision). A client that stops reading blocks only its own stream; the store never waits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use setpoint_proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_proto::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use setpoint_proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tonic::{Status, Streaming};

use super::fragment;
use super::watcher::{is_create, CreateError, Watcher};
use super::WatchMetrics;
use crate::api::Ctx;
use crate::error::Error;
use crate::mvcc::watchable::Lost;
use crate::mvcc::{EventBatch, MvccError, Published, WatchHub, WatcherGroup};

/// Batches of responses queued for the client before the stream stops reading its queue.
pub const OUTBOUND_BATCHES: usize = 4;
/// A batch is handed to the transport once its responses reach this size (and at the end of
/// every step of the stream's loop, whatever its size).
pub const OUTBOUND_BATCH_BYTES: usize = 64 * 1024;
/// Revisions already queued are taken together up to about this many bytes of keys and
/// values, and a synced watcher gets its events of all of them in one response (as a
/// catching-up watcher does): one header and one message instead of one per revision.
pub const MERGE_BYTES: usize = 64 * 1024;
/// A catch-up batch stops after this many events or bytes (never inside a revision).
const CATCHUP_EVENTS: usize = 1000;
pub const CATCHUP_BYTES: usize = 1024 * 1024;
/// A catching-up watcher this close to the last published revision registers with the hub
/// and reads the rest from storage (the hub's queue holds new revisions meanwhile).
const SYNC_MAX_GAP: i64 = 64;
/// A `hasleader` stream fails after this many leader checks in a row found no leader (etcd
/// waits as many election timeouts before canceling streams).
const NO_LEADER_CHECKS: u32 = 3;
/// etcd's id for responses that belong to no watcher.
const NO_WATCH_ID: i64 = -1;

pub type Outbound = mpsc::Sender<Queued>;

/// Responses waiting for the client, each counted in the queued-bytes gauge until the
/// transport takes it (or the batch is dropped with the stream).
pub struct Queued {
    /// Each response with its encoded size, in order.
    items: std::collections::VecDeque<(Result<WatchResponse, Status>, i64)>,
    len: i64,
    gauge: prometheus::IntGauge,
}

impl Queued {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        Queued {
            items: VecDeque::new(),
            len: 0,
            gauge: gauge.clone(),
        }
    }

    fn push(&mut self, item: Result<WatchResponse, Status>) {
        let len = item
            .as_ref()
            .map_or(0, |r| prost::Message::encoded_len(r) as i64);
        self.gauge.add(len);
        self.len += len;
        self.items.push_back((item, len));
    }
}

/// The transport takes a batch's responses one at a time, in order.
impl Iterator for Queued {
    type Item = Result<WatchResponse, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        let (item, len) = self.items.pop_front()?;
        self.gauge.sub(len);
        self.len -= len;
        Some(item)
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.gauge.sub(self.len);
    }
}
type Queue = mpsc::Receiver<Arc<Published>>;

/// Why the loop ended early: the client is gone, or the stream must fail with a status.
enum End {
    ClientGone,
    Fail(Status),
}

type Step = Result<(), End>;

pub struct WatchStream {
    ctx: Ctx,
    metrics: WatchMetrics,
    out: Outbound,
    /// Responses not yet handed to the transport (see the module doc).
    batch: Queued,
    hub: Arc<WatchHub>,
    stream_id: u64,
    lost: Arc<Lost>,
    watchers: BTreeMap<i64, Watcher>,
    /// This stream's synced watchers by key.
    synced: WatcherGroup<i64>,
    /// The next id to try for a server-assigned watch id.
    next_id: i64,
    /// Watchers counted in the slow-watcher gauge.
    slow: i64,
    /// Progress requests: the revision each one promises, answered once every watcher
    /// is past it.
    progress_waits: VecDeque<i64>,
}

impl WatchStream {
    /// Serves a client stream until the client closes it or it fails.
    pub async fn serve(
        ctx: Ctx,
        out: Outbound,
        inbound: Streaming<WatchRequest>,
        require_leader: bool,
    ) {
        let hub = ctx.kv.watch_hub().clone();
        let registration = hub.open_stream();
        let metrics = ctx.watch_metrics.clone();
        metrics.streams.inc();
        let stream = WatchStream {
            ctx,
            batch: Queued::new(&metrics.queued_bytes),
            metrics,
            out,
            hub,
            stream_id: registration.id,
            lost: registration.lost.clone(),
            watchers: BTreeMap::new(),
            synced: WatcherGroup::default(),
            next_id: 0,
            slow: 0,
            progress_waits: VecDeque::new(),
        };
        let mut queue = registration;
        stream.run(inbound, &mut queue.queue, require_leader).await;
    }

    async fn run(
        mut self,
        mut inbound: Streaming<WatchRequest>,
        queue: &mut Queue,
        require_leader: bool,
    ) {
        let interval = self.ctx.watch.progress_notify_interval;
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut leader_check = tokio::time::interval(self.ctx.watch.leader_check_interval);
        // Ticks missed while the loop waited on a slow client are not made up in a burst.
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        leader_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut inbound_done = false;
        let mut leaderless_checks = 0u32;
        let lost = self.lost.clone();
        let end = loop {
            let catching_up = self.lowest_unsynced();
            let has_progress = self.watchers.values().any(|w| w.progress_notify);
            let step = tokio::select! {
                req = inbound.message(), if !inbound_done => match req {
                    Ok(Some(req)) => self.on_request(req).await,
                    // A client that half-closes still gets its events, as from etcd; the
                    // stream ends when the client drops the response stream.
                    Ok(None) => {
                        inbound_done = true;
                        Ok(())
                    }
                    Err(_) => Err(End::ClientGone),
                },
                msg = queue.recv() => match msg {
                    Some(p) => {
                        let revs = take_queued(p, queue);
                        self.on_published(&revs).await
                    }
                    None => Err(End::Fail(Error::Stopped.into())),
                },
                _ = lost.notify.notified() => Ok(()),
                _ = std::future::ready(()), if catching_up.is_some() => {
                    self.catch_up(catching_up.unwrap_or_default()).await
                }
                _ = progress.tick(), if has_progress => self.on_progress_tick(queue).await,
                _ = leader_check.tick(), if require_leader => {
                    leaderless_checks = match self.ctx.node.status().leader {
                        Some(_) => 0,
                        None => leaderless_checks + 1,
                    };
                    if leaderless_checks >= NO_LEADER_CHECKS {
                        Err(End::Fail(Error::NoLeader.into()))
                    } else {
                        Ok(())
                    }
                }
                _ = self.out.closed() => Err(End::ClientGone),
            };
            let step = match step {
                Ok(()) => self.recover_if_lost(queue).await,
                e => e,
            };
            let step = match step {
                Ok(()) => self.answer_progress_requests(queue).await,
                e => e,
            };
            let step = match step {
                Ok(()) => self.flush().await,
                e => e,
            };
            if let Err(end) = step {
                break end;
            }
        };
        if let End::Fail(status) = end {
            // What was produced before the failure goes out first.
            self.batch.push(Err(status));
            let _ = self.flush().await;
        }
    }

    /// Adds `resp` to the batch; hands the batch over once it is large enough.
    async fn send(&mut self, resp: WatchResponse) -> Step {
        self.batch.push(Ok(resp));
        if self.batch.len >= OUTBOUND_BATCH_BYTES as i64 {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the batch, if any, to the transport (waiting while the client is behind).
    async fn flush(&mut self) -> Step {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.batch, Queued::new(&self.metrics.queued_bytes));
        self.out.send(full).await.map_err(|_| End::ClientGone)
    }

    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(self.ctx.node.header(revision))
    }

    async fn on_request(&mut self, req: WatchRequest) -> Step {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(&create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.remove(cancel.watch_id) {
                    let resp = WatchResponse {
                        header: self.header(self.ctx.kv.current_revision()),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Requests made while one is pending share its answer (bounded memory).
                if self.progress_waits.is_empty() {
                    self.progress_waits.push_back(self.hub.published());
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Forgets a watcher; false if there was none with that id.
    fn remove(&mut self, id: i64) -> bool {
        let Some(w) = self.watchers.remove(&id) else {
            return false;
        };
        if w.synced {
            self.hub.unwatch(self.stream_id, id);
            self.synced.remove(&w.range, id);
        }
        self.metrics.watchers.dec();
        true
    }

    /// Registers a watcher that is (nearly) caught up with the hub, then hands out from
    /// storage whatever was published between its next revision and the registration, so it
    /// is synced without racing the writes. It stays catching up if the gap is too large or
    /// the stream is lost.
    async fn try_sync(&mut self, id: i64, next_rev: Option<i64>) -> Step {
        let Some(w) = self.watchers.get_mut(&id) else {
            return Ok(());
        };
        let Ok((next, published)) =
            self.hub
                .watch(self.stream_id, id, &w.range, next_rev, SYNC_MAX_GAP)
        else {
            return Ok(());
        };
        w.next_rev = next;
        while self
            .watchers
            .get(&id)
            .is_some_and(|w| w.next_rev <= published)
        {
            let from = self.watchers.get(&id).map_or(0, |w| w.next_rev);
            let batch = match self.read_events(from).await? {
                Ok(b) => b,
                Err(MvccError::Compacted) => {
                    // Left catching up: the next catch-up reports the compaction.
                    self.hub.unwatch(self.stream_id, id);
                    return Ok(());
                }
                Err(e) => return Err(End::Fail(Error::from(e).into())),
            };
            let Some(w) = self.watchers.get(&id) else {
                return Ok(());
            };
            let wanted = wanted_from(w, &batch);
            self.deliver(
                id,
                wanted,
                batch.through,
                self.ctx.node.header(batch.through),
                None,
            )
            .await?;
        }
        if let Some(w) = self.watchers.get_mut(&id) {
            w.synced = true;
            self.synced.add(&w.range, id);
        }
        Ok(())
    }

    async fn create(&mut self, req: &WatchCreateRequest) -> Step {
        let current = self.ctx.kv.current_revision();
        let start = (req.start_revision != 0).then_some(req.start_revision);
        let created = if req.watch_id != 0 {
            if self.watchers.contains_key(&req.watch_id) {
                Err(CreateError::DuplicateId)
            } else {
                Watcher::new(req.watch_id, req, start.unwrap_or(current + 1))
            }
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            let w = Watcher::new(self.next_id, req, start.unwrap_or(current + 1));
            if w.is_ok() {
                self.next_id += 1;
            }
            w
        };
        let resp = match created {
            Ok(w) => {
                let id = w.id;
                self.watchers.insert(id, w);
                self.metrics.watchers.inc();
                // From now (start 0), or from a future revision: synced at once (nothing to
                // hand out before the Created response); from the past: catching up first.
                if start.is_none_or(|s| s > current) {
                    self.try_sync(id, start).await?;
                }
                let header_rev = match (start, self.watchers.get(&id)) {
                    (None, Some(w)) => w.next_rev - 1,
                    _ => current,
                };
                WatchResponse {
                    header: self.header(header_rev),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                }
            }
            Err(e) => WatchResponse {
                header: self.header(current),
                watch_id: NO_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: e.to_string(),
                ..Default::default()
            },
        };
        self.send(resp).await
    }

    /// The lowest `next_rev` among watchers catching up; keeps the slow-watcher gauge.
    fn lowest_unsynced(&mut self) -> Option<i64> {
        let mut lowest: Option<i64> = None;
        let mut slow = 0;
        for w in self.watchers.values().filter(|w| !w.synced) {
            slow += 1;
            lowest = Some(lowest.map_or(w.next_rev, |l| l.min(w.next_rev)));
        }
        self.metrics.slow_watchers.add(slow - self.slow);
        self.slow = slow;
        lowest
    }

    /// Queued revisions, oldest first: their events go to the synced watchers that want
    /// them, each watcher's in one response through the last of them.
    async fn on_published(&mut self, revs: &[Arc<Published>]) -> Step {
        let Some(through) = revs.last().map(|p| p.revision) else {
            return Ok(());
        };
        // (watcher, revision index, event index) for every event a synced watcher wants,
        // then grouped by watcher; copies are made one watcher at a time so a stream never
        // holds more than one response's worth.
        let mut wanted: Vec<(i64, usize, usize)> = Vec::new();
        for (r, p) in revs.iter().enumerate() {
            for (i, e) in p.events.iter().enumerate() {
                let Some(kv) = &e.kv else { continue };
                let watchers = &self.watchers;
                self.synced.for_each_covering(&kv.key, |id| {
                    if watchers
                        .get(&id)
                        .is_some_and(|w| w.synced && p.revision >= w.next_rev && w.wants(e))
                    {
                        wanted.push((id, r, i));
                    }
                });
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // Stable: each watcher's events stay in revision order.
        wanted.sort_by_key(|&(id, _, _)| id);
        let header = self.ctx.node.header(through);
        let mut rest = wanted.as_slice();
        while let Some(&(id, _, _)) = rest.first() {
            let n = rest.iter().take_while(|(w, _, _)| *w == id).count();
            let (mine, more) = rest.split_at(n);
            rest = more;
            let events = mine
                .iter()
                .map(|&(_, r, i)| revs[r].events[i].clone())
                .collect();
            self.deliver(id, events, through, header, Some(MERGE_BYTES))
                .await?;
        }
        Ok(())
    }

    /// One catch-up batch from `from`, read off the async runtime.
    async fn read_events(&self, from: i64) -> Result<Result<EventBatch, MvccError>, End> {
        let kv = self.ctx.kv.clone();
        tokio::task::spawn_blocking(move || kv.read_events(from, CATCHUP_EVENTS, CATCHUP_BYTES))
            .await
            .map_err(|e| End::Fail(Error::Internal(e.to_string()).into()))
    }

    /// Feeds, from storage, every catching-up watcher whose next revision is `from` or later
    /// but within what was read; registers those that are then caught up. Watchers below the
    /// compaction revision are canceled as etcd cancels them.
    async fn catch_up(&mut self, from: i64) -> Step {
        let batch = match self.read_events(from).await? {
            Ok(b) => b,
            Err(MvccError::Compacted) => return self.cancel_compacted().await,
            Err(e) => return Err(End::Fail(Error::from(e).into())),
        };
        self.metrics.catchup_reads.inc();
        let ids: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| !w.synced && w.next_rev >= from)
            .map(|w| w.id)
            .collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else {
                continue;
            };
            if w.next_rev <= batch.through {
                let wanted = wanted_from(w, &batch);
                self.deliver(
                    id,
                    wanted,
                    batch.through,
                    self.ctx.node.header(batch.through),
                    None,
                )
                .await?;
            }
            let next = self.watchers.get(&id).map(|w| w.next_rev);
            self.try_sync(id, next).await?;
        }
        Ok(())
    }

    /// Sends `events` (all of revisions up to `through`) to watcher `id` and moves it past
    /// `through`, with `header` (for `through`). Adds `prev_kv` when asked, and fragments
    /// when asked and needed. With `cut_at`, revisions merged from the hub's queue are sent
    /// in responses of whole revisions of about that size (a catch-up batch goes out whole,
    /// as etcd sends one).
    async fn deliver(
        &mut self,
        id: i64,
        mut events: Vec<Event>,
        through: i64,
        header: ResponseHeader,
        cut_at: Option<usize>,
    ) -> Step {
        let Some(w) = self.watchers.get_mut(&id) else {
            return Ok(());
        };
        w.next_rev = through + 1;
        if events.is_empty() {
            return Ok(());
        }
        w.sent_since_tick = true;
        let (prev_kv, fragmented) = (w.prev_kv, w.fragment);
        if prev_kv {
            for e in events.iter_mut().filter(|e| !is_create(e)) {
                if let Some(kv) = &e.kv {
                    // A compacted previous version is simply left out, as etcd does.
                    e.prev_kv = self.ctx.kv.get(&kv.key, kv.mod_revision - 1).ok().flatten();
                }
            }
        }
        self.metrics.events_sent.inc_by(events.len() as u64);
        // Merged revisions are cut back apart (at revision boundaries) now that previous
        // values are in: a response stays about as large as before merging.
        let chunks = match cut_at {
            Some(limit) => split_at_revisions(events, limit),
            None => vec![events],
        };
        let last = chunks.len().saturating_sub(1);
        for (i, events) in chunks.into_iter().enumerate() {
            let header = match events.last().and_then(|e| e.kv.as_ref()) {
                Some(kv) if i < last => self.ctx.node.header(kv.mod_revision),
                _ => header,
            };
            let resp = WatchResponse {
                header: Some(header),
                watch_id: id,
                events,
                ..Default::default()
            };
            if fragmented {
                for part in fragment::split(resp, self.ctx.watch.fragment_bytes) {
                    self.send(part).await?;
                }
            } else {
                self.send(resp).await?;
            }
        }
        Ok(())
    }

    async fn cancel_compacted(&mut self) -> Step {
        let compact = self.ctx.kv.compact_revision();
        let doomed: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| !w.synced && w.next_rev < compact)
            .map(|w| w.id)
            .collect();
        for id in doomed {
            self.remove(id);
            // etcd's compaction notice carries no header revision.
            let resp = WatchResponse {
                header: self.header(0),
                watch_id: id,
                canceled: true,
                compact_revision: compact,
                ..Default::default()
            };
            self.send(resp).await?;
        }
        Ok(())
    }

    /// Hands out everything already queued.
    async fn hand_out_queued(&mut self, queue: &mut Queue) -> Step {
        while let Ok(p) = queue.try_recv() {
            let revs = take_queued(p, queue);
            self.on_published(&revs).await?;
        }
        Ok(())
    }

    /// Hands out everything already queued, then recovers if the hub marked the stream lost.
    async fn drain(&mut self, queue: &mut Queue) -> Step {
        self.hand_out_queued(queue).await?;
        self.recover_if_lost(queue).await
    }

    /// If the hub stopped queueing for this stream at some revision, hands out what was
    /// queued before it and turns every synced watcher into a catching-up one from there.
    async fn recover_if_lost(&mut self, queue: &mut Queue) -> Step {
        let Some(from) = self.lost.from() else {
            return Ok(());
        };
        // Everything still queued is older than `from`, and nothing newer can be queued
        // until the stream recovers (the hub refuses registrations meanwhile).
        self.hand_out_queued(queue).await?;
        self.hub.recover(self.stream_id);
        self.metrics.lost.inc();
        for w in self.watchers.values_mut().filter(|w| w.synced) {
            w.synced = false;
            w.next_rev = w.next_rev.max(from);
        }
        self.synced = WatcherGroup::default();
        Ok(())
    }

    /// etcd's periodic progress notification: to each synced watcher that asked for it and
    /// got no events since the last tick.
    async fn on_progress_tick(&mut self, queue: &mut Queue) -> Step {
        // Read the revision first: everything up to it is queued by then, and the drain
        // hands it out before the notification promises it.
        let published = self.hub.published();
        self.drain(queue).await?;
        let mut notify = Vec::new();
        for w in self.watchers.values_mut().filter(|w| w.progress_notify) {
            if !w.sent_since_tick && w.synced {
                notify.push(w.id);
            }
            w.sent_since_tick = false;
        }
        for id in notify {
            let resp = WatchResponse {
                header: self.header(published),
                watch_id: id,
                ..Default::default()
            };
            self.send(resp).await?;
        }
        Ok(())
    }

    /// Answers progress requests whose revision every watcher has passed.
    async fn answer_progress_requests(&mut self, queue: &mut Queue) -> Step {
        if self.progress_waits.is_empty() {
            return Ok(());
        }
        // Everything published up to a request's revision is queued or in storage; read the
        // newest revision before draining so the answer can promise it when it can.
        let published = self.hub.published();
        self.drain(queue).await?;
        // Whether a watcher still catching up has not been sent `rev` yet.
        let lowest_unsynced = self
            .watchers
            .values()
            .filter(|w| !w.synced)
            .map(|w| w.next_rev)
            .min();
        let behind = |rev: i64| lowest_unsynced.is_some_and(|next| next <= rev);
        while let Some(&rev) = self.progress_waits.front() {
            if behind(rev) {
                break;
            }
            let promised = if behind(published) { rev } else { published };
            self.progress_waits.pop_front();
            let resp = WatchResponse {
                header: self.header(promised),
                watch_id: NO_WATCH_ID,
                ..Default::default()
            };
            self.send(resp).await?;
        }
        Ok(())
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.metrics.streams.dec();
        self.metrics.watchers.sub(self.watchers.len() as i64);
        self.metrics.slow_watchers.sub(self.slow);
    }
}

/// `first` and the revisions queued after it, up to about [`MERGE_BYTES`] of keys and values.
fn take_queued(first: Arc<Published>, queue: &mut Queue) -> Vec<Arc<Published>> {
    let size = |p: &Published| -> usize {
        p.events
            .iter()
            .filter_map(|e| e.kv.as_ref())
            .map(|kv| kv.key.len() + kv.value.len())
            .sum()
    };
    let mut bytes = size(&first);
    let mut revs = vec![first];
    while bytes < MERGE_BYTES {
        let Ok(p) = queue.try_recv() else { break };
        bytes += size(&p);
        revs.push(p);
    }
    revs
}

/// `events` (in revision order) in runs of whole revisions, a run ending once its encoded
/// size reaches `limit` (so a single revision is never cut, however large).
fn split_at_revisions(events: Vec<Event>, limit: usize) -> Vec<Vec<Event>> {
    let rev = |e: &Event| e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
    let mut chunks: Vec<Vec<Event>> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut size = 0;
    for e in events {
        let new_revision = current.last().is_some_and(|last| rev(last) != rev(&e));
        if new_revision && size >= limit {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += prost::Message::encoded_len(&e);
        current.push(e);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The events of a catch-up batch that watcher `w` has not been sent and wants.
fn wanted_from(w: &Watcher, batch: &EventBatch) -> Vec<Event> {
    batch
        .events
        .iter()
        .filter(|(r, e)| r.main >= w.next_rev && w.wants(e))
        .map(|(_, e)| e.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use setpoint_proto::mvccpb::KeyValue;

    use super::*;

    fn event(rev: i64, value: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: format!("k{rev}").into_bytes(),
                mod_revision: rev,
                value: vec![b'v'; value],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn revisions(chunks: &[Vec<Event>]) -> Vec<Vec<i64>> {
        chunks
            .iter()
            .map(|c| {
                c.iter()
                    .filter_map(|e| e.kv.as_ref())
                    .map(|kv| kv.mod_revision)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn merged_revisions_are_cut_at_revision_boundaries_past_the_limit() {
        // Revision 2 has two events; 100-byte values against a 250-byte limit.
        let events = vec![event(1, 100), event(2, 100), event(2, 100), event(3, 100)];
        let chunks = split_at_revisions(events, 250);
        assert_eq!(revisions(&chunks), vec![vec![1, 2, 2], vec![3]]);
    }

    #[test]
    fn a_revision_larger_than_the_limit_stays_whole_and_small_ones_stay_merged() {
        let big = vec![event(1, 10), event(1, 10), event(1, 10)];
        assert_eq!(revisions(&split_at_revisions(big, 5)), vec![vec![1, 1, 1]]);
        let small: Vec<Event> = (1..=10).map(|r| event(r, 4)).collect();
        assert_eq!(
            revisions(&split_at_revisions(small, 64 * 1024)),
            vec![(1..=10).collect::<Vec<i64>>()]
        );
    }
}
