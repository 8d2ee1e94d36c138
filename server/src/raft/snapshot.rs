//! Raft snapshots kept as checkpoints of the storage engine.
//!
//! Building a snapshot takes an engine checkpoint (RocksDB flushes its memtables and
//! hard-links its files into a new directory) and records it as the member's current
//! snapshot; nothing is copied or serialized then, so a snapshot of a large store costs about
//! one memtable flush, not a pass over the data. Only when a member behind the purged log must
//! be sent the snapshot are its rows read back from the checkpoint and serialized; a snapshot
//! received from the leader arrives in that serialized form. A checkpoint that is no longer
//! current is deleted once nothing holds it (a transfer in progress keeps it alive).
//!
//! This module stores and reads snapshots; what they contain is the replicated column
//! families, and installing one is the state machine's work.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::io_err;
use super::types::{LogId, Snapshot, SnapshotMeta};
use crate::storage::{Cf, Engine, ReadView};

/// The column families a snapshot carries: everything `apply` writes.
pub const REPLICATED: [Cf; 3] = [Cf::Kv, Cf::Rev, Cf::Meta];

/// The file naming the current checkpoint, with its metadata.
const CURRENT: &str = "current";
/// Checkpoint directories are named `ckpt-<n>`; anything else but `current` is debris.
const CHECKPOINT_PREFIX: &str = "ckpt-";

/// Engine checkpoints tried for one snapshot before building it fails, and the pause
/// between two.
const CHECKPOINT_ATTEMPTS: u32 = 3;
const CHECKPOINT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// (index into [`REPLICATED`], key, value).
pub type Rows = Vec<(u8, Vec<u8>, Vec<u8>)>;

/// A snapshot in the form members send each other.
#[derive(Serialize, Deserialize)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta,
    #[serde(with = "row_bytes")]
    pub rows: Rows,
}

/// Rows with their keys and values serialized as byte strings: bincode copies each whole
/// rather than visiting it byte by byte, and writes the same bytes (a u64 length, then the
/// bytes) as for a plain `Vec<u8>`, so snapshots in the older form read unchanged.
mod row_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    use super::Rows;

    pub fn serialize<S: Serializer>(rows: &Rows, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            rows.iter()
                .map(|(cf, k, v)| (cf, Bytes::new(k), Bytes::new(v))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rows, D::Error> {
        let rows = Vec::<(u8, ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|(cf, k, v)| (cf, k.into_vec(), v.into_vec()))
            .collect())
    }
}

/// Something that can produce a snapshot's rows (reading them is blocking disk work).
pub trait RowSource: Send + Sync {
    fn rows(&self) -> std::io::Result<Rows>;
}

/// A snapshot's data as openraft carries it.
#[derive(Clone)]
pub enum SnapshotData {
    /// A checkpoint of this member's own store.
    Checkpoint(Arc<dyn RowSource>),
    /// A [`SnapshotFile`], serialized, as received from the leader.
    Received(Vec<u8>),
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotData::Checkpoint(_) => f.write_str("SnapshotData::Checkpoint"),
            SnapshotData::Received(b) => write!(f, "SnapshotData::Received({} bytes)", b.len()),
        }
    }
}

impl SnapshotData {
    /// The rows (blocking: a checkpoint is read from disk).
    pub fn rows(&self) -> std::io::Result<Rows> {
        match self {
            SnapshotData::Checkpoint(source) => source.rows(),
            SnapshotData::Received(bytes) => {
                let file: SnapshotFile = bincode::deserialize(bytes).map_err(io_err)?;
                Ok(file.rows)
            }
        }
    }

    /// The serialized form to send to a member (blocking).
    pub fn to_bytes(&self, meta: &SnapshotMeta) -> std::io::Result<Vec<u8>> {
        match self {
            SnapshotData::Received(bytes) => Ok(bytes.clone()),
            SnapshotData::Checkpoint(_) => bincode::serialize(&SnapshotFile {
                meta: meta.clone(),
                rows: self.rows()?,
            })
            .map_err(io_err),
        }
    }
}

