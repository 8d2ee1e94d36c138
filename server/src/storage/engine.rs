//! The engine contract: column families, write batches, read views, cursors and the error type.
//!
//! A [`ReadView`] answers point reads, ordered scans and seekable [`Cursor`]s over one column
//! family; an [`Engine`] is a read view over its latest state that can also apply a
//! [`WriteBatch`] atomically (all of it or nothing, optionally fsynced) and hand out
//! snapshots — read views frozen at one instant, so that a reader racing a writer sees either
//! all of a batch or none of it. Keys and values are opaque bytes ordered bytewise.

use std::fmt;
use std::path::Path;

/// Errors from the storage engine. Anything here means the disk or the engine failed (or the
/// data directory is not ours); callers treat it as fatal for the operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("column family {0} is missing")]
    MissingCf(&'static str),
    #[error("storage engine is closed")]
    Closed,
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The column families. Each is an independent ordered key space; a [`WriteBatch`] may span
/// several and is still atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// MVCC versions: (user key, inverted revision) → key-value or tombstone.
    Kv,
    /// MVCC revision index: revision → user key and event kind.
    Rev,
    /// Replicated metadata: store revisions, applied log id, membership.
    Meta,
    /// Raft log entries as versions before the log's own files kept them; emptied into those
    /// files when the log store opens (`raft::log_store`).
    RaftLog,
    /// Raft vote and log bookkeeping (local to a member).
    RaftMeta,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::Kv, Cf::Rev, Cf::Meta, Cf::RaftLog, Cf::RaftMeta];

    /// The column family's name on disk.
    pub const fn name(self) -> &'static str {
        match self {
            Cf::Kv => "kv",
            Cf::Rev => "rev",
            Cf::Meta => "meta",
            Cf::RaftLog => "raft_log",
            Cf::RaftMeta => "raft_meta",
        }
    }

    /// Dense index, `0..Cf::ALL.len()`.
    pub const fn index(self) -> usize {
        match self {
            Cf::Kv => 0,
            Cf::Rev => 1,
            Cf::Meta => 2,
            Cf::RaftLog => 3,
            Cf::RaftMeta => 4,
        }
    }
}

