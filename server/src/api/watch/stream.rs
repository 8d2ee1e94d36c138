//! One client Watch stream: its watchers, and the loop that feeds them.
//!
//! The loop waits on four things: the client's requests (create, cancel, progress), the
//! store's announcements of published revisions (`mvcc::watchable`), catch-up work, and the
//! progress ticker. A watcher is *synced* when it has been sent everything up to the newest
//! revision this stream has heard of; synced watchers get each new revision straight from the
//! announcement. Any other watcher — one started at an old revision, one that missed
//! announcements because the client read slowly and the ring moved on, one whose revision was
//! too large to announce inline — is *catching up*: it is fed from storage, a bounded batch
//! at a time, until it is synced again. So events go out in revision order, each once, with
//! no gaps, and all events of a revision in one response (split only into `fragment`s).
//!
//! Memory per stream is bounded: at most [`OUTBOUND_RESPONSES`] responses wait for the
//! client, and a catch-up batch is at most [`CATCHUP_BYTES`] (or one revision). A client that
//! stops reading blocks only its own stream; the store never waits for it.

use std::collections::{BTreeMap, VecDeque};

use setpoint_proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use setpoint_proto::mvccpb::Event;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::fragment;
use super::watcher::{is_create, CreateError, Watcher};
use super::WatchMetrics;
use crate::api::Ctx;
use crate::error::Error;
use crate::mvcc::{MvccError, Published};

/// Responses queued for the client before the stream stops reading the store.
pub const OUTBOUND_RESPONSES: usize = 16;
/// A catch-up batch stops after this many events or bytes (never inside a revision).
const CATCHUP_EVENTS: usize = 1000;
pub const CATCHUP_BYTES: usize = 1024 * 1024;
/// A `hasleader` stream fails after this many leader checks in a row found no leader (etcd
/// waits as many election timeouts before canceling streams).
const NO_LEADER_CHECKS: u32 = 3;
/// etcd's id for responses that belong to no watcher.
const NO_WATCH_ID: i64 = -1;

pub type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

/// Why the loop ended early: the client is gone, or the stream must fail with a status.
enum End {
    ClientGone,
    Fail(Status),
}

type Step = Result<(), End>;

pub struct WatchStream {
    ctx: Ctx,
    metrics: WatchMetrics,
    /// Watchers counted in the slow-watcher gauge.
    slow: i64,
    out: Outbound,
    watchers: BTreeMap<i64, Watcher>,
    /// The next id to try for a server-assigned watch id.
    next_id: i64,
    /// The newest revision this stream knows to be published.
    seen: i64,
    /// Progress requests: the revision each one promises, answered once every watcher
    /// is past it.
    progress_waits: VecDeque<i64>,
}

impl WatchStream {
    pub fn new(ctx: Ctx, metrics: WatchMetrics, out: Outbound) -> Self {
        metrics.streams.inc();
        WatchStream {
            ctx,
            metrics,
            slow: 0,
            out,
            watchers: BTreeMap::new(),
            next_id: 0,
            seen: 0,
            progress_waits: VecDeque::new(),
        }
    }

    /// Serves the stream until the client closes it or it fails.
    pub async fn run(mut self, mut inbound: Streaming<WatchRequest>, require_leader: bool) {
        let mut published = self.ctx.kv.subscribe();
        self.seen = self.ctx.kv.current_revision();
        let interval = self.ctx.watch.progress_notify_interval;
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let check = self.ctx.watch.leader_check_interval;
        let mut leader_check = tokio::time::interval(check);
        let mut leaderless_checks = 0u32;
        let end = loop {
            let catching_up = self.lowest_unsynced();
            let has_progress = self.watchers.values().any(|w| w.progress_notify);
            let step = tokio::select! {
                req = inbound.message() => match req {
                    Ok(Some(req)) => self.on_request(req).await,
                    Ok(None) | Err(_) => Err(End::ClientGone),
                },
                msg = published.recv() => match msg {
                    Ok(p) => self.on_published(&p).await,
                    Err(RecvError::Lagged(n)) => {
                        // Missed announcements: what they said is in storage.
                        self.metrics.lagged.inc_by(n);
                        self.seen = self.seen.max(self.ctx.kv.current_revision());
                        Ok(())
                    }
                    Err(RecvError::Closed) => Err(End::Fail(Error::Stopped.into())),
                },
                _ = std::future::ready(()), if catching_up.is_some() => {
                    self.catch_up(catching_up.unwrap_or_default()).await
                }
                _ = progress.tick(), if has_progress => self.on_progress_tick().await,
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
                Ok(()) => self.answer_progress_requests().await,
                e => e,
            };
            if let Err(end) = step {
                break end;
            }
        };
        if let End::Fail(status) = end {
            let _ = self.out.send(Err(status)).await;
        }
    }

    async fn send(&self, resp: WatchResponse) -> Step {
        let len = prost::Message::encoded_len(&resp) as i64;
        self.metrics.queued_bytes.add(len);
        self.out.send(Ok(resp)).await.map_err(|_| End::ClientGone)
    }

    fn header(&self, revision: i64) -> Option<setpoint_proto::etcdserverpb::ResponseHeader> {
        Some(self.ctx.node.header(revision))
    }

