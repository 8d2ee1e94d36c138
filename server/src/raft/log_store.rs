//! The Raft log store handed to openraft: entries in the log's own files ([`super::wal`]),
//! the vote, commit index and purged log id in the storage engine (`Cf::RaftMeta`).
//!
//! `append` writes a batch of entries to the log files and tells openraft the entries are
//! flushed only once they are fsynced, so nothing is acknowledged before it is on disk. Two
//! ways, chosen per append:
//! - Inline (a single-member cluster): a write and an fsync on the caller's thread. openraft
//!   appends from one task, and every proposal that arrives while an fsync runs is handed over
//!   as one batch in the next append — that is the group commit (many client writes, one
//!   fsync), with no hand-off to another thread on the way (a syncer thread cost a wake-up
//!   each way, ~0.06–0.1 ms of a 0.6 ms single-client put here).
//! - Deferred (members to replicate to, see [`LogStore::defer_syncs`]): an unsynced write, so
//!   the entries are readable at once and openraft sends them to followers while this
//!   member's fsync runs on the syncer thread, which then reports every append it covered. A
//!   leader's own fsync then overlaps its followers' instead of preceding them.
//!
//! Vote writes, truncations and purges first wait for every deferred append to be reported,
//! so openraft hears of its IOs in the order it issued them. The vote is written
//! synchronously; a purge records the purged log id durably before it deletes log files.
//! Entries that an earlier version kept in the engine (`Cf::RaftLog`) are moved to the log
//! files when the store is opened. This module knows nothing of what the entries mean.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Weak};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::io_err;
use super::types::{Entry, LogId, TypeConfig, Vote};
use super::wal::{Wal, WalOptions};
use crate::storage::{Cf, Engine, WriteBatch};

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// The log store handed to openraft; cheap to clone (it is also its own reader).
pub struct LogStore<E: Engine> {
    engine: Arc<E>,
    wal: Arc<Wal>,
    /// Log fsyncs done for `append` (see [`LogStore::wal_syncs`]).
    syncs: Arc<AtomicU64>,
    /// Whether appends leave their fsync to the syncer thread.
    defer: Arc<AtomicBool>,
    syncer: Syncer,
}

impl<E: Engine> Clone for LogStore<E> {
    fn clone(&self) -> Self {
        LogStore {
            engine: self.engine.clone(),
            wal: self.wal.clone(),
            syncs: self.syncs.clone(),
            defer: self.defer.clone(),
            syncer: self.syncer.clone(),
        }
    }
}

