//! Routing published revisions to the watch streams that want them (etcd's
//! `watchable_store.go`: its synced watcher group).
//!
//! A watch stream registers with the [`WatchHub`] and gets a bounded queue. Each of its
//! watchers that is *synced* — has been sent everything up to the last published revision —
//! registers its key range. When a write becomes visible ([`super::KvStore::publish`]), the
//! hub sends the revision's events, once, to each stream with a synced watcher covering one
//! of its keys; streams with no such watcher hear nothing and pay nothing (their synced
//! watchers are implicitly up to date). Sending never waits. When a stream's queue is full,
//! or the revision is too large to queue, the hub instead marks the stream *lost from* that
//! revision and forgets its watchers' ranges: the stream must read from that revision on out
//! of storage ([`super::KvStore::read_events`]) and register its watchers again once they
//! have caught up. Registration returns the last published revision; the stream hands out
//! anything between the watcher's next revision and it from storage before the queue, so no
//! revision falls between storage and the queue (and a watcher chasing a busy store still
//! gets back in: it need not win a race against the next write). Memory per
//! stream is bounded by `QUEUE_REVISIONS × INLINE_EVENT_BYTES`, however slow its client.
//!
//! This module routes; filters, `prev_kv`, ids and gRPC are `api::watch`'s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use setpoint_proto::mvccpb::Event;
use tokio::sync::{mpsc, Notify};

use super::watcher_group::{KeyRange, WatcherGroup};

/// Revisions queued for one stream before it is marked lost.
pub const QUEUE_REVISIONS: usize = 128;
/// A revision whose events are larger than this is never queued: streams that want it read
/// it from storage. Keeps queue memory bounded.
pub const INLINE_EVENT_BYTES: usize = 64 * 1024;

/// One published revision, as queued for a stream.
#[derive(Debug)]
pub struct Published {
    pub revision: i64,
    /// All of its events, in sub-revision order.
    pub events: Vec<Event>,
}

pub type StreamId = u64;
/// A watcher, as the hub knows it: its stream and its id there.
type WatcherKey = (StreamId, i64);

/// Set by the hub when a stream missed a revision; the stream reads it and what follows
/// from storage.
#[derive(Debug, Default)]
pub struct Lost {
    /// The first revision not queued for the stream; 0 while nothing was lost.
    from: AtomicI64,
    /// Woken when `from` is set.
    pub notify: Notify,
}

impl Lost {
    /// The first revision the stream missed, if it missed one.
    pub fn from(&self) -> Option<i64> {
        match self.from.load(Ordering::SeqCst) {
            0 => None,
            r => Some(r),
        }
    }
}

struct Slot {
    tx: mpsc::Sender<Arc<Published>>,
    lost: Arc<Lost>,
}

#[derive(Default)]
struct Inner {
    /// The last revision announced; every one up to it is readable from storage.
    published: i64,
    next_stream: StreamId,
    streams: HashMap<StreamId, Slot>,
    synced: WatcherGroup<WatcherKey>,
    /// Each stream's registered watchers and their ranges (to forget a stream in time
    /// proportional to its own watchers).
    ranges: HashMap<StreamId, HashMap<i64, KeyRange>>,
    /// Times a stream was marked lost (for metrics).
    losses: u64,
}

impl Inner {
    /// Marks `stream` lost from `revision` and forgets its watchers' ranges.
    fn lose(&mut self, stream: StreamId, revision: i64) {
        let Some(slot) = self.streams.get(&stream) else {
            return;
        };
        let lost = slot.lost.clone();
        if lost
            .from
            .compare_exchange(0, revision, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.losses += 1;
        }
        self.forget_stream_watchers(stream);
        lost.notify.notify_one();
    }

    fn forget_stream_watchers(&mut self, stream: StreamId) {
        for (watch_id, range) in self.ranges.remove(&stream).unwrap_or_default() {
            self.synced.remove(&range, (stream, watch_id));
        }
    }
}

/// The router between the store's publishing and the watch streams.
#[derive(Default)]
pub struct WatchHub {
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A stream's registration; unregisters when dropped.
pub struct HubStream {
    hub: Arc<WatchHub>,
    pub id: StreamId,
    /// Revisions for this stream's synced watchers, in order.
    pub queue: mpsc::Receiver<Arc<Published>>,
    pub lost: Arc<Lost>,
}

impl Drop for HubStream {
    fn drop(&mut self) {
        let mut inner = lock(&self.hub.inner);
        inner.streams.remove(&self.id);
        inner.forget_stream_watchers(self.id);
    }
}

impl WatchHub {
    pub(super) fn new(published: i64) -> Self {
        WatchHub {
            inner: Mutex::new(Inner {
                published,
                ..Default::default()
            }),
        }
    }