    async fn on_request(&mut self, req: WatchRequest) -> Step {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(&create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    self.metrics.watchers.dec();
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
                self.progress_waits
                    .push_back(self.ctx.kv.current_revision());
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, req: &WatchCreateRequest) -> Step {
        let current = self.ctx.kv.current_revision();
        let start = if req.start_revision == 0 {
            current + 1
        } else {
            req.start_revision
        };
        let created = if req.watch_id != 0 {
            if self.watchers.contains_key(&req.watch_id) {
                Err(CreateError::DuplicateId)
            } else {
                Watcher::new(req.watch_id, req, start)
            }
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            let w = Watcher::new(self.next_id, req, start);
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
                WatchResponse {
                    header: self.header(current),
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

    /// The lowest `next_rev` among watchers that are behind what this stream has heard of;
    /// keeps the slow-watcher gauge up to date on the way.
    fn lowest_unsynced(&mut self) -> Option<i64> {
        let mut lowest = None;
        let mut slow = 0;
        for r in self.watchers.values().map(|w| w.next_rev) {
            if r <= self.seen {
                slow += 1;
                lowest = Some(lowest.map_or(r, |l: i64| l.min(r)));
            }
        }
        self.metrics.slow_watchers.add(slow - self.slow);
        self.slow = slow;
        lowest
    }

    /// A revision was published: synced watchers get its events from the announcement.
    async fn on_published(&mut self, p: &Published) -> Step {
        let rev = p.revision;
        self.seen = self.seen.max(rev);
        let Some(events) = &p.events else {
            // Not inlined: watchers at `rev` are now behind `seen` and catch up from storage.
            return Ok(());
        };
        let ids: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.next_rev == rev)
            .map(|w| w.id)
            .collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else {
                continue;
            };
            let wanted: Vec<Event> = events.iter().filter(|e| w.wants(e)).cloned().collect();
            self.deliver(id, wanted, rev).await?;
        }
        Ok(())
    }

    /// Feeds, from storage, every watcher whose next revision is `from` or later but still
    /// behind; watchers below the compaction revision are canceled as etcd cancels them.
    async fn catch_up(&mut self, from: i64) -> Step {
        let kv = self.ctx.kv.clone();
        let read = tokio::task::spawn_blocking(move || {
            kv.read_events(from, CATCHUP_EVENTS, CATCHUP_BYTES)
        })
        .await
        .map_err(|e| End::Fail(Error::Internal(e.to_string()).into()))?;
        let batch = match read {
            Ok(b) => b,
            Err(MvccError::Compacted) => return self.cancel_compacted().await,
            Err(e) => return Err(End::Fail(Error::from(e).into())),
        };
        self.seen = self.seen.max(batch.through);
        self.metrics.catchup_reads.inc();
        let ids: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.next_rev >= from && w.next_rev <= batch.through)
            .map(|w| w.id)
            .collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else {
                continue;
            };
            let wanted: Vec<Event> = batch
                .events
                .iter()
                .filter(|(r, e)| r.main >= w.next_rev && w.wants(e))
                .map(|(_, e)| e.clone())
                .collect();
            self.deliver(id, wanted, batch.through).await?;
        }
        Ok(())
    }

    /// Sends `events` (all of revisions up to `through`) to watcher `id` and moves it past
    /// `through`. Adds `prev_kv` when asked, and fragments when asked and needed.
    async fn deliver(&mut self, id: i64, mut events: Vec<Event>, through: i64) -> Step {
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
        let resp = WatchResponse {
            header: self.header(through),
            watch_id: id,
            events,
            ..Default::default()
        };
        if fragmented {
            for part in fragment::split(resp, self.ctx.watch.fragment_bytes) {
                self.send(part).await?;
            }
            Ok(())
        } else {
            self.send(resp).await
        }
    }

    async fn cancel_compacted(&mut self) -> Step {
        let compact = self.ctx.kv.compact_revision();
        let doomed: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.next_rev < compact)
            .map(|w| w.id)
            .collect();
        for id in doomed {
            self.watchers.remove(&id);
            self.metrics.watchers.dec();
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

    /// etcd's periodic progress notification: to each synced watcher that asked for it and
    /// got no events since the last tick.
    async fn on_progress_tick(&mut self) -> Step {
        let seen = self.seen;
        let mut notify = Vec::new();
        for w in self.watchers.values_mut().filter(|w| w.progress_notify) {
            if !w.sent_since_tick && w.next_rev > seen {
                notify.push(w.id);
            }
            w.sent_since_tick = false;
        }
        for id in notify {
            let resp = WatchResponse {
                header: self.header(seen),
                watch_id: id,
                ..Default::default()
            };
            self.send(resp).await?;
        }
        Ok(())
    }

    /// Answers progress requests whose revision every watcher has passed.
    async fn answer_progress_requests(&mut self) -> Step {
        while let Some(&rev) = self.progress_waits.front() {
            if self.watchers.values().any(|w| w.next_rev <= rev) {
                break;
            }
            self.progress_waits.pop_front();
            let resp = WatchResponse {
                header: self.header(rev),
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