/// One checkpoint directory; deleted on drop once it is no longer the current snapshot.
struct Checkpoint<E> {
    dir: PathBuf,
    obsolete: AtomicBool,
    engine: PhantomData<fn() -> E>,
}

impl<E> Checkpoint<E> {
    /// A checkpoint that is deleted when dropped unless it becomes current first.
    fn new(dir: PathBuf) -> Self {
        Checkpoint {
            dir,
            obsolete: AtomicBool::new(true),
            engine: PhantomData,
        }
    }

    /// The current snapshot's checkpoint, kept when dropped.
    fn kept(dir: PathBuf) -> Self {
        let checkpoint = Self::new(dir);
        checkpoint.obsolete.store(false, Ordering::Release);
        checkpoint
    }
}

impl<E> Drop for Checkpoint<E> {
    fn drop(&mut self) {
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        let dir = std::mem::take(&mut self.dir);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "removing an old snapshot");
            }
        };
        // Removing a checkpoint whose files the live store has compacted away frees them:
        // disk work, so never on a runtime worker.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

impl<E: Engine> RowSource for Checkpoint<E> {
    fn rows(&self) -> std::io::Result<Rows> {
        let view = E::open_checkpoint(&self.dir).map_err(io_err)?;
        let mut rows = Vec::new();
        for (i, cf) in REPLICATED.iter().enumerate() {
            for item in view.scan(*cf, &[], None, false) {
                let (k, v) = item.map_err(io_err)?;
                rows.push((i as u8, k, v));
            }
        }
        Ok(rows)
    }
}

/// What `current` records.
#[derive(Serialize, Deserialize)]
struct Current {
    meta: SnapshotMeta,
    checkpoint: String,
}

/// A member's snapshot directory: its checkpoints and which one is current.
pub struct SnapshotStore<E> {
    dir: PathBuf,
    current: Mutex<Option<(SnapshotMeta, Arc<Checkpoint<E>>)>>,
    /// One checkpoint is taken at a time.
    taking: Mutex<()>,
    seq: AtomicU64,
}

impl<E: Engine> SnapshotStore<E> {
    /// Opens (creating if missing) the snapshot directory `dir`, loads the current snapshot's
    /// record and removes every other checkpoint (left over from a crash).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let current = match std::fs::read(dir.join(CURRENT)) {
            Ok(bytes) => {
                let c: Current = bincode::deserialize(&bytes).map_err(io_err)?;
                let path = dir.join(&c.checkpoint);
                if path.is_dir() {
                    Some((c.meta, c.checkpoint))
                } else {
                    // The store is durably at or past any snapshot it recorded, so going on
                    // without one is safe: openraft takes a new one if the log was purged.
                    tracing::warn!(
                        checkpoint = %path.display(),
                        "the recorded snapshot is missing; starting without one"
                    );
                    None
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = name == CURRENT || current.as_ref().is_some_and(|(_, c)| *c == name);
            if !keep {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(SnapshotStore {
            current: Mutex::new(
                current.map(|(meta, name)| (meta, Arc::new(Checkpoint::kept(dir.join(name))))),
            ),
            dir: dir.to_path_buf(),
            taking: Mutex::new(()),
            seq: AtomicU64::new(start),
        })
    }

    /// The current snapshot, if one was taken.
    pub fn current(&self) -> std::io::Result<Option<Snapshot>> {
        let current = self.current.lock().map_err(|_| io_err("snapshot lock"))?;
        Ok(current.as_ref().map(|(meta, checkpoint)| Snapshot {
            meta: meta.clone(),
            snapshot: SnapshotData::Checkpoint(checkpoint.clone()),
        }))
    }

    /// Takes a checkpoint of `engine`, reads its metadata with `meta_of`, and makes it the
    /// current snapshot unless a newer one already is (blocking). When this returns, the
    /// checkpoint and everything written to `engine` before it are durable.
    pub fn take(
        &self,
        engine: &E,
        meta_of: impl FnOnce(&E::Checkpoint) -> std::io::Result<SnapshotMeta>,
    ) -> std::io::Result<Snapshot> {
        let _one = self.taking.lock().map_err(|_| io_err("snapshot lock"))?;
        let (name, path) = self.checkpoint(engine)?;
        let checkpoint = Arc::new(Checkpoint::<E>::new(path));
        // A checkpoint may hold writes the engine has not fsynced yet; make them durable, so
        // that after a power loss the store is never behind its snapshot.
        engine.sync_wal().map_err(io_err)?;
        let meta = meta_of(&E::open_checkpoint(&checkpoint.dir).map_err(io_err)?)?;
        self.record(meta.clone(), checkpoint.clone(), &name)?;
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::Checkpoint(checkpoint),
        })
    }

