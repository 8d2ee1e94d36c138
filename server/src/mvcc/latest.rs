//! A bounded in-memory index of the latest state of the store's keys, so that a put learns
//! its key's previous version (creation revision, version, lease) without a seek into the
//! engine — under load that seek was the largest single cost of a put, and it grows with the
//! data. Like etcd's in-memory key index it holds every key while they fit, but only small
//! values: a key whose value is larger is held as its metadata, and its value is read from
//! the engine only when a request needs it (`prev_kv`, `ignore_value`).
//!
//! It is loaded from the engine when the store opens (or its contents are replaced by a Raft
//! snapshot) and then kept up to date from published writes only (a key's state after the
//! write), so it never holds what the engine does not. While every key fits within its
//! bound it is *complete*: a key it does not know does not exist, and a put of a new key
//! reads nothing. Past the bound it forgets everything and becomes a cache of keys written
//! since, and a key it does not know is read from the engine as before. Compaction never
//! changes a key's latest state (it keeps the newest version, and a compacted tombstone still
//! means "deleted"). Not a read cache for ranges: those read the engine at their revision.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use setpoint_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::error::Result;
use super::key_codec::{decode_user_key, decode_value, split_kv_key};
use crate::storage::{Cf, ReadView};

/// Values up to this size are kept; a larger value is read from the engine when a request
/// needs it (a put's `prev_kv`, `ignore_value`).
const KEPT_VALUE_BYTES: usize = 128;

/// Bytes counted for all entries before everything is forgotten: about a million keys of
/// 100 bytes (`etcdctl check perf` writes 240,000 keys of 276 bytes with 1 KiB values).
const MAX_BYTES: usize = 256 << 20;

/// Bytes counted for an entry beyond its key and kept value: the map slot (key vector and the
/// key-value's fields), allocation headers.
const ENTRY_OVERHEAD: usize = 160;

/// Rows of history read when loading before giving up on completeness (a store with a long
/// uncompacted history opens without the scan's cost).
const MAX_LOAD_ROWS: usize = 2_000_000;

/// What is known of one key.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    /// It exists. The key-value's key is left empty (the map holds it) and so is its value
    /// unless `value_kept`.
    Live {
        kv: KeyValue,
        value_kept: bool,
    },
    Deleted,
}

impl Known {
    fn of(kv: &KeyValue) -> Known {
        let value_kept = kv.value.len() <= KEPT_VALUE_BYTES;
        Known::Live {
            kv: KeyValue {
                key: Vec::new(),
                value: if value_kept {
                    kv.value.clone()
                } else {
                    Vec::new()
                },
                ..*kv
            },
            value_kept,
        }
    }

    fn weight(&self, key: &[u8]) -> usize {
        let value = match self {
            Known::Live { kv, .. } => kv.value.len(),
            Known::Deleted => 0,
        };
        key.len() + value + ENTRY_OVERHEAD
    }
}

struct Inner {
    latest: HashMap<Vec<u8>, Known>,
    bytes: usize,
    /// Whether every existing key is in `latest`.
    complete: bool,
    /// `MAX_BYTES`, or less in tests.
    max_bytes: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner::empty(MAX_BYTES)
    }
}

impl Inner {
    fn empty(max_bytes: usize) -> Inner {
        Inner {
            latest: HashMap::new(),
            bytes: 0,
            complete: false,
            max_bytes,
        }
    }

