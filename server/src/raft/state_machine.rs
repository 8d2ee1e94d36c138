//! openraft's state machine: committed entries go to `apply`; snapshots are taken from and
//! installed into the storage engine.
//!
//! A snapshot is a checkpoint of the engine (see `snapshot`): the replicated column families
//! (MVCC data, revision index, meta including the applied log id and membership) at one
//! instant, kept in the data directory so it survives restarts and can be sent to a member
//! that is behind the purged log. Installing one replaces those column families in one
//! atomic write. This module adds no semantics of its own to entries.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, RaftSnapshotBuilder};

use super::io_err;
use super::log_store::LogStore;
use super::snapshot::{SnapshotData, SnapshotStore, REPLICATED};
use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::apply::{Applier, ApplyBatch};
use crate::storage::{Engine, WriteBatch};

/// Most entries applied into one storage write (a batch of puts also costs memory until it is
/// written: every put's events and response wait in it).
const BATCH_ENTRIES: usize = 128;
/// Most client request bytes applied into one storage write.
const BATCH_BYTES: usize = 4 << 20;

/// An entry whose apply, or a storage write of applied entries, takes longer than this is
/// logged as a warning (etcd warns of "apply request took too long" past the same 100 ms).
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The state machine handed to openraft.
pub struct StateMachine<E: Engine> {
    engine: Arc<E>,
    applier: Arc<Applier<E>>,
    snapshots: Arc<SnapshotStore<E>>,
}

impl<E: Engine> Clone for StateMachine<E> {
    fn clone(&self) -> Self {
        StateMachine {
            engine: self.engine.clone(),
            applier: self.applier.clone(),
            snapshots: self.snapshots.clone(),
        }
    }
}

/// Logs `what` took too long if more than [`SLOW_APPLY`] passed since `started`.
fn warn_if_slow(started: Instant, what: impl FnOnce() -> String) {
    let took = started.elapsed();
    if took > SLOW_APPLY {
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            expected_ms = SLOW_APPLY.as_millis() as u64,
            "{} took too long",
            what()
        );
    }
}

impl<E: Engine> StateMachine<E> {
    /// Writes the applied entries in `batch` to storage (warning when that is slow).
    fn write(&self, batch: &mut ApplyBatch<E>) -> Result<(), io::Error> {
        let entries = batch.entries();
        let started = Instant::now();
        self.applier.write(batch).map_err(io_err)?;
        warn_if_slow(started, || format!("writing {entries} applied entries"));
        Ok(())
    }

    /// The state machine over `engine`, keeping its snapshots in `snapshot_dir` (blocking).
    ///
    /// If the store has applied entries that neither its recorded snapshot nor `log` holds,
    /// a snapshot of the store is taken first: a crash between installing a snapshot from the
    /// leader and recording it leaves exactly that (the store ahead of its log), and openraft,
    /// told of the old snapshot, could neither re-read those entries nor keep them out of a
    /// purge. A store whose applied entries are all still in the log (every ordinary restart)
    /// opens without one.
    pub fn open(
        engine: Arc<E>,
        applier: Arc<Applier<E>>,
        snapshot_dir: &Path,
        log: &LogStore<E>,
    ) -> io::Result<Self> {
        let sm = StateMachine {
            engine,
            applier,
            snapshots: Arc::new(SnapshotStore::open(snapshot_dir)?),
        };
        let (applied, _) = sm.applier.applied_state().map_err(io_err)?;
        let recorded = sm.snapshots.current_log_id()?;
        if let Some(applied) = applied {
            if Some(applied) > recorded && !log.holds(recorded, applied)? {
                sm.take_snapshot()?;
            }
        }
        Ok(sm)
    }

    /// Takes a snapshot of what is applied now (blocking).
    fn take_snapshot(&self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        let snapshot = self.snapshots.take(&self.engine, |view| {
            let (applied, membership) = Applier::<E>::applied_state_in(view).map_err(io_err)?;
            Ok(SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            })
        })?;
        tracing::info!(
            last_log_id = ?snapshot.meta.last_log_id,
            ms = started.elapsed().as_millis() as u64,
            "took snapshot"
        );
        Ok(snapshot)
    }

    /// Replaces the replicated state with a snapshot's, then records a snapshot of it
    /// (blocking).
    fn install_now(&self, meta: &SnapshotMeta, data: &SnapshotData) -> Result<(), io::Error> {
        let rows = data.rows()?;
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
        for (i, k, v) in rows {
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
        let taken = self.take_snapshot()?;
        if taken.meta.last_log_id != meta.last_log_id {
            return Err(io_err(format!(
                "installed snapshot at {:?}, but the store then read {:?}",
                meta.last_log_id, taken.meta.last_log_id
            )));
        }
        fail::fail_point!("raftAfterApplySnap");
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }
}

impl<E: Engine> RaftSnapshotBuilder<TypeConfig> for StateMachine<E> {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Off the runtime's workers: the checkpoint flushes memtables and fsyncs.
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.take_snapshot())
            .await
            .map_err(io_err)?
    }
}

