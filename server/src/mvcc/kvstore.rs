//! The revisioned key space: etcd's MVCC store over a storage [`Engine`].
//!
//! [`KvStore`] keeps the current and compacted revisions in memory, and the latest versions
//! of recently written keys for the puts that follow (bounded, see `latest`); every read goes
//! to the engine (layout in `key_codec`). Reads take an engine snapshot so that a
//! concurrent write or physical compaction is seen entirely or not at all; they serve the
//! published current revision or any revision since the last compaction. Writes go through
//! [`WriteTxn`] (see `txn`), compaction through `compaction`. The store starts at revision 1,
//! as etcd does, so an empty store answers with header revision 1.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use setpoint_proto::etcdserverpb::RangeRequest;
use setpoint_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::compaction::CompactionProgress;
use super::error::{MvccError, Result};
use super::key_codec::{
    decode_rev_key, decode_rev_value, decode_value, encode_user_key, kv_key, REV_PUT,
};
use super::latest::LatestCache;
use super::range::{self, RangeOutput};
use super::revision::Revision;
use super::txn::{PublishToken, Unwritten, WriteTxn};
use super::watchable::WatchHub;
use crate::storage::{Cf, Engine, ReadView};

/// `Cf::Meta` keys, written in the same batch as the data they describe.
pub(super) const META_CURRENT_REVISION: &[u8] = b"mvcc/current_revision";
pub(super) const META_COMPACT_SCHEDULED: &[u8] = b"mvcc/compact_scheduled";
pub(super) const META_COMPACT_FINISHED: &[u8] = b"mvcc/compact_finished";

/// The revision of a store that has never been written.
pub const INITIAL_REVISION: i64 = 1;

/// Revisions shared between the store and outstanding publish tokens.
pub(super) struct Shared {
    /// The revision readers see: advanced by `publish` once a write is durable.
    pub(super) current: AtomicI64,
    /// The revision of the last batch handed out (`>= current`); write transactions build on it.
    pub(super) written: AtomicI64,
    /// The logical compaction revision: reads below it fail.
    pub(super) compact: AtomicI64,
}

/// etcd's MVCC key-value store. Share it in an `Arc`; it synchronizes internally.
pub struct KvStore<E: Engine> {
    pub(super) engine: Arc<E>,
    pub(super) shared: Arc<Shared>,
    /// Serializes write transactions.
    writer: Mutex<()>,
    pub(super) compaction: Mutex<CompactionProgress>,
    /// Routes published revisions to watch streams.
    hub: Arc<WatchHub>,
    /// Recently written keys' latest key-values, for the puts that follow.
    pub(super) latest: LatestCache,
    /// Held exclusively while the engine's contents are replaced (a Raft snapshot) and the
    /// revisions reloaded; readers hold it shared while they pair revisions with an engine
    /// snapshot, so they never read new data with old revisions.
    install: RwLock<()>,
}

/// Events read from the revision index by [`KvStore::read_events`].
#[derive(Debug, Default)]
pub struct EventBatch {
    /// In revision order; whole revisions only.
    pub events: Vec<(Revision, Event)>,
    /// Every revision up to this one has been read: the next read starts at `through + 1`.
    pub through: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn read_i64<V: ReadView + ?Sized>(view: &V, key: &[u8], default: i64) -> Result<i64> {
    match view.get(Cf::Meta, key)? {
        None => Ok(default),
        Some(b) => {
            let bytes: [u8; 8] = b.as_slice().try_into().map_err(|_| {
                MvccError::Corrupt(format!(
                    "meta {} is {} bytes",
                    String::from_utf8_lossy(key),
                    b.len()
                ))
            })?;
            Ok(i64::from_be_bytes(bytes))
        }
    }
}

impl<E: Engine> KvStore<E> {
    /// Opens the store kept in `engine`, loading its current and compacted revisions.
    pub fn open(engine: Arc<E>) -> Result<Self> {
        let store = KvStore {
            engine,
            shared: Arc::new(Shared {
                current: AtomicI64::new(INITIAL_REVISION),
                written: AtomicI64::new(INITIAL_REVISION),
                compact: AtomicI64::new(0),
            }),
            writer: Mutex::new(()),
            compaction: Mutex::new(CompactionProgress::default()),
            hub: Arc::new(WatchHub::new(0)),
            latest: LatestCache::default(),
            install: RwLock::new(()),
        };
        store.reload()?;
        Ok(store)
    }

    /// Re-reads the revisions (and the latest state of the keys, see `latest`) from the
    /// engine, e.g. after its contents were replaced by a Raft snapshot. Waits for any write
    /// transaction in progress.
    pub fn reload(&self) -> Result<()> {
        let _serial = lock(&self.writer);
        let mut progress = lock(&self.compaction);
        let engine = self.engine.as_ref();
        let current = read_i64(engine, META_CURRENT_REVISION, INITIAL_REVISION)?;
        let compact = read_i64(engine, META_COMPACT_SCHEDULED, 0)?;
        let finished = read_i64(engine, META_COMPACT_FINISHED, 0)?;
        if current < INITIAL_REVISION || compact < 0 || compact > current || finished > compact {
            return Err(MvccError::Corrupt(format!(
                "revisions out of order: current {current}, compact {compact}, compacted {finished}"
            )));
        }
        self.shared.current.store(current, Ordering::SeqCst);
        self.shared.written.store(current, Ordering::SeqCst);
        self.shared.compact.store(compact, Ordering::SeqCst);
        *progress = CompactionProgress::starting_at(finished);
        self.latest.load(engine)?;
        self.hub.jump(current);
        Ok(())
    }

    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    /// The store's revision: that of the last published write (1 for an empty store).
    pub fn current_revision(&self) -> i64 {
        self.shared.current.load(Ordering::SeqCst)
    }