    fn insert(&mut self, key: Vec<u8>, known: Known) {
        if known == Known::Deleted && self.complete {
            // Unknown already means absent: keep nothing for it.
            if let Some(old) = self.latest.remove(&key) {
                self.bytes -= old.weight(&key);
            }
            return;
        }
        let added = known.weight(&key);
        if let Some(old) = self.latest.get(&key) {
            self.bytes -= old.weight(&key);
        }
        self.latest.insert(key, known);
        self.bytes += added;
        if self.bytes > self.max_bytes {
            *self = Inner::empty(self.max_bytes);
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct LatestCache {
    inner: Mutex<Inner>,
}

impl LatestCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(latest)` if the key's latest state is known (`Some(None)`: it does not exist);
    /// `None`: read it from the engine. Unless `want_value`, the key-value returned has an
    /// empty value (a put that needs none copies none).
    pub(crate) fn get(&self, key: &[u8], want_value: bool) -> Option<Option<KeyValue>> {
        let inner = self.lock();
        match inner.latest.get(key) {
            Some(Known::Live { kv, value_kept }) if *value_kept || !want_value => {
                Some(Some(KeyValue {
                    key: key.to_vec(),
                    value: if want_value {
                        kv.value.clone()
                    } else {
                        Vec::new()
                    },
                    ..*kv
                }))
            }
            Some(Known::Live { .. }) => None,
            Some(Known::Deleted) => Some(None),
            None if inner.complete => Some(None),
            None => None,
        }
    }

    /// Takes in the events of a published revision, in order.
    pub(crate) fn record(&self, events: &[Event]) {
        let mut inner = self.lock();
        for event in events {
            let Some(kv) = &event.kv else { continue };
            let known = if event.r#type == EventType::Delete as i32 {
                Known::Deleted
            } else {
                Known::of(kv)
            };
            inner.insert(kv.key.clone(), known);
        }
    }

    /// Replaces what is known with the latest state of every key in `view`, complete if it
    /// fits (else the cache starts empty and incomplete).
    pub(crate) fn load<V: ReadView + ?Sized>(&self, view: &V) -> Result<()> {
        let max_bytes = self.lock().max_bytes;
        let mut loaded = Inner {
            complete: true,
            ..Inner::empty(max_bytes)
        };
        let mut cursor = view.cursor(Cf::Kv, None, None)?;
        let mut ok = cursor.seek_to_first()?;
        let mut rows = 0usize;
        let mut last_enc: Vec<u8> = Vec::new();
        while ok {
            rows += 1;
            if rows > MAX_LOAD_ROWS {
                loaded = Inner::empty(max_bytes);
                break;
            }
            let (enc, _) = split_kv_key(cursor.key())?;
            // Versions sort newest first within a key: the first row of a key is its latest.
            if rows == 1 || enc != last_enc.as_slice() {
                last_enc = enc.to_vec();
                let key = decode_user_key(enc)?;
                let known = match decode_value(&key, cursor.value())? {
                    Some(kv) => Known::of(&kv),
                    None => Known::Deleted,
                };
                loaded.insert(key, known);
                if !loaded.complete {
                    break;
                }
            }
            ok = cursor.next()?;
        }
        *self.lock() = loaded;
        Ok(())
    }

    /// An empty cache that forgets everything past `max_bytes`.
    #[cfg(test)]
    pub(crate) fn with_bound(max_bytes: usize) -> LatestCache {
        LatestCache {
            inner: Mutex::new(Inner::empty(max_bytes)),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().latest.len()
    }

    #[cfg(test)]
    pub(crate) fn is_complete(&self) -> bool {
        self.lock().complete
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mvcc::KvStore;
    use crate::storage::{Engine, MemoryEngine, WriteBatch};

    fn put(key: &str, value_len: usize, rev: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.into(),
                value: vec![b'v'; value_len],
                create_revision: 2,
                mod_revision: rev,
                version: rev - 1,
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    fn delete(key: &str, rev: i64) -> Event {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn later_events_win_and_deletes_are_remembered() {
        let cache = LatestCache::default();
        cache.record(&[put("a", 1, 2), put("b", 1, 2)]);
        cache.record(&[put("a", 1, 3), delete("b", 3)]);
        let a = cache.get(b"a", true).expect("known").expect("live");
        assert_eq!((a.key.as_slice(), a.mod_revision), (&b"a"[..], 3));
        assert_eq!(cache.get(b"b", true), Some(None));
        assert_eq!(cache.get(b"c", true), None);
    }

    #[test]
    fn a_large_value_is_left_to_the_engine_but_its_keys_metadata_is_kept() {
        let cache = loaded(&[]);
        cache.record(&[put("a", 1, 2)]);
        cache.record(&[put("a", KEPT_VALUE_BYTES + 1, 3)]);
        // Wanting the value: read it from the engine rather than answer a stale one.
        assert_eq!(cache.get(b"a", true), None);
        let a = cache.get(b"a", false).expect("known").expect("live");
        assert_eq!((a.mod_revision, a.version), (3, 2));
        assert!(a.value.is_empty());
        cache.record(&[put("a", KEPT_VALUE_BYTES, 4)]);
        let a = cache.get(b"a", true).expect("known").expect("live");
        assert_eq!(a.value.len(), KEPT_VALUE_BYTES);
        assert_eq!(
            cache.get(b"b", true),
            Some(None),
            "complete: b does not exist"
        );
    }

    /// A cache loaded from a store holding `puts` (key, value length), one revision each.
    fn loaded(puts: &[(&str, usize)]) -> LatestCache {
        let store = KvStore::open(Arc::new(MemoryEngine::new())).expect("store");
        for (key, len) in puts {
            let mut txn = store.write_txn();
            txn.put(key.as_bytes(), &vec![b'v'; *len], 0, false, false)
                .expect("put");
            let mut batch = WriteBatch::new();
            let (_, token) = txn.into_batch(&mut batch);
            store.engine().write(batch, false).expect("write");
            store.publish(token);
        }
        let cache = LatestCache::default();
        cache.load(store.engine().as_ref()).expect("load");
        cache
    }

    #[test]
    fn loading_a_store_that_fits_knows_every_key() {
        let cache = loaded(&[("a", 1), ("b", 2), ("a", 3)]);
        assert!(cache.is_complete());
        assert_eq!(cache.len(), 2);
        let a = cache.get(b"a", true).expect("known").expect("live");
        assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 4, 2));
        assert_eq!(a.value, vec![b'v'; 3]);
        assert_eq!(cache.get(b"c", true), Some(None));
        // Complete, it keeps nothing for a deleted key.
        cache.record(&[delete("b", 5)]);
        assert_eq!(cache.get(b"b", true), Some(None));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn passing_the_byte_bound_forgets_everything() {
        const BOUND: usize = 1 << 20;
        let cache = LatestCache::with_bound(BOUND);
        cache.load(&MemoryEngine::new()).expect("load");
        assert!(cache.is_complete());
        let per_key = KEPT_VALUE_BYTES;
        // Keys are 9 bytes: as many entries as fit under the bound.
        let keys = BOUND / (9 + per_key + ENTRY_OVERHEAD);
        for i in 0..keys {
            cache.record(&[put(&format!("k{i:08}"), per_key, 2)]);
        }
        assert_eq!(cache.len(), keys);
        assert!(cache.is_complete());
        for i in keys..keys + 8 {
            cache.record(&[put(&format!("k{i:08}"), per_key, 2)]);
        }
        assert!(cache.len() < 8, "{}", cache.len());
        assert!(!cache.is_complete());
        assert_eq!(
            cache.get(b"nothing", false),
            None,
            "unknown keys go to the engine"
        );
    }
}
