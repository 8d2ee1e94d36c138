//! A write transaction: etcd's put / delete-range semantics at one new revision.
//!
//! A [`WriteTxn`] begins at the store's latest revision `R` and, if it changes anything, will
//! be revision `R + 1`; its changes get sub-revisions 0, 1, … in order. Changes are kept in
//! the transaction (an overlay that its own reads see, as etcd's reads inside a txn see its
//! earlier writes) until [`WriteTxn::into_batch`] appends them, with the new current
//! revision, to the caller's storage batch. The store's revision advances only when the
//! caller, after that batch is durable, hands the returned [`PublishToken`] to
//! [`KvStore::publish`]; until then readers keep seeing `R`. Transactions are serialized: a
//! second one waits until the first is turned into a batch or dropped.
//!
//! Several puts may share one storage batch: a transaction begun with
//! [`KvStore::write_txn_over`] reads the [`Unwritten`] changes of the transactions turned into
//! that batch before it, as the store's latest state, before it reads the engine. Only
//! [`WriteTxn::put`] may run over unwritten changes; ranges and deletes, which scan the
//! engine, refuse to.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use setpoint_proto::etcdserverpb::RangeRequest;
use setpoint_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::error::{MvccError, Result};
use super::key_codec::{
    decode_user_key, decode_value, encode_put_value, encode_user_key, escaped_key_end, kv_key,
    kv_seek_key, rev_value, split_kv_key, tombstone_value, REV_DELETE, REV_PUT,
};
use super::kvstore::{KvStore, Shared, META_CURRENT_REVISION};
use super::range::{self, Fetch, KeyRange, Overlay, RangeOutput};
use super::revision::Revision;
use crate::storage::{Cf, Engine, WriteBatch};

/// A write transaction on a [`KvStore`]; see the module documentation.
pub struct WriteTxn<'a, E: Engine> {
    store: &'a KvStore<E>,
    _serial: MutexGuard<'a, ()>,
    /// The revision the transaction starts from.
    base: i64,
    overlay: Overlay,
    /// Changes of earlier transactions in a batch the engine does not hold yet.
    unwritten: Option<&'a Unwritten>,
    batch: WriteBatch,
    changes: Vec<Event>,
}

/// The latest key-values written by transactions whose batch is not in the engine yet (see
/// the module documentation). Seal it ([`Unwritten::seal`]) right before that batch is written.
#[derive(Debug, Default)]
pub struct Unwritten {
    latest: Overlay,
    /// The store's revision once the batch is written, if a transaction in it changed
    /// anything.
    revision: Option<i64>,
}

impl Unwritten {
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// The store's revision once the batch is written, if a transaction in it changed anything.
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// Records the batch's new current revision in `batch` (once for all its transactions)
    /// and forgets everything: call it right before `batch` is written.
    pub fn seal(&mut self, batch: &mut WriteBatch) {
        if let Some(rev) = self.revision.take() {
            record_revision(batch, rev);
        }
        self.latest.clear();
    }

    /// Adds a transaction's changes (later ones win).
    pub fn add(&mut self, changed: Changed) {
        self.latest.extend(changed.latest);
        if changed.revision.is_some() {
            self.revision = changed.revision;
        }
    }
}

impl<'a, E: Engine> WriteTxn<'a, E> {
    pub(super) fn new(
        store: &'a KvStore<E>,
        serial: MutexGuard<'a, ()>,
        unwritten: Option<&'a Unwritten>,
    ) -> Self {
        let base = store.shared.written.load(Ordering::SeqCst);
        WriteTxn {
            store,
            _serial: serial,
            base,
            overlay: Overlay::new(),
            unwritten: unwritten.filter(|u| !u.is_empty()),
            batch: WriteBatch::new(),
            changes: Vec::new(),
        }
    }

    /// Scanning the engine would miss unwritten changes: refuse rather than answer wrong.
    fn engine_is_latest(&self) -> Result<()> {
        match self.unwritten {
            None => Ok(()),
            Some(_) => Err(MvccError::Corrupt(
                "a range or delete ran over unwritten changes".into(),
            )),
        }
    }

    /// The revision this transaction has if it changes anything (begin + 1), else the one it
    /// began at — the revision its reads see and etcd reports in its header.
    pub fn revision(&self) -> i64 {
        if self.changes.is_empty() {
            self.base
        } else {
            self.base + 1
        }
    }

    /// The revision the transaction began at.
    pub fn begin_revision(&self) -> i64 {
        self.base
    }

    /// The events this transaction produced so far, in sub-revision order (puts carry the new
    /// key-value; deletes carry the key and the deleting revision, as etcd's events do).
    pub fn changes(&self) -> &[Event] {
        &self.changes
    }