/// What the syncer thread is handed, in the order openraft issued the IOs.
enum Job {
    /// An append written unsynced: report it once the log is fsynced.
    Flushed(IOFlushed<TypeConfig>),
    /// Answered once every job before it is done.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The handle to the syncer thread, which fsyncs the log files for deferred appends: once
/// for everything queued when it wakes (its own group commit), then reports each in order.
/// It holds the log weakly and ends with the last handle.
#[derive(Clone)]
struct Syncer {
    jobs: mpsc::Sender<Job>,
    /// Appends handed over and not yet reported.
    pending: Arc<AtomicUsize>,
}

impl Syncer {
    fn start(wal: Weak<Wal>, syncs: Arc<AtomicU64>) -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let appends = batch.iter().any(|j| matches!(j, Job::Flushed(_)));
                    let synced = if appends {
                        syncs.fetch_add(1, Ordering::Relaxed);
                        // A panic here must still reach every queued report (as an error):
                        // an unreported append would never count as flushed.
                        let sync = || match wal.upgrade() {
                            Some(wal) => wal.sync().map_err(|e| e.to_string()),
                            None => Err("the log store is closed".to_string()),
                        };
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(sync))
                            .unwrap_or_else(|_| Err("the log fsync panicked".to_string()))
                    } else {
                        Ok(())
                    };
                    if appends && synced.is_ok() {
                        after_save();
                    }
                    for job in batch {
                        match job {
                            Job::Flushed(callback) => {
                                callback.io_completed(synced.clone().map_err(io::Error::other));
                                left.fetch_sub(1, Ordering::AcqRel);
                            }
                            Job::Barrier(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                }
            })?;
        Ok(Syncer { jobs, pending })
    }

    /// Hands over an append's report; reports a failure at once if the thread is gone.
    fn defer(&self, callback: IOFlushed<TypeConfig>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job::Flushed(callback)) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if let Job::Flushed(callback) = job {
                callback.io_completed(Err(io::Error::other("the log syncer stopped")));
            }
        }
    }

    /// Whether appends handed over may still be unreported.
    fn busy(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// Returns once every append handed over before is reported.
    async fn drain(&self) -> io::Result<()> {
        if !self.busy() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Barrier(tx))
            .map_err(|_| io::Error::other("the log syncer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("the log syncer stopped"))
    }
}

/// The crash point between an append's fsync and openraft hearing of it (either way).
fn after_save() {
    fail::fail_point!("raftAfterSave");
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl<E: Engine> LogStore<E> {
    /// Opens the log: its entries in `dir`, the rest in `engine`.
    pub fn open(engine: Arc<E>, dir: &Path, opts: WalOptions) -> io::Result<Self> {
        let purged: Option<LogId> = get_meta(&*engine, KEY_PURGED)?;
        let wal = Arc::new(Wal::open(dir, opts, purged.map(|p| p.index))?);
        move_engine_entries(&*engine, &wal)?;
        let syncs = Arc::new(AtomicU64::new(0));
        let syncer = Syncer::start(Arc::downgrade(&wal), syncs.clone())?;
        Ok(LogStore {
            engine,
            wal,
            syncs,
            defer: Arc::new(AtomicBool::new(false)),
            syncer,
        })
    }

    /// Whether appends leave their fsync to the syncer thread (see the module documentation):
    /// worth it only when there are members to replicate to while it runs.
    pub fn defer_syncs(&self, on: bool) {
        self.defer.store(on, Ordering::Relaxed);
    }

    /// Log fsyncs `append` has done so far (failed ones included). Entries appended divided
    /// by this is the group-commit factor (entries per fsync), which `benches/log_store.rs`
    /// reports. Synced vote writes and truncations are not counted.
    pub fn wal_syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        get_meta(&*self.engine, key)
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T, sync: bool) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(
            Cf::RaftMeta,
            key.to_vec(),
            bincode::serialize(value).map_err(io_err)?,
        );
        self.engine.write(batch, sync).map_err(io_err)
    }

    /// Whether every entry after `after` up to `last` is in the log, `last` itself with that
    /// log id (blocking). By the log matching property the entries before `last` then agree
    /// with the ones `last` was applied after.
    pub fn holds(&self, after: Option<LogId>, last: LogId) -> io::Result<bool> {
        let purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        if purged.map(|p| p.index) > after.map(|a| a.index) {
            return Ok(false);
        }
        let end = last.index.saturating_add(1);
        Ok(self
            .wal
            .read(last.index, end)?
            .first()
            .is_some_and(|entry| entry.log_id() == last))
    }
}

fn get_meta<E: Engine, T: serde::de::DeserializeOwned>(
    engine: &E,
    key: &[u8],
) -> io::Result<Option<T>> {
    match engine.get(Cf::RaftMeta, key).map_err(io_err)? {
        None => Ok(None),
        Some(bytes) => bincode::deserialize(&bytes).map(Some).map_err(io_err),
    }
}

/// Moves entries an earlier version kept in the engine to the log files: the ones after the
/// files' last entry are appended and synced, then all are deleted from the engine. A crash
/// part way leaves both copies, and the next open finishes the move.
fn move_engine_entries<E: Engine>(engine: &E, wal: &Wal) -> io::Result<()> {
    let after = wal.last_log_id()?.map(|l| l.index);
    let mut entries = Vec::new();
    let mut any = false;
    for item in engine.scan(Cf::RaftLog, &[], None, false) {
        let (_, bytes) = item.map_err(io_err)?;
        any = true;
        let entry: Entry = bincode::deserialize(&bytes).map_err(io_err)?;
        if Some(entry.index()) > after {
            entries.push(entry);
        }
    }
    if !any {
        return Ok(());
    }
    tracing::info!(
        entries = entries.len(),
        "moving the raft log out of the storage engine"
    );
    wal.append(entries)?;
    wal.sync()?;
    let mut batch = WriteBatch::default();
    batch.delete_range(
        Cf::RaftLog,
        index_key(0).to_vec(),
        index_key(u64::MAX).to_vec(),
    );
    batch.delete(Cf::RaftLog, index_key(u64::MAX).to_vec());
    engine.write(batch, true).map_err(io_err)
}

impl<E: Engine> RaftLogReader<TypeConfig> for LogStore<E> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        self.wal.read(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(KEY_VOTE)
    }
}