impl fmt::Display for Cf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One mutation inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        cf: Cf,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Mutations applied atomically, in order, by [`Engine::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put {
            cf,
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete {
            cf,
            key: key.into(),
        });
    }

    /// Deletes every key in `[start, end)`.
    pub fn delete_range(&mut self, cf: Cf, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::DeleteRange {
            cf,
            start: start.into(),
            end: end.into(),
        });
    }

    /// Moves all of `other`'s operations to the end of this batch.
    pub fn append(&mut self, other: &mut WriteBatch) {
        if self.ops.is_empty() {
            // Nothing to keep in front: take `other`'s operations without copying them.
            std::mem::swap(&mut self.ops, &mut other.ops);
        } else {
            self.ops.append(&mut other.ops);
        }
    }

    /// Makes room for `additional` more operations.
    pub fn reserve(&mut self, additional: usize) {
        self.ops.reserve(additional);
    }

    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values carried (a size hint, e.g. for metrics or batching).
    pub fn data_size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { key, value, .. } => key.len() + value.len(),
                WriteOp::Delete { key, .. } => key.len(),
                WriteOp::DeleteRange { start, end, .. } => start.len() + end.len(),
            })
            .sum()
    }
}

/// A seekable position in one column family, limited to the bounds it was opened with
/// (`lower` inclusive, `upper` exclusive). Every move returns whether the cursor now points at
/// an entry; `key` and `value` are meaningful only after a move returned `Ok(true)` (they are
/// empty otherwise). An engine failure surfaces as `Err` from the move.
pub trait Cursor: Send {
    /// First entry with key `>= key` (and within the bounds).
    fn seek(&mut self, key: &[u8]) -> Result<bool>;
    /// Last entry with key `<= key` (and within the bounds).
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool>;
    fn seek_to_first(&mut self) -> Result<bool>;
    fn seek_to_last(&mut self) -> Result<bool>;
    fn next(&mut self) -> Result<bool>;
    fn prev(&mut self) -> Result<bool>;
    fn valid(&self) -> bool;
    fn key(&self) -> &[u8];
    fn value(&self) -> &[u8];
}

/// A (key, value) pair read from a column family.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Iterator returned by [`ReadView::scan`]; an error ends it.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'a>;

/// Read access to the engine's latest state or to a snapshot of it.
pub trait ReadView {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// A cursor over keys in `[lower, upper)` (unbounded where `None`). On the engine itself
    /// (not a snapshot) the cursor still sees one consistent state for its whole life.
    fn cursor(
        &self,
        cf: Cf,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn Cursor + '_>>;

    /// Entries with `start <= key < end` (no upper limit when `end` is `None`), ascending; or,
    /// with `reverse`, the same entries descending (from just below `end` down to `start`).
    fn scan(&self, cf: Cf, start: &[u8], end: Option<&[u8]>, reverse: bool) -> ScanIter<'_> {
        match self.cursor(cf, Some(start), end) {
            Ok(cursor) => Box::new(CursorIter {
                cursor,
                reverse,
                started: false,
                done: false,
            }),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }
}

struct CursorIter<'a> {
    cursor: Box<dyn Cursor + 'a>,
    reverse: bool,
    started: bool,
    done: bool,
}

impl Iterator for CursorIter<'_> {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let moved = match (self.started, self.reverse) {
            (false, false) => self.cursor.seek_to_first(),
            (false, true) => self.cursor.seek_to_last(),
            (true, false) => self.cursor.next(),
            (true, true) => self.cursor.prev(),
        };
        self.started = true;
        match moved {
            Ok(true) => Some(Ok((
                self.cursor.key().to_vec(),
                self.cursor.value().to_vec(),
            ))),
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A storage engine: a [`ReadView`] of its latest state that also writes and snapshots.
pub trait Engine: ReadView + Send + Sync + 'static {
    /// A consistent, read-only view of the engine at the instant it was taken.
    type Snapshot<'a>: ReadView + Send + Sync
    where
        Self: 'a;

    fn snapshot(&self) -> Self::Snapshot<'_>;

    /// Applies `batch` atomically. With `sync`, returns only once the batch is on disk;
    /// without, it is durable after the next synced write or [`Engine::sync_wal`].
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;

    /// Makes every write so far durable (one fsync of the write-ahead log).
    fn sync_wal(&self) -> Result<()>;

    /// Hands every write so far to the operating system without an fsync: it then survives
    /// a crash of this process, though not a power loss.
    fn write_out_wal(&self) -> Result<()>;

    /// Persists in-memory state (memtables) to the engine's files and waits for it.
    fn flush(&self) -> Result<()>;

    /// Rewrites the engine's files so that the space held by deleted and overwritten data is
    /// given back (what etcd's defragment does for its file); blocks until done. Reads and
    /// writes go on meanwhile.
    fn defragment(&self) -> Result<()>;

    /// Bytes the engine occupies on disk (etcd's Status.dbSize).
    fn size_on_disk(&self) -> u64;

    /// A read-only copy of the engine written by [`Engine::checkpoint`].
    type Checkpoint: ReadView + Send + Sync + 'static;

    /// Writes a consistent copy of the whole engine as it is now into `dir` (which must not
    /// exist), durably: it survives a crash once this returns. Cheap where the engine can
    /// share its immutable files (RocksDB hard-links them) rather than copy them.
    fn checkpoint(&self, dir: &Path) -> Result<()>;

    /// Opens a copy written by [`Engine::checkpoint`] for reading.
    fn open_checkpoint(dir: &Path) -> Result<Self::Checkpoint>;
}
