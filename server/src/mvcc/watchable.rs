//! Announcing published revisions to watchers (etcd's `watchable_store.go`, publisher half).
//!
//! When a write becomes visible ([`super::KvStore::publish`]), the store sends one
//! [`Published`] message — the revision and, when small, its events — on a bounded broadcast
//! ring. Sending never waits: a receiver that falls more than [`RING_REVISIONS`] behind loses
//! the oldest messages (it sees `Lagged`) and must read what it missed from storage with
//! [`super::KvStore::read_events`], where every revision stays until compaction. The ring is
//! shared by all receivers, so its memory is bounded by `RING_REVISIONS ×
//! INLINE_EVENT_BYTES` however many watchers there are and however slow they are.
//!
//! This module does not know about watchers, key ranges or gRPC; that is `api::watch`.

use std::sync::Arc;

use setpoint_proto::mvccpb::Event;
use tokio::sync::broadcast;

/// Revisions the ring holds before a slow receiver starts losing messages.
pub const RING_REVISIONS: usize = 1024;
/// A revision whose events are larger than this is announced without them; receivers read
/// it from storage. Keeps the ring's memory bounded.
pub const INLINE_EVENT_BYTES: usize = 64 * 1024;

/// One published revision.
#[derive(Debug)]
pub struct Published {
    /// The store revision that became visible. Every revision up to it is readable.
    pub revision: i64,
    /// Its events in sub-revision order, or `None`: read them from storage (too large to
    /// inline, or the store jumped several revisions at once, e.g. after a Raft snapshot).
    pub events: Option<Vec<Event>>,
}

/// The sending half, owned by the store.
pub(super) struct Notifier {
    tx: broadcast::Sender<Arc<Published>>,
}

impl Notifier {
    pub(super) fn new() -> Self {
        let (tx, _) = broadcast::channel(RING_REVISIONS);
        Notifier { tx }
    }

    /// Announces `revision` with `events` (inlined when small enough). Never blocks.
    pub(super) fn notify(&self, revision: i64, events: Vec<Event>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let size: usize = events.iter().map(prost::Message::encoded_len).sum();
        let events = (size <= INLINE_EVENT_BYTES).then_some(events);
        let _ = self.tx.send(Arc::new(Published { revision, events }));
    }

    /// Announces that everything up to `revision` is readable, without events.
    pub(super) fn notify_jump(&self, revision: i64) {
        let _ = self.tx.send(Arc::new(Published {
            revision,
            events: None,
        }));
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}
