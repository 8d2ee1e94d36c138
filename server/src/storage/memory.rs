//! An in-memory [`Engine`]: one `BTreeMap` per column family, for fast unit tests.
//!
//! The maps are copy-on-write behind an `Arc`, so a snapshot or cursor is an `Arc` clone that
//! later writes never disturb (a write after a snapshot copies the maps once). Nothing is
//! persisted but checkpoints (one file, for tests of snapshots); `sync_wal` and `flush` do
//! nothing. Not for production: every write may copy the whole data set while a snapshot is
//! alive.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::engine::{Cf, Cursor, Engine, ReadView, Result, WriteBatch, WriteOp};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;
type Tables = [Table; 5];

/// The file a checkpoint of the in-memory engine is written to.
const CHECKPOINT_FILE: &str = "tables.bin";

/// The in-memory engine.
#[derive(Default)]
pub struct MemoryEngine {
    tables: RwLock<Arc<Tables>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> Arc<Tables> {
        match self.tables.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Number of entries in `cf` (test helper).
    pub fn len(&self, cf: Cf) -> usize {
        self.current()[cf.index()].len()
    }

    pub fn is_empty(&self) -> bool {
        self.current().iter().all(|t| t.is_empty())
    }
}

/// A frozen view of a [`MemoryEngine`].
#[derive(Clone)]
pub struct MemorySnapshot {
    tables: Arc<Tables>,
}

fn get_in(tables: &Tables, cf: Cf, key: &[u8]) -> Option<Vec<u8>> {
    tables[cf.index()].get(key).cloned()
}

fn cursor_in(
    tables: Arc<Tables>,
    cf: Cf,
    lower: Option<&[u8]>,
    upper: Option<&[u8]>,
) -> MemoryCursor {
    MemoryCursor {
        tables,
        cf: cf.index(),
        lower: lower.map(<[u8]>::to_vec),
        upper: upper.map(<[u8]>::to_vec),
        current: None,
    }
}

impl ReadView for MemoryEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(get_in(&self.current(), cf, key))
    }

    fn cursor(
        &self,
        cf: Cf,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn Cursor + '_>> {
        Ok(Box::new(cursor_in(self.current(), cf, lower, upper)))
    }
}

impl ReadView for MemorySnapshot {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(get_in(&self.tables, cf, key))
    }

    fn cursor(
        &self,
        cf: Cf,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn Cursor + '_>> {
        Ok(Box::new(cursor_in(self.tables.clone(), cf, lower, upper)))
    }
}

impl Engine for MemoryEngine {
    type Snapshot<'a> = MemorySnapshot;

    fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot {
            tables: self.current(),
        }
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<()> {
        let mut guard = match self.tables.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tables = Arc::make_mut(&mut *guard);
        for op in batch.into_ops() {
            match op {
                WriteOp::Put { cf, key, value } => {
                    tables[cf.index()].insert(key, value);
                }
                WriteOp::Delete { cf, key } => {
                    tables[cf.index()].remove(&key);
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    let table = &mut tables[cf.index()];
                    let doomed: Vec<Vec<u8>> =
                        range(table, Bound::Included(&start), Bound::Excluded(&end))
                            .map(|(k, _)| k.clone())
                            .collect();
                    for k in doomed {
                        table.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        Ok(())
    }

    fn write_out_wal(&self) -> Result<()> {
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Nothing to give back: removed data is gone from memory at once.
    fn defragment(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.current()
            .iter()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    type Checkpoint = MemorySnapshot;

    /// The tables, serialized into one file in `dir` (tests only: nothing here is fast).
    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let bytes = bincode::serialize(&*self.current()).map_err(std::io::Error::other)?;
        std::fs::create_dir(dir)?;
        std::fs::write(dir.join(CHECKPOINT_FILE), bytes)?;
        Ok(())
    }

    fn open_checkpoint(dir: &Path) -> Result<MemorySnapshot> {
        let bytes = std::fs::read(dir.join(CHECKPOINT_FILE))?;
        let tables: Tables = bincode::deserialize(&bytes).map_err(std::io::Error::other)?;
        Ok(MemorySnapshot {
            tables: Arc::new(tables),
        })
    }
}

/// `table.range` that yields nothing (instead of panicking) for an empty or inverted range.
fn range<'t>(
    table: &'t Table,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
) -> Box<dyn DoubleEndedIterator<Item = (&'t Vec<u8>, &'t Vec<u8>)> + 't> {
    let empty = match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    };
    if empty {
        return Box::new(std::iter::empty());
    }
    Box::new(table.range::<[u8], _>((lo, hi)))
}

/// A cursor over an `Arc` of the tables: every move is one `BTreeMap` range lookup.
struct MemoryCursor {
    tables: Arc<Tables>,
    cf: usize,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    current: Option<(Vec<u8>, Vec<u8>)>,
}

impl MemoryCursor {
    fn lower_bound(&self) -> Bound<&[u8]> {
        self.lower
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Included)
    }

    fn upper_bound(&self) -> Bound<&[u8]> {
        self.upper
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded)
    }