    /// A range read that sees this transaction's own earlier changes (at revision 0 or at
    /// [`WriteTxn::revision`]); an explicit older revision reads history.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeOutput> {
        self.engine_is_latest()?;
        let view_rev = self.revision();
        let rev = if req.revision > view_rev {
            return Err(MvccError::FutureRevision);
        } else if req.revision <= 0 {
            view_rev
        } else {
            req.revision
        };
        if rev < self.store.compact_revision() {
            return Err(MvccError::Compacted);
        }
        let engine = self.store.engine.as_ref();
        if rev > self.base {
            range::execute(engine, req, self.base, view_rev, Some(&self.overlay))
        } else {
            range::execute(engine, req, rev, view_rev, None)
        }
    }

    /// Whether `key` exists now, as this transaction sees it (its own and unwritten changes
    /// included).
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        Ok(self.latest(key, &encode_user_key(key), false)?.is_some())
    }

    /// The key's current key-value as this transaction sees it (`enc`: the key escaped).
    /// Unless `want_value`, its value may be left empty (one the memory does not keep is not
    /// read from the engine).
    fn latest(&self, key: &[u8], enc: &[u8], want_value: bool) -> Result<Option<KeyValue>> {
        if let Some(v) = self.overlay.get(enc) {
            return Ok(v.clone());
        }
        if let Some(v) = self.unwritten.and_then(|u| u.latest.get(enc)) {
            return Ok(v.clone());
        }
        // Published writes are all in the engine, so what the cache knows is the engine's.
        if let Some(v) = self.store.latest.get(key, want_value) {
            return Ok(v);
        }
        let engine = self.store.engine.as_ref();
        let end = escaped_key_end(enc);
        let mut cursor = engine.cursor(Cf::Kv, Some(&kv_seek_key(enc, self.base)), Some(&end))?;
        if !cursor.seek_to_first()? {
            return Ok(None);
        }
        let (found, _) = split_kv_key(cursor.key())?;
        if found != enc {
            return Err(MvccError::Corrupt("kv cursor left its bounds".into()));
        }
        decode_value(&decode_user_key(enc)?, cursor.value())
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.base + 1, self.changes.len() as i64)
    }

    /// Puts `key`. `ignore_value` / `ignore_lease` keep the key's current value / lease (and
    /// fail with `KeyNotFound` if the key does not exist). Returns the previous key-value.
    /// The creation revision survives updates and the version counts up from 1; a put after
    /// a delete starts a new generation.
    pub fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        ignore_value: bool,
        ignore_lease: bool,
    ) -> Result<Option<KeyValue>> {
        self.put_with(key, value, lease, ignore_value, ignore_lease, true)
    }

    /// [`WriteTxn::put`], returning the previous key-value only if `want_prev` (etcd's
    /// `prev_kv`): a put that does not want it never reads a large previous value.
    pub fn put_with(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        ignore_value: bool,
        ignore_lease: bool,
        want_prev: bool,
    ) -> Result<Option<KeyValue>> {
        let enc = encode_user_key(key);
        let prev = self.latest(key, &enc, want_prev || ignore_value)?;
        if (ignore_value || ignore_lease) && prev.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let rev = self.next_revision();
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: prev.as_ref().map_or(rev.main, |p| p.create_revision),
            mod_revision: rev.main,
            version: prev.as_ref().map_or(0, |p| p.version) + 1,
            value: match (&prev, ignore_value) {
                (Some(p), true) => p.value.clone(),
                _ => value.to_vec(),
            },
            lease: match (&prev, ignore_lease) {
                (Some(p), true) => p.lease,
                _ => lease,
            },
        };
        self.batch
            .put(Cf::Kv, kv_key(&enc, rev), encode_put_value(&kv));
        self.batch
            .put(Cf::Rev, rev.to_bytes(), rev_value(REV_PUT, key));
        self.changes.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: None,
        });
        self.overlay.insert(enc, Some(kv));
        Ok(prev.filter(|_| want_prev))
    }

    /// Deletes every live key in etcd's range `[key, range_end)` (empty `range_end`: just
    /// `key`; `"\0"`: every key `>= key`) by writing tombstones. Returns the deleted key-values;
    /// deleting nothing changes nothing.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        self.delete_range_with(key, range_end, true)
    }

    /// [`WriteTxn::delete_range`], with the deleted key-values' values only if `want_prev`
    /// (etcd's `prev_kv`): deleting many large values without it never reads them.
    pub fn delete_range_with(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        want_prev: bool,
    ) -> Result<Vec<KeyValue>> {
        self.engine_is_latest()?;
        let Some(range) = KeyRange::new(key, range_end) else {
            return Ok(Vec::new());
        };
        let overlay = (!self.overlay.is_empty()).then_some(&self.overlay);
        let (doomed, _) = range::collect(
            self.store.engine.as_ref(),
            &range,
            self.base,
            overlay,
            usize::MAX,
            if want_prev {
                Fetch::Full
            } else {
                Fetch::NoValues
            },
        )?;
        self.batch.reserve(2 * doomed.len());
        self.changes.reserve(doomed.len());
        for kv in &doomed {
            let rev = self.next_revision();
            let enc = encode_user_key(&kv.key);
            self.batch
                .put(Cf::Kv, kv_key(&enc, rev), tombstone_value().to_vec());
            self.batch
                .put(Cf::Rev, rev.to_bytes(), rev_value(REV_DELETE, &kv.key));
            self.changes.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: kv.key.clone(),
                    mod_revision: rev.main,
                    ..Default::default()
                }),
                prev_kv: None,
            });
            self.overlay.insert(enc, None);
        }
        Ok(doomed)
    }

    /// Appends this transaction's changes and the new current revision to `batch` and ends
    /// it. Returns the revision the store has once `batch` is written (unchanged if nothing
    /// changed) and the token to [`KvStore::publish`] after the write succeeded. Dropping the
    /// token instead (the write failed) lets the next transaction reuse the revision.
    pub fn into_batch(self, batch: &mut WriteBatch) -> (i64, PublishToken<E>) {
        let (revision, token, changed) = self.into_unwritten_batch(batch);
        if let Some(rev) = changed.revision {
            record_revision(batch, rev);
        }
        (revision, token)
    }

    /// [`WriteTxn::into_batch`] for a batch shared by several transactions: the changes go
    /// into `batch` but the new current revision does not; the returned [`Changed`] must be
    /// added to the batch's [`Unwritten`] ([`Unwritten::add`]), which records the revision
    /// once for the whole batch when sealed ([`Unwritten::seal`]) before it is written.
    pub fn into_unwritten_batch(
        mut self,
        batch: &mut WriteBatch,
    ) -> (i64, PublishToken<E>, Changed) {
        let mut changed = Changed {
            latest: std::mem::take(&mut self.overlay),
            revision: None,
        };
        if self.changes.is_empty() {
            return (
                self.base,
                PublishToken::new(self.store.shared.clone(), self.base, false, Vec::new()),
                changed,
            );
        }
        let new_rev = self.base + 1;
        batch.append(&mut self.batch);
        changed.revision = Some(new_rev);
        self.store.shared.written.store(new_rev, Ordering::SeqCst);
        let changes = std::mem::take(&mut self.changes);
        (
            new_rev,
            PublishToken::new(self.store.shared.clone(), new_rev, true, changes),
            changed,
        )
    }
}

