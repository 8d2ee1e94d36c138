//! The RocksDB [`Engine`]: one database, one column family per [`Cf`], created if missing.
//!
//! Writes go through RocksDB's write-ahead log; a synced write (or `sync_wal`) fsyncs it, and
//! unsynced ones wait in RocksDB's buffer until then (see [`MANUAL_WAL_FLUSH`]).
//! Snapshots are RocksDB snapshots and cursors are raw iterators with the bounds pushed down
//! into `ReadOptions`, so RocksDB can skip whole files outside them. MVCC versions (`Cf::Kv`)
//! are LZ4-compressed; the other column families hold small keys and values and stay
//! uncompressed. Obsolete WAL files are reused rather than deleted (see
//! [`RECYCLED_WAL_FILES`]). Tuning beyond these (block cache, rate limits) is not done here yet.

use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBRawIteratorWithThreadMode,
    FlushOptions, Options, ReadOptions, SnapshotWithThreadMode, WriteOptions, DB,
};

use super::engine::{Cf, Cursor, Engine, ReadView, Result, StorageError, WriteBatch, WriteOp};

/// Info-log files RocksDB keeps (`LOG`, `LOG.old.*`).
const KEEP_LOG_FILES: usize = 3;
/// Once the write-ahead log grows past this, RocksDB flushes the column families that keep
/// its oldest file alive (rarely written ones such as `RaftMeta` would otherwise pin it).
const MAX_TOTAL_WAL_SIZE: u64 = 512 << 20;

/// Obsolete write-ahead log files kept for reuse instead of deleted. Deleting them is what
/// stalled writes: a Raft snapshot flushes every memtable, which frees hundreds of MB of
/// WAL at once, and unlinking those files (1.2 s in one measured take) held up the live
/// WAL's fsyncs on ext4. Reused files are overwritten in place. Measured with
/// `etcdctl check perf --load=l` on 3 members: a snapshot took 1.7–2.4 s and the slowest
/// request 1.6–1.8 s without reuse; 0.7–0.9 s and 0.76–0.81 s with 8 files (0.9–1.0 s and
/// 0.77–0.96 s with 4).
const RECYCLED_WAL_FILES: usize = 8;

/// Writes that are not synced stay in RocksDB's own WAL buffer instead of costing a `write`
/// system call each (`manual_wal_flush`); the next synced write, `sync_wal` or checkpoint
/// writes the buffer out before its fsync, in order, and `write_out_wal` hands it to the
/// operating system without one (the log store does, with each new commit index). So a crash
/// of the process loses at most the applies since the last commit index was written out —
/// which a restart re-applies from the synced Raft log — never a synced write, and what
/// survives is always a prefix of the writes.
const MANUAL_WAL_FLUSH: bool = true;

/// Bytes a RocksDB write batch spends on one operation besides its key and value (a type
/// byte, the column family and two lengths as varints); the batch header rounds it up.
const BATCH_RECORD_OVERHEAD: usize = 16;

/// Table files a checkpoint opened for reading keeps open (the live store keeps them all).
const CHECKPOINT_OPEN_FILES: i32 = 16;

/// RocksDB-backed storage.
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
    /// `--unsafe-no-fsync`: synced writes and WAL syncs are not synced.
    no_fsync: bool,
}

fn cf_options(cf: Cf) -> Options {
    let mut opts = Options::default();
    opts.set_level_compaction_dynamic_level_bytes(true);
    match cf {
        Cf::Kv => {
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_bottommost_compression_type(DBCompressionType::Lz4);
        }
        Cf::Rev | Cf::Meta | Cf::RaftLog | Cf::RaftMeta => {
            opts.set_compression_type(DBCompressionType::None);
            opts.set_bottommost_compression_type(DBCompressionType::None);
        }
    }
    opts
}