    /// Revisions below this cannot be read (0 before the first compaction).
    pub fn compact_revision(&self) -> i64 {
        self.shared.compact.load(Ordering::SeqCst)
    }

    /// Serves an etcd Range at `req.revision` (0: the current revision). Fails with
    /// `Compacted` below the compaction revision and `FutureRevision` above the current one.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeOutput> {
        // Order matters: everything up to `current` is in a snapshot taken after reading it,
        // and a physical compaction the snapshot may reflect is already in `compact`.
        let (current, snap, compact) = self.consistent_view();
        let rev = if req.revision > current {
            return Err(MvccError::FutureRevision);
        } else if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        if rev < compact {
            return Err(MvccError::Compacted);
        }
        range::execute(&snap, req, rev, current, None)
    }

    /// The current revision, an engine snapshot holding everything up to it, and the
    /// compaction revision that snapshot may reflect — never straddling a snapshot install.
    fn consistent_view(&self) -> (i64, E::Snapshot<'_>, i64) {
        let _shared = self.install_shared();
        // Order matters: everything up to `current` is in a snapshot taken after reading it,
        // and a physical compaction the snapshot may reflect is already in `compact`.
        let current = self.current_revision();
        let snap = self.engine.snapshot();
        let compact = self.compact_revision();
        (current, snap, compact)
    }

    pub(super) fn install_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.install.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `replace` — which replaces the engine's contents and calls [`KvStore::reload`] —
    /// with every reader and the physical compactor kept out.
    pub fn exclusive<T>(&self, replace: impl FnOnce() -> T) -> T {
        let _exclusive = self.install.write().unwrap_or_else(|p| p.into_inner());
        replace()
    }

    /// Begins a write transaction (waiting for the previous one to end).
    pub fn write_txn(&self) -> WriteTxn<'_, E> {
        WriteTxn::new(self, lock(&self.writer), None)
    }

    /// Begins a write transaction that sees `unwritten` — the changes of transactions turned
    /// into a batch not yet written to the engine — as the latest state (puts only; see
    /// `txn`).
    pub fn write_txn_over<'a>(&'a self, unwritten: &'a Unwritten) -> WriteTxn<'a, E> {
        WriteTxn::new(self, lock(&self.writer), Some(unwritten))
    }

    /// Makes a written transaction visible: call once the batch it was added to is durable.
    /// Watchers subscribed with [`KvStore::subscribe`] are told (never waited for).
    pub fn publish(&self, token: PublishToken<E>) {
        if let Some((revision, events)) = token.publish() {
            self.latest.record(&events);
            self.hub.notify(revision, events);
        }
    }

    /// Where watch streams register to be sent published revisions (see `watchable`).
    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    /// Events with revision `>= from_rev` up to the current revision, in revision order, read
    /// from the revision index (watch catch-up). A put's event carries its key-value; a
    /// delete's carries the key and the deleting revision (as etcd's do); `prev_kv` is left
    /// empty. Stops once `max_events` events or `max_bytes` of encoded events are read, but
    /// never splits a revision (so one large revision is returned whole). Fails with
    /// `Compacted` if `from_rev` is below the compaction revision.
    pub fn read_events(
        &self,
        from_rev: i64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<EventBatch> {
        let (current, snap, compact) = self.consistent_view();
        if from_rev < compact {
            return Err(MvccError::Compacted);
        }
        let from = from_rev.max(1);
        let mut out = EventBatch {
            events: Vec::new(),
            through: current.max(from - 1),
        };
        if from > current {
            return Ok(out);
        }
        let lower = Revision::new(from, 0).to_bytes();
        let upper = Revision::new(current + 1, 0).to_bytes();
        let mut cursor = snap.cursor(Cf::Rev, Some(&lower), Some(&upper))?;
        let mut ok = cursor.seek_to_first()?;
        let mut bytes = 0usize;
        while ok {
            let rev = decode_rev_key(cursor.key())?;
            if let Some((last, _)) = out.events.last() {
                if last.main != rev.main && (out.events.len() >= max_events || bytes >= max_bytes) {
                    out.through = last.main;
                    break;
                }
            }
            let (kind, key) = decode_rev_value(cursor.value())?;
            let event = if kind == REV_PUT {
                let stored = snap
                    .get(Cf::Kv, &kv_key(&encode_user_key(key), rev))?
                    .ok_or_else(|| {
                        MvccError::Corrupt(format!("revision {rev} has no stored version"))
                    })?;
                let kv = decode_value(key, &stored)?.ok_or_else(|| {
                    MvccError::Corrupt(format!("revision {rev} is a put but stored a tombstone"))
                })?;
                Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv),
                    prev_kv: None,
                }
            } else {
                Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key: key.to_vec(),
                        mod_revision: rev.main,
                        ..Default::default()
                    }),
                    prev_kv: None,
                }
            };
            bytes += prost::Message::encoded_len(&event);
            out.events.push((rev, event));
            ok = cursor.next()?;
        }
        Ok(out)
    }

    /// The key-value of `key` as of revision `rev` (0: current), or `None` if it did not
    /// exist then — e.g. a watch event's `prev_kv` is `get(key, event_rev - 1)`.
    pub fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        let out = self.range(&RangeRequest {
            key: key.to_vec(),
            revision: rev,
            ..Default::default()
        })?;
        Ok(out.kvs.into_iter().next())
    }
}