/// What one transaction changed, for the [`Unwritten`] of the batch it went into.
pub struct Changed {
    latest: Overlay,
    /// The store's revision after it, if it changed anything.
    revision: Option<i64>,
}

/// Records `revision` as the store's current one in `batch`.
fn record_revision(batch: &mut WriteBatch, revision: i64) {
    batch.put(Cf::Meta, META_CURRENT_REVISION, revision.to_be_bytes());
}

/// Proof that a transaction's batch was handed out; give it to [`KvStore::publish`] once the
/// batch is durable. If dropped unpublished, the revision it reserved is released.
#[must_use = "publish the token after the batch is written, or the store's revision never advances"]
pub struct PublishToken<E> {
    shared: Arc<Shared>,
    revision: i64,
    pending: bool,
    /// The transaction's events, announced to watchers on publish.
    changes: Vec<Event>,
    _engine: PhantomData<fn() -> E>,
}

impl<E> PublishToken<E> {
    fn new(shared: Arc<Shared>, revision: i64, pending: bool, changes: Vec<Event>) -> Self {
        PublishToken {
            shared,
            revision,
            pending,
            changes,
            _engine: PhantomData,
        }
    }

    /// The revision the store has once this token is published.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Advances the store's revision; returns the events that became visible (none if the
    /// transaction changed nothing).
    pub(super) fn publish(mut self) -> Option<(i64, Vec<Event>)> {
        if !self.pending {
            return None;
        }
        self.shared
            .current
            .fetch_max(self.revision, Ordering::SeqCst);
        self.pending = false;
        Some((self.revision, std::mem::take(&mut self.changes)))
    }
}

impl<E> Drop for PublishToken<E> {
    fn drop(&mut self) {
        if self.pending {
            let current = self.shared.current.load(Ordering::SeqCst);
            // Release the reserved revision unless a later transaction already built on it.
            let _ = self.shared.written.compare_exchange(
                self.revision,
                current,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            tracing::warn!(
                revision = self.revision,
                "mvcc write dropped without being published"
            );
        }
    }
}
