//! openraft's state machine: committed entries go to `apply`; snapshots are built from and
//! installed into the storage engine.
//!
//! A snapshot is a consistent copy of the replicated column families (MVCC data, revision
//! index, meta including the applied log id and membership) taken from an engine snapshot,
//! kept as one file in the data directory so it survives restarts and can be sent to a member
//! that is behind the purged log. This module adds no semantics of its own to entries.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::apply::Applier;
use crate::storage::{Cf, Engine, ReadView, WriteBatch};

/// The column families a snapshot carries: everything `apply` writes.
const REPLICATED: [Cf; 3] = [Cf::Kv, Cf::Rev, Cf::Meta];

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    /// (column family index in REPLICATED, key, value)
    rows: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The state machine handed to openraft.
pub struct StateMachine<E: Engine> {
    engine: Arc<E>,
    applier: Arc<Applier<E>>,
    snapshot_path: PathBuf,
}

impl<E: Engine> Clone for StateMachine<E> {
    fn clone(&self) -> Self {
        StateMachine {
            engine: self.engine.clone(),
            applier: self.applier.clone(),
            snapshot_path: self.snapshot_path.clone(),
        }
    }
}

impl<E: Engine> StateMachine<E> {
    pub fn new(engine: Arc<E>, applier: Arc<Applier<E>>, snapshot_path: PathBuf) -> Self {
        StateMachine {
            engine,
            applier,
            snapshot_path,
        }
    }

    fn read_snapshot_file(&self) -> io::Result<Option<SnapshotFile>> {
        match std::fs::read(&self.snapshot_path) {
            Ok(bytes) => bincode::deserialize(&bytes).map(Some).map_err(io_err),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the current snapshot file atomically (write, fsync, rename, fsync of the
    /// directory so the rename itself survives a crash).
    fn save_snapshot_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.snapshot_path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.snapshot_path)?;
        match self.snapshot_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
            _ => Ok(()),
        }
    }
}

impl<E: Engine> RaftSnapshotBuilder<TypeConfig> for StateMachine<E> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Reading the whole store and writing the file takes seconds on a large store: on a
        // blocking thread, not on one of the runtime's workers (with 2 of them, every client
        // request queued behind that worker waited it out — multi-second tail latencies).
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.build_snapshot_now())
            .await
            .map_err(io_err)?
    }
}

impl<E: Engine> StateMachine<E> {
    /// Builds, saves and returns a snapshot of what is applied now (blocking).
    fn build_snapshot_now(&self) -> Result<Snapshot, io::Error> {
        // Whatever the snapshot covers must be durable before the log behind it is purged.
        self.engine.sync_wal().map_err(io_err)?;
        let view = self.engine.snapshot();
        let (applied, membership) = Applier::<E>::applied_state_in(&view).map_err(io_err)?;
        let mut rows = Vec::new();
        for (i, cf) in REPLICATED.iter().enumerate() {
            for item in view.scan(*cf, &[], None, false) {
                let (k, v) = item.map_err(io_err)?;
                rows.push((i as u8, k, v));
            }
        }
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            rows,
        };
        let bytes = bincode::serialize(&file).map_err(io_err)?;
        fail::fail_point!("raftBeforeSaveSnap");
        self.save_snapshot_bytes(&bytes)?;
        fail::fail_point!("raftAfterSaveSnap");
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}

impl<E: Engine> RaftStateMachine<TypeConfig> for StateMachine<E> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        self.applier.applied_state().map_err(io_err)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let result = self.applier.apply(&entry).map_err(io_err)?;
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let file: SnapshotFile = bincode::deserialize(&snapshot).map_err(io_err)?;
        let mut batch = WriteBatch::default();
        for cf in REPLICATED {
            // Everything goes: a range delete for the bulk, point deletes for any key that
            // sorts after the range's end.
            let end = vec![0xFF; 64];
            for item in self.engine.scan(cf, &end, None, false) {
                let (k, _) = item.map_err(io_err)?;
                batch.delete(cf, k);
            }
            batch.delete_range(cf, Vec::new(), end);
        }
        for (i, k, v) in file.rows {
            let cf = REPLICATED
                .get(i as usize)
                .copied()
                .ok_or_else(|| io_err("snapshot names an unknown column family"))?;
            batch.put(cf, k, v);
        }
        // Readers and the compactor must not pair the new data with the old revisions.
        fail::fail_point!("raftBeforeApplySnap");
        self.applier.kv().exclusive(|| -> Result<(), io::Error> {
            self.engine.write(batch, true).map_err(io_err)?;
            self.applier.reload().map_err(io_err)
        })?;
        self.save_snapshot_bytes(&snapshot)?;
        fail::fail_point!("raftAfterApplySnap");
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(file) = self.read_snapshot_file()? else {
            return Ok(None);
        };
        let bytes = std::fs::read(&self.snapshot_path)?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: bytes,
        }))
    }
}