impl RocksEngine {
    /// Opens (creating if missing) the database at `path` with all column families.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(KEEP_LOG_FILES);
        opts.set_max_log_file_size(16 << 20);
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_SIZE);
        opts.set_recycle_log_file_num(RECYCLED_WAL_FILES);
        opts.set_manual_wal_flush(MANUAL_WAL_FLUSH);
        opts.set_bytes_per_sync(1 << 20);
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        opts.increase_parallelism(i32::try_from(cpus).unwrap_or(2).max(2));
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(*cf)));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(RocksEngine {
            db,
            path: path.to_path_buf(),
            no_fsync: false,
        })
    }

    /// Never fsyncs the WAL (etcd's `--unsafe-no-fsync`): a power loss then loses writes
    /// that were acknowledged. For benchmarks and for showing that tests catch it.
    pub fn without_fsync(mut self) -> Self {
        self.no_fsync = true;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying database, for what the trait does not cover (properties).
    pub fn db(&self) -> &DB {
        &self.db
    }
}

fn handle(db: &DB, cf: Cf) -> Result<&ColumnFamily> {
    db.cf_handle(cf.name())
        .ok_or(StorageError::MissingCf(cf.name()))
}

fn read_options(lower: Option<&[u8]>, upper: Option<&[u8]>) -> ReadOptions {
    let mut ro = ReadOptions::default();
    if let Some(l) = lower {
        ro.set_iterate_lower_bound(l.to_vec());
    }
    if let Some(u) = upper {
        ro.set_iterate_upper_bound(u.to_vec());
    }
    ro
}

impl ReadView for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(handle(&self.db, cf)?, key)?)
    }

    fn cursor(
        &self,
        cf: Cf,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn Cursor + '_>> {
        let iter = self
            .db
            .raw_iterator_cf_opt(handle(&self.db, cf)?, read_options(lower, upper));
        Ok(Box::new(RocksCursor::new(iter, lower, upper)))
    }
}

/// A RocksDB snapshot of a [`RocksEngine`].
pub struct RocksSnapshot<'a> {
    db: &'a DB,
    snap: SnapshotWithThreadMode<'a, DB>,
}

impl ReadView for RocksSnapshot<'_> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .snap
            .get_cf_opt(handle(self.db, cf)?, key, ReadOptions::default())?)
    }

    fn cursor(
        &self,
        cf: Cf,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn Cursor + '_>> {
        let iter = self
            .snap
            .raw_iterator_cf_opt(handle(self.db, cf)?, read_options(lower, upper));
        Ok(Box::new(RocksCursor::new(iter, lower, upper)))
    }
}

impl Engine for RocksEngine {
    type Snapshot<'a> = RocksSnapshot<'a>;

    fn snapshot(&self) -> RocksSnapshot<'_> {
        RocksSnapshot {
            db: &self.db,
            snap: self.db.snapshot(),
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        // Sized up front: a large batch (a range delete of many keys) would otherwise be
        // copied over and over as RocksDB's buffer doubles.
        let mut wb = rocksdb::WriteBatch::with_capacity_bytes(
            batch.data_size() + BATCH_RECORD_OVERHEAD * (batch.len() + 1),
        );
        for op in batch.into_ops() {
            match op {
                WriteOp::Put { cf, key, value } => wb.put_cf(handle(&self.db, cf)?, key, value),
                WriteOp::Delete { cf, key } => wb.delete_cf(handle(&self.db, cf)?, key),
                WriteOp::DeleteRange { cf, start, end } => {
                    wb.delete_range_cf(handle(&self.db, cf)?, start, end)
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync && !self.no_fsync);
        self.db.write_opt(wb, &wo)?;
        if sync && self.no_fsync {
            // Without fsync a "synced" write still reaches the page cache, as etcd's
            // --unsafe-no-fsync does: only a power loss may lose it, not a crash.
            self.write_out_wal()?;
        }
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        Ok(self.db.flush_wal(!self.no_fsync)?)
    }

    fn write_out_wal(&self) -> Result<()> {
        Ok(self.db.flush_wal(false)?)
    }

    fn flush(&self) -> Result<()> {
        let handles = Cf::ALL
            .iter()
            .map(|cf| handle(&self.db, *cf))
            .collect::<Result<Vec<_>>>()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&handles, &fo)?;
        Ok(())
    }

    /// A full manual compaction of every column family, the bottommost level included: each
    /// is flushed first, and deleted or overwritten entries (and their tombstones) are dropped
    /// from the rewritten tables.
    fn defragment(&self) -> Result<()> {
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for cf in Cf::ALL {
            self.db.compact_range_cf_opt(
                handle(&self.db, cf)?,
                None::<&[u8]>,
                None::<&[u8]>,
                &opts,
            );
        }
        Ok(())
    }

    /// Sum of the files in the data directory (SSTs, write-ahead log, manifests, info logs).
    fn size_on_disk(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    type Checkpoint = RocksEngine;

    /// A RocksDB checkpoint: memtables are flushed, the SST files hard-linked into `dir` and
    /// the live part of the write-ahead log copied, so the copy is one consistent instant and
    /// costs little beyond the flush. RocksDB fsyncs it and its directory.
    fn checkpoint(&self, dir: &Path) -> Result<()> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Opens a checkpoint read-only (its write-ahead log is replayed in memory only).
    fn open_checkpoint(dir: &Path) -> Result<RocksEngine> {
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(*cf)));
        // It is read once, in key order: few open files, no statistics pass over them.
        let mut opts = Options::default();
        opts.set_max_open_files(CHECKPOINT_OPEN_FILES);
        opts.set_skip_stats_update_on_db_open(true);
        let db = DB::open_cf_descriptors_read_only(&opts, dir, cfs, false)?;
        Ok(RocksEngine {
            db,
            path: dir.to_path_buf(),
            no_fsync: false,
        })
    }
}