impl<E: Engine> RaftStateMachine<TypeConfig> for StateMachine<E> {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        self.applier.applied_state().map_err(io_err)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Entries are applied into one storage write until the stream has no more or the
        // batch is full; their clients are answered as soon as it is written (an entry that
        // is written alone writes the batch before it too).
        let mut batch = ApplyBatch::default();
        let mut answers = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let started = Instant::now();
            let result = self
                .applier
                .apply_into(&entry, &mut batch)
                .map_err(io_err)?;
            warn_if_slow(started, || match &entry.payload {
                openraft::EntryPayload::Normal(cmd) => {
                    format!("apply {cmd} at index {}", entry.log_id.index)
                }
                _ => format!("apply of entry {}", entry.log_id.index),
            });
            if let Some(responder) = responder {
                answers.push((responder, result));
            }
            if batch.entries() >= BATCH_ENTRIES || batch.request_bytes() >= BATCH_BYTES {
                self.write(&mut batch)?;
            }
            if batch.entries() == 0 {
                for (responder, result) in answers.drain(..) {
                    responder.send(result);
                }
            }
        }
        self.write(&mut batch)?;
        for (responder, result) in answers {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let me = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || me.install_now(&meta, &snapshot))
            .await
            .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.snapshots.current()
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::apply::Compactor;
    use crate::mvcc::KvStore;
    use crate::raft::types::Entry;
    use crate::raft::wal::WalOptions;
    use crate::storage::RocksEngine;

    fn open(dir: &Path) -> (StateMachine<RocksEngine>, LogStore<RocksEngine>) {
        let engine = Arc::new(RocksEngine::open(&dir.join("db")).expect("engine"));
        let kv = Arc::new(KvStore::open(engine.clone()).expect("kv"));
        let compactor = Compactor::start(kv.clone()).expect("compactor");
        let applier = Arc::new(Applier::new(engine.clone(), kv, compactor));
        let log = LogStore::open(engine.clone(), &dir.join("raft-log"), WalOptions::default())
            .expect("log store");
        let sm = StateMachine::open(engine, applier, &dir.join("snap"), &log).expect("sm");
        (sm, log)
    }

    fn apply_blank(sm: &StateMachine<RocksEngine>, index: u64) -> LogId {
        let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
        sm.applier.apply(&Entry::new_blank(log_id)).expect("apply");
        log_id
    }

    /// Appends a blank entry to the log and applies it, as a member does.
    async fn append_and_apply(
        sm: &StateMachine<RocksEngine>,
        log: &mut LogStore<RocksEngine>,
        index: u64,
    ) -> LogId {
        let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
        let entry = Entry::new_blank(log_id);
        openraft::storage::RaftLogStorage::append(
            log,
            [entry.clone()],
            openraft::storage::IOFlushed::noop(),
        )
        .await
        .expect("append");
        sm.applier.apply(&entry).expect("apply");
        log_id
    }

    /// An ordinary restart: everything applied after the snapshot is still in the log, so
    /// opening takes no snapshot (it would flush the whole store for nothing).
    #[tokio::test]
    async fn a_store_whose_log_holds_what_it_applied_opens_without_a_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sm, mut log) = open(dir.path());
        let first = append_and_apply(&sm, &mut log, 1).await;
        sm.take_snapshot().expect("snapshot");
        append_and_apply(&sm, &mut log, 2).await;
        append_and_apply(&sm, &mut log, 3).await;
        sm.engine.sync_wal().expect("sync");
        drop((sm, log));

        let (sm, _log) = open(dir.path());
        assert_eq!(sm.snapshots.current_log_id().expect("current"), Some(first));
    }

    /// The log was purged past the recorded snapshot (the purge reached the disk, the record
    /// of the snapshot it followed did not): entries after the snapshot are gone, so opening
    /// must snapshot the store.
    #[tokio::test]
    async fn a_log_purged_past_the_recorded_snapshot_does_not_count_as_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sm, mut log) = open(dir.path());
        let first = append_and_apply(&sm, &mut log, 1).await;
        sm.take_snapshot().expect("snapshot");
        let second = append_and_apply(&sm, &mut log, 2).await;
        let third = append_and_apply(&sm, &mut log, 3).await;
        openraft::storage::RaftLogStorage::purge(&mut log, second)
            .await
            .expect("purge");
        assert!(!log.holds(Some(first), third).expect("holds"));
        sm.engine.sync_wal().expect("sync");
        drop((sm, log));

        let (sm, _log) = open(dir.path());
        assert_eq!(sm.snapshots.current_log_id().expect("current"), Some(third));
    }

    /// The entry at the applied index is in the log but from another term (a crash after
    /// installing a leader's snapshot over a log with conflicting entries): not held.
    #[tokio::test]
    async fn a_conflicting_log_entry_does_not_count_as_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sm, mut log) = open(dir.path());
        append_and_apply(&sm, &mut log, 1).await;
        let other_term = openraft::testing::log_id::<TypeConfig>(2, 1, 1);
        assert!(!log.holds(None, other_term).expect("holds"));
        assert!(log
            .holds(None, openraft::testing::log_id::<TypeConfig>(1, 1, 1))
            .expect("holds"));
        assert!(!log
            .holds(None, openraft::testing::log_id::<TypeConfig>(1, 1, 2))
            .expect("holds"));
    }

    /// Installing a snapshot from the leader makes the store durable first and records the
    /// snapshot after; a crash in between leaves the store ahead of its recorded snapshot
    /// (and the log, which openraft then purges up to the store). Reopening must record a
    /// snapshot of the store before openraft sees it.
    #[test]
    fn a_store_ahead_of_its_recorded_snapshot_is_snapshotted_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sm, log) = open(dir.path());
        let first = apply_blank(&sm, 1);
        assert_eq!(
            sm.take_snapshot().expect("snapshot").meta.last_log_id,
            Some(first)
        );
        let second = apply_blank(&sm, 2);
        sm.engine.sync_wal().expect("sync");
        drop((sm, log));

        let (sm, _log) = open(dir.path());
        assert_eq!(
            sm.snapshots.current_log_id().expect("current"),
            Some(second)
        );
    }
}