    /// Positions at the first entry in `(lo, upper)` / `[lo, upper)`.
    fn first_from(&mut self, lo: Bound<&[u8]>) -> bool {
        let table = &self.tables[self.cf];
        // Never below the cursor's own lower bound.
        let lo = match (lo, self.lower.as_deref()) {
            (Bound::Included(k) | Bound::Excluded(k), Some(l)) if k < l => Bound::Included(l),
            (Bound::Unbounded, Some(l)) => Bound::Included(l),
            (b, _) => b,
        };
        let found = range(table, lo, self.upper_bound())
            .next()
            .map(|(k, v)| (k.clone(), v.clone()));
        self.current = found;
        self.current.is_some()
    }

    /// Positions at the last entry in `[lower, hi)` / `[lower, hi]`.
    fn last_until(&mut self, hi: Bound<&[u8]>) -> bool {
        let table = &self.tables[self.cf];
        let hi = match (hi, self.upper.as_deref()) {
            (Bound::Included(k) | Bound::Excluded(k), Some(u)) if k >= u => Bound::Excluded(u),
            (Bound::Unbounded, Some(u)) => Bound::Excluded(u),
            (b, _) => b,
        };
        let found = range(table, self.lower_bound(), hi)
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone()));
        self.current = found;
        self.current.is_some()
    }
}

impl Cursor for MemoryCursor {
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.first_from(Bound::Included(key)))
    }

    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.last_until(Bound::Included(key)))
    }

    fn seek_to_first(&mut self) -> Result<bool> {
        Ok(self.first_from(Bound::Unbounded))
    }

    fn seek_to_last(&mut self) -> Result<bool> {
        Ok(self.last_until(Bound::Unbounded))
    }

    fn next(&mut self) -> Result<bool> {
        match self.current.take() {
            Some((k, _)) => Ok(self.first_from(Bound::Excluded(&k))),
            None => Ok(false),
        }
    }

    fn prev(&mut self) -> Result<bool> {
        match self.current.take() {
            Some((k, _)) => Ok(self.last_until(Bound::Excluded(&k))),
            None => Ok(false),
        }
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |(k, _)| k)
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_with(keys: &[&[u8]]) -> MemoryEngine {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::new();
        for k in keys {
            b.put(Cf::Kv, k.to_vec(), k.to_vec());
        }
        e.write(b, false).unwrap();
        e
    }

    fn keys(iter: crate::storage::ScanIter<'_>) -> Vec<Vec<u8>> {
        iter.map(|r| r.unwrap().0).collect()
    }

    #[test]
    fn scan_forward_and_reverse_respect_bounds() {
        let e = engine_with(&[b"a", b"b", b"c", b"d"]);
        assert_eq!(
            keys(e.scan(Cf::Kv, b"b", Some(b"d"), false)),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            keys(e.scan(Cf::Kv, b"b", Some(b"d"), true)),
            vec![b"c".to_vec(), b"b".to_vec()]
        );
        assert_eq!(keys(e.scan(Cf::Kv, b"", None, true)).len(), 4);
        assert!(keys(e.scan(Cf::Kv, b"d", Some(b"b"), false)).is_empty());
        assert!(keys(e.scan(Cf::Rev, b"", None, false)).is_empty());
    }

    #[test]
    fn snapshot_is_isolated_from_later_writes() {
        let e = engine_with(&[b"a"]);
        let snap = e.snapshot();
        let mut b = WriteBatch::new();
        b.put(Cf::Kv, b"b".to_vec(), b"b".to_vec());
        b.delete(Cf::Kv, b"a".to_vec());
        e.write(b, true).unwrap();
        assert_eq!(snap.get(Cf::Kv, b"a").unwrap(), Some(b"a".to_vec()));
        assert_eq!(snap.get(Cf::Kv, b"b").unwrap(), None);
        assert_eq!(e.get(Cf::Kv, b"a").unwrap(), None);
    }

    #[test]
    fn delete_range_is_half_open() {
        let e = engine_with(&[b"a", b"b", b"c"]);
        let mut b = WriteBatch::new();
        b.delete_range(Cf::Kv, b"a".to_vec(), b"c".to_vec());
        e.write(b, false).unwrap();
        assert_eq!(keys(e.scan(Cf::Kv, b"", None, false)), vec![b"c".to_vec()]);
    }

    #[test]
    fn cursor_seeks_clamp_to_bounds() {
        let e = engine_with(&[b"a", b"b", b"c", b"d"]);
        let mut c = e.cursor(Cf::Kv, Some(b"b"), Some(b"d")).unwrap();
        assert!(c.seek(b"a").unwrap());
        assert_eq!(c.key(), b"b");
        assert!(c.seek_for_prev(b"z").unwrap());
        assert_eq!(c.key(), b"c");
        assert!(!c.next().unwrap());
        assert!(!c.valid());
        assert!(c.seek_to_last().unwrap());
        assert!(c.prev().unwrap());
        assert_eq!(c.value(), b"b");
        assert!(!c.prev().unwrap());
    }
}