    /// A new checkpoint of `engine` under a fresh name. A failed one is removed and tried
    /// again, up to [`CHECKPOINT_ATTEMPTS`] in all: openraft stops the member when building
    /// a snapshot fails, and RocksDB's checkpoint can fail where its copy of a write-ahead
    /// log races the log's writing or reuse (seen once under Jepsen, just after a restart,
    /// as "File smaller than expected for copy").
    fn checkpoint(&self, engine: &E) -> std::io::Result<(String, PathBuf)> {
        let mut attempt = 1;
        loop {
            let name = format!(
                "{CHECKPOINT_PREFIX}{}",
                self.seq.fetch_add(1, Ordering::Relaxed)
            );
            let path = self.dir.join(&name);
            match engine.checkpoint(&path) {
                Ok(()) => return Ok((name, path)),
                Err(e) if attempt < CHECKPOINT_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "engine checkpoint failed; trying again");
                    if path.exists() {
                        if let Err(e) = std::fs::remove_dir_all(&path) {
                            tracing::warn!(dir = %path.display(), error = %e, "removing a failed checkpoint");
                        }
                    }
                    std::thread::sleep(CHECKPOINT_RETRY_PAUSE);
                    attempt += 1;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// Makes `checkpoint` current if it is newer than the current one; whichever loses is
    /// deleted once dropped everywhere. Called with `taking` held, so records never race;
    /// `current` is locked only to compare and to swap, never across disk work.
    fn record(
        &self,
        meta: SnapshotMeta,
        checkpoint: Arc<Checkpoint<E>>,
        name: &str,
    ) -> std::io::Result<()> {
        let newest = self
            .current
            .lock()
            .map_err(|_| io_err("snapshot lock"))?
            .as_ref()
            .is_none_or(|(known, _)| known.last_log_id <= meta.last_log_id);
        if !newest {
            return Ok(());
        }
        let record = bincode::serialize(&Current {
            meta: meta.clone(),
            checkpoint: name.to_string(),
        })
        .map_err(io_err)?;
        fail::fail_point!("raftBeforeSaveSnap");
        let tmp = self.dir.join(format!("{CURRENT}.tmp"));
        std::fs::write(&tmp, record)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(CURRENT))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        fail::fail_point!("raftAfterSaveSnap");
        checkpoint.obsolete.store(false, Ordering::Release);
        let old = self
            .current
            .lock()
            .map_err(|_| io_err("snapshot lock"))?
            .replace((meta, checkpoint));
        if let Some((_, old)) = old {
            old.obsolete.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The last log id of the current snapshot, if any.
    pub fn current_log_id(&self) -> std::io::Result<Option<LogId>> {
        let current = self.current.lock().map_err(|_| io_err("snapshot lock"))?;
        Ok(current.as_ref().and_then(|(meta, _)| meta.last_log_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::TypeConfig;
    use crate::storage::{MemoryEngine, WriteBatch};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, index)),
            ..Default::default()
        }
    }

    fn put(engine: &MemoryEngine, key: &[u8]) {
        let mut b = WriteBatch::new();
        b.put(Cf::Kv, key.to_vec(), b"v".to_vec());
        engine.write(b, false).expect("write");
    }

    fn checkpoints(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("read dir")
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(CHECKPOINT_PREFIX)
                })
            })
            .count()
    }

    #[test]
    fn a_snapshot_holds_the_state_when_taken_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = MemoryEngine::new();
        put(&engine, b"a");
        let store = SnapshotStore::<MemoryEngine>::open(dir.path()).expect("open");
        assert!(store.current().expect("current").is_none());
        let snap = store.take(&engine, |_| Ok(meta(7))).expect("take");
        put(&engine, b"b");
        let rows = snap.snapshot.rows().expect("rows");
        assert_eq!(rows, vec![(0, b"a".to_vec(), b"v".to_vec())]);
        drop((snap, store));

        let store = SnapshotStore::<MemoryEngine>::open(dir.path()).expect("reopen");
        let snap = store.current().expect("current").expect("a snapshot");
        assert_eq!(snap.meta, meta(7));
        let bytes = snap.snapshot.to_bytes(&snap.meta).expect("serialize");
        let received = SnapshotData::Received(bytes);
        assert_eq!(
            received.rows().expect("rows"),
            snap.snapshot.rows().expect("rows")
        );
    }

    #[test]
    fn a_failed_checkpoint_is_tried_again_and_only_so_often() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = MemoryEngine::new();
        put(&engine, b"a");
        let store = SnapshotStore::<MemoryEngine>::open(dir.path()).expect("open");
        // The memory engine's checkpoint fails where its directory exists already.
        let block = |n: u64| {
            let next = store.seq.load(Ordering::Relaxed);
            for i in 0..n {
                std::fs::create_dir(dir.path().join(format!("{CHECKPOINT_PREFIX}{}", next + i)))
                    .expect("block");
            }
        };
        block(u64::from(CHECKPOINT_ATTEMPTS) - 1);
        let snap = store
            .take(&engine, |_| Ok(meta(3)))
            .expect("take after failures");
        assert_eq!(
            snap.snapshot.rows().expect("rows"),
            vec![(0, b"a".to_vec(), b"v".to_vec())]
        );
        assert_eq!(
            checkpoints(dir.path()),
            1,
            "failed attempts leave nothing behind"
        );
        block(u64::from(CHECKPOINT_ATTEMPTS));
        assert!(store.take(&engine, |_| Ok(meta(4))).is_err());
        assert_eq!(
            store.current().expect("current").expect("kept").meta,
            meta(3)
        );
    }

    #[test]
    fn an_old_checkpoint_goes_when_nothing_holds_it_and_an_older_one_never_replaces_a_newer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = MemoryEngine::new();
        let store = SnapshotStore::<MemoryEngine>::open(dir.path()).expect("open");
        let first = store.take(&engine, |_| Ok(meta(5))).expect("take");
        let _second = store.take(&engine, |_| Ok(meta(9))).expect("take");
        assert_eq!(checkpoints(dir.path()), 2, "the first is still held");
        drop(first);
        assert_eq!(checkpoints(dir.path()), 1);
        let late = store.take(&engine, |_| Ok(meta(8))).expect("take");
        assert_eq!(late.meta, meta(8));
        drop(late);
        assert_eq!(checkpoints(dir.path()), 1);
        let current = store.current().expect("current").expect("a snapshot");
        assert_eq!(current.meta, meta(9));
    }

    #[test]
    fn rows_encode_as_plain_byte_vectors_did() {
        #[derive(Serialize, Deserialize)]
        struct PlainFile {
            meta: SnapshotMeta,
            rows: Rows,
        }
        let rows: Rows = vec![
            (0, b"k1".to_vec(), vec![7; 300]),
            (2, Vec::new(), b"v".to_vec()),
        ];
        let file = SnapshotFile {
            meta: meta(3),
            rows: rows.clone(),
        };
        let bytes = bincode::serialize(&file).expect("serialize");
        let plain = bincode::serialize(&PlainFile {
            meta: meta(3),
            rows: rows.clone(),
        })
        .expect("serialize");
        assert_eq!(bytes, plain);
        let back: SnapshotFile = bincode::deserialize(&plain).expect("deserialize");
        assert_eq!(back.rows, rows);
        assert_eq!(back.meta, meta(3));
    }

    #[test]
    fn debris_of_a_crashed_build_is_removed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("ckpt-1")).expect("mkdir");
        std::fs::write(dir.path().join("current.tmp"), b"x").expect("write");
        let store = SnapshotStore::<MemoryEngine>::open(dir.path()).expect("open");
        assert!(store.current().expect("current").is_none());
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);
    }
}