impl<E: Engine> RaftLogStorage<TypeConfig> for LogStore<E> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last_log_id = self.wal.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.syncer.drain().await?;
        fail::fail_point!("raftBeforeSaveVote");
        self.put_meta(KEY_VOTE, vote, true)?;
        fail::fail_point!("raftAfterSaveVote");
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: losing it only makes a restart re-learn the commit index from the leader
        // (a restarted leader must win an election first: leader restore is off, server.rs).
        // But written out, with every apply before it, so that a member restarted after a
        // crash re-applies as far as it had (its serializable reads never go back); only a
        // power loss can take that.
        self.put_meta(KEY_COMMITTED, &committed, false)?;
        self.engine.write_out_wal().map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let committed = self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        // The commit index can outlive the entries it covers: a leader commits once its
        // followers have synced, before its own log fsync, and anything that syncs the engine
        // meanwhile (a snapshot, a memtable flush) makes the index durable first. After a power
        // loss, only what the log still holds counts as committed here (committed entries are
        // never truncated, so the entries it holds up to the index are the committed ones).
        let held = match self.wal.last_log_id()? {
            Some(last) => Some(last),
            None => self.get_meta::<LogId>(KEY_PURGED)?,
        };
        Ok(match (committed, held) {
            (Some(c), Some(h)) if h.index < c.index => Some(h),
            (Some(_), None) => None,
            (c, _) => c,
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        fail::fail_point!("raftBeforeSave");
        // Readable now; durable once an fsync covers it.
        self.wal.append(entries)?;
        // Inline only with nothing deferred still unreported: reports keep their order.
        if self.defer.load(Ordering::Relaxed) || self.syncer.busy() {
            self.syncer.defer(callback);
            return Ok(());
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let synced = self.wal.sync();
        if synced.is_ok() {
            after_save();
        }
        callback.io_completed(synced);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.syncer.drain().await?;
        fail::fail_point!("raftBeforeTruncate");
        self.wal.truncate_after(last_log_id)?;
        fail::fail_point!("raftAfterTruncate");
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.syncer.drain().await?;
        fail::fail_point!("raftBeforePurge");
        // Durably first: a restart must not find the log starting after its recorded purge.
        self.put_meta(KEY_PURGED, &log_id, true)?;
        self.wal.purge_through(log_id.index())?;
        fail::fail_point!("raftAfterPurge");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::storage::RaftLogStorage;

    use super::*;
    use crate::raft::types::TypeConfig;
    use crate::storage::RocksEngine;

    fn blank(index: u64) -> Entry {
        Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, index))
    }

    /// After a power loss the commit index may have survived the log entries it covered.
    #[tokio::test]
    async fn the_commit_index_read_back_never_passes_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(RocksEngine::open(&dir.path().join("db")).expect("engine"));
        let wal_dir = dir.path().join("raft-log");
        let mut log =
            LogStore::open(engine.clone(), &wal_dir, WalOptions::default()).expect("open");
        log.wal
            .append([blank(1), blank(2), blank(3)])
            .expect("append");
        let five = openraft::testing::log_id::<TypeConfig>(1, 1, 5);
        log.save_committed(Some(five)).await.expect("save");
        let committed = log.read_committed().await.expect("read");
        assert_eq!(committed.map(|c| c.index), Some(3));
        let two = openraft::testing::log_id::<TypeConfig>(1, 1, 2);
        log.save_committed(Some(two)).await.expect("save");
        assert_eq!(log.read_committed().await.expect("read"), Some(two));
    }

    /// Entries an earlier version kept in the engine, the first of them already copied by a
    /// move a crash cut short.
    #[tokio::test]
    async fn entries_kept_in_the_engine_move_to_the_log_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(RocksEngine::open(&dir.path().join("db")).expect("engine"));
        let mut batch = WriteBatch::default();
        for index in 1..=5 {
            let bytes = bincode::serialize(&blank(index)).expect("encode");
            batch.put(Cf::RaftLog, index_key(index).to_vec(), bytes);
        }
        engine.write(batch, true).expect("write");
        let wal_dir = dir.path().join("raft-log");
        let wal = Wal::open(&wal_dir, WalOptions::default(), None).expect("wal");
        wal.append([blank(1), blank(2)]).expect("append");
        wal.sync().expect("sync");
        drop(wal);

        let mut log =
            LogStore::open(engine.clone(), &wal_dir, WalOptions::default()).expect("open");
        let got: Vec<u64> = log
            .try_get_log_entries(0..)
            .await
            .expect("read")
            .iter()
            .map(|e| e.index())
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            crate::storage::ReadView::scan(&*engine, Cf::RaftLog, &[], None, false).count(),
            0
        );
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
    }
}