/// A raw RocksDB iterator behind the [`Cursor`] contract. Seeks are clamped to the bounds so
/// RocksDB never sees a target outside them.
struct RocksCursor<'a> {
    iter: DBRawIteratorWithThreadMode<'a, DB>,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
}

impl<'a> RocksCursor<'a> {
    fn new(
        iter: DBRawIteratorWithThreadMode<'a, DB>,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> Self {
        RocksCursor {
            iter,
            lower: lower.map(<[u8]>::to_vec),
            upper: upper.map(<[u8]>::to_vec),
        }
    }

    fn settle(&self) -> Result<bool> {
        if self.iter.valid() {
            Ok(true)
        } else {
            self.iter.status()?;
            Ok(false)
        }
    }

    fn below_lower(&self, key: &[u8]) -> bool {
        self.lower.as_deref().is_some_and(|l| key < l)
    }

    fn at_or_above_upper(&self, key: &[u8]) -> bool {
        self.upper.as_deref().is_some_and(|u| key >= u)
    }
}

impl Cursor for RocksCursor<'_> {
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        if self.at_or_above_upper(key) {
            // Nothing at or after `key` lies within the bounds; leave the cursor invalid.
            let Some(u) = self.upper.clone() else {
                return Ok(false);
            };
            self.iter.seek(&u);
            self.iter.status()?;
            return Ok(false);
        }
        if self.below_lower(key) {
            return self.seek_to_first();
        }
        self.iter.seek(key);
        self.settle()
    }

    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
        if self.at_or_above_upper(key) {
            return self.seek_to_last();
        }
        if self.below_lower(key) {
            let Some(l) = self.lower.clone() else {
                return Ok(false);
            };
            // Strictly below the lower bound: position before the first entry.
            self.iter.seek(&l);
            if self.iter.valid() {
                self.iter.prev();
            }
            self.iter.status()?;
            return Ok(false);
        }
        self.iter.seek_for_prev(key);
        self.settle()
    }

    fn seek_to_first(&mut self) -> Result<bool> {
        match self.lower.clone() {
            Some(l) => self.iter.seek(&l),
            None => self.iter.seek_to_first(),
        }
        self.settle()
    }

    fn seek_to_last(&mut self) -> Result<bool> {
        match self.upper.clone() {
            Some(u) => {
                self.iter.seek_for_prev(&u);
                if self.iter.valid() && self.iter.key().is_some_and(|k| k >= u.as_slice()) {
                    self.iter.prev();
                }
            }
            None => self.iter.seek_to_last(),
        }
        self.settle()
    }

    fn next(&mut self) -> Result<bool> {
        if !self.iter.valid() {
            return Ok(false);
        }
        self.iter.next();
        self.settle()
    }

    fn prev(&mut self) -> Result<bool> {
        if !self.iter.valid() {
            return Ok(false);
        }
        self.iter.prev();
        self.settle()
    }

    fn valid(&self) -> bool {
        self.iter.valid()
    }

    fn key(&self) -> &[u8] {
        self.iter.key().unwrap_or(&[])
    }

    fn value(&self) -> &[u8] {
        self.iter.value().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(iter: crate::storage::ScanIter<'_>) -> Vec<Vec<u8>> {
        iter.map(|r| r.unwrap().0).collect()
    }

    #[test]
    fn reopen_keeps_data_and_column_families_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = RocksEngine::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(Cf::Kv, b"k".to_vec(), b"kv".to_vec());
            b.put(Cf::Meta, b"k".to_vec(), b"meta".to_vec());
            e.write(b, true).unwrap();
            e.flush().unwrap();
            assert!(e.size_on_disk() > 0);
        }
        let e = RocksEngine::open(dir.path()).unwrap();
        assert_eq!(e.get(Cf::Kv, b"k").unwrap(), Some(b"kv".to_vec()));
        assert_eq!(e.get(Cf::Meta, b"k").unwrap(), Some(b"meta".to_vec()));
        assert_eq!(e.get(Cf::Rev, b"k").unwrap(), None);
    }

    /// Deleted data stays in the tables (with its tombstones) until defragmenting rewrites
    /// them without it.
    #[test]
    fn defragment_gives_back_the_space_of_deleted_data() {
        let dir = tempfile::tempdir().unwrap();
        let e = RocksEngine::open(dir.path()).unwrap();
        let tables = |e: &RocksEngine| {
            let cf = handle(&e.db, Cf::Meta).unwrap();
            e.db.property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                .unwrap()
                .unwrap()
        };
        let keys: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut b = WriteBatch::new();
        for k in &keys {
            b.put(Cf::Meta, k.clone(), vec![b'x'; 2048]);
        }
        e.write(b, false).unwrap();
        e.flush().unwrap();
        let full = tables(&e);
        assert!(full > 2000 * 2048 / 2, "{full} bytes of tables");
        let mut b = WriteBatch::new();
        for k in &keys {
            b.delete(Cf::Meta, k.clone());
        }
        e.write(b, false).unwrap();
        e.flush().unwrap();
        assert!(tables(&e) >= full, "deleted data still held");

        e.defragment().unwrap();
        assert!(
            tables(&e) < full / 20,
            "{} of {full} bytes left",
            tables(&e)
        );
        assert_eq!(e.get(Cf::Meta, &keys[0]).unwrap(), None);
    }

    #[test]
    fn scans_cursors_snapshots_and_range_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let e = RocksEngine::open(dir.path()).unwrap();
        let mut b = WriteBatch::new();
        for k in [b"a", b"b", b"c", b"d"] {
            b.put(Cf::RaftLog, k.to_vec(), k.to_vec());
        }
        e.write(b, false).unwrap();
        assert_eq!(
            keys(e.scan(Cf::RaftLog, b"b", Some(b"d"), false)),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            keys(e.scan(Cf::RaftLog, b"b", Some(b"d"), true)),
            vec![b"c".to_vec(), b"b".to_vec()]
        );
        assert_eq!(keys(e.scan(Cf::RaftLog, b"", None, true))[0], b"d".to_vec());

        let mut c = e.cursor(Cf::RaftLog, Some(b"b"), Some(b"d")).unwrap();
        assert!(c.seek(b"a").unwrap());
        assert_eq!(c.key(), b"b");
        assert!(c.seek_for_prev(b"z").unwrap());
        assert_eq!(c.key(), b"c");
        assert!(!c.next().unwrap());
        assert!(!c.seek(b"d").unwrap());
        drop(c);

        let snap = e.snapshot();
        let mut b = WriteBatch::new();
        b.delete_range(Cf::RaftLog, b"a".to_vec(), b"c".to_vec());
        b.delete(Cf::RaftLog, b"d".to_vec());
        e.write(b, true).unwrap();
        assert_eq!(
            keys(e.scan(Cf::RaftLog, b"", None, false)),
            vec![b"c".to_vec()]
        );
        assert_eq!(keys(snap.scan(Cf::RaftLog, b"", None, false)).len(), 4);
        assert_eq!(snap.get(Cf::RaftLog, b"a").unwrap(), Some(b"a".to_vec()));
    }
}