    /// Opens a stream's queue.
    pub fn open_stream(self: &Arc<Self>) -> HubStream {
        let (tx, queue) = mpsc::channel(QUEUE_REVISIONS);
        let lost = Arc::new(Lost::default());
        let mut inner = lock(&self.inner);
        let id = inner.next_stream;
        inner.next_stream += 1;
        inner.streams.insert(
            id,
            Slot {
                tx,
                lost: lost.clone(),
            },
        );
        HubStream {
            hub: self.clone(),
            id,
            queue,
            lost,
        }
    }

    /// The last revision announced.
    pub fn published(&self) -> i64 {
        lock(&self.inner).published
    }

    /// Times streams were marked lost.
    pub fn losses(&self) -> u64 {
        lock(&self.inner).losses
    }

    /// Registers watcher `watch_id` of `stream` as synced: every revision published from now
    /// on that touches `range` is queued for the stream. `next_rev` is the watcher's next
    /// revision (`None`: the next one to be published). Returns `(next_rev, published)`;
    /// when `next_rev <= published` the caller must hand out `[next_rev, published]` from
    /// storage itself before the queued revisions — allowed only for a gap of at most
    /// `max_gap` revisions. Refused with `Err(published)` for a larger gap (catch up from
    /// storage first) or while the stream is lost (recover first).
    pub fn watch(
        &self,
        stream: StreamId,
        watch_id: i64,
        range: &KeyRange,
        next_rev: Option<i64>,
        max_gap: i64,
    ) -> Result<(i64, i64), i64> {
        let mut inner = lock(&self.inner);
        let published = inner.published;
        let lost = inner
            .streams
            .get(&stream)
            .is_none_or(|s| s.lost.from().is_some());
        let next = next_rev.unwrap_or(published + 1);
        if lost || published - next + 1 > max_gap {
            return Err(published);
        }
        let key = (stream, watch_id);
        let previous = inner
            .ranges
            .entry(stream)
            .or_default()
            .insert(watch_id, range.clone());
        if let Some(old) = previous {
            inner.synced.remove(&old, key);
        }
        inner.synced.add(range, key);
        Ok((next, published))
    }

    /// Stops queueing for one watcher (canceled, or no longer synced).
    pub fn unwatch(&self, stream: StreamId, watch_id: i64) {
        let mut inner = lock(&self.inner);
        let removed = inner
            .ranges
            .get_mut(&stream)
            .and_then(|watchers| watchers.remove(&watch_id));
        if let Some(range) = removed {
            inner.synced.remove(&range, (stream, watch_id));
        }
    }

    /// Called by a lost stream once it has drained its queue: clears the mark (its watchers
    /// were already forgotten) so its watchers can register again after catching up.
    pub fn recover(&self, stream: StreamId) {
        let mut inner = lock(&self.inner);
        inner.forget_stream_watchers(stream);
        if let Some(slot) = inner.streams.get(&stream) {
            slot.lost.from.store(0, Ordering::SeqCst);
        }
    }

    /// Announces `revision` and queues its events for the streams that want them.
    pub(super) fn notify(&self, revision: i64, events: Vec<Event>) {
        let mut inner = lock(&self.inner);
        inner.published = inner.published.max(revision);
        if inner.synced.is_empty() {
            return;
        }
        let mut wanted: HashSet<StreamId> = HashSet::new();
        for e in &events {
            if let Some(kv) = &e.kv {
                inner.synced.for_each_covering(&kv.key, |(s, _)| {
                    wanted.insert(s);
                });
            }
        }
        if wanted.is_empty() {
            return;
        }
        let size: usize = events.iter().map(prost::Message::encoded_len).sum();
        if size > INLINE_EVENT_BYTES {
            for s in wanted {
                inner.lose(s, revision);
            }
            return;
        }
        let msg = Arc::new(Published { revision, events });
        for s in wanted {
            let sent = match inner.streams.get(&s) {
                Some(slot) => slot.tx.try_send(msg.clone()),
                None => continue,
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = sent {
                inner.lose(s, revision);
            }
        }
    }

    /// The store jumped to `revision` without announcing what lies between (a Raft snapshot
    /// was installed): every stream with synced watchers must read it from storage.
    pub(super) fn jump(&self, revision: i64) {
        let mut inner = lock(&self.inner);
        if revision <= inner.published {
            return;
        }
        let from = inner.published + 1;
        inner.published = revision;
        let watching: Vec<StreamId> = inner
            .ranges
            .iter()
            .filter(|(_, watchers)| !watchers.is_empty())
            .map(|(s, _)| *s)
            .collect();
        for s in watching {
            inner.lose(s, from);
        }
    }
}
