//! Compaction: forgetting history below a revision, logically at once and physically later.
//!
//! [`KvStore::compact`] records the compaction revision `C` in the caller's batch and makes
//! reads below `C` fail immediately (etcd's "required revision has been compacted").
//! [`KvStore::physical_compaction_step`] then removes, in small steps off the write path,
//! what no read at or above `C` can see: it walks the revision index from the previous
//! compaction revision up to `C` and, for each key touched there, deletes every version older
//! than the key's newest version at or below `C` — and that version too if it is a tombstone
//! — plus the index entries below `C`. Versions and index entries at exactly `C` stay until
//! the next compaction, so a watch may still resume from `C` as etcd allows. Writes never wait
//! for it: they only add versions above `C`, which it never touches.

use std::collections::HashSet;

use super::error::{MvccError, Result};
use super::key_codec::{
    decode_rev_key, decode_rev_value, encode_user_key, escaped_key_end, is_tombstone, kv_seek_key,
    split_kv_key,
};
use super::kvstore::{read_i64, KvStore, META_COMPACT_FINISHED, META_COMPACT_SCHEDULED};
use super::revision::Revision;
use crate::storage::{Cf, Engine, ReadView, WriteBatch};

/// Where physical compaction stands.
#[derive(Debug, Default)]
pub(super) struct CompactionProgress {
    /// Physically compacted up to this revision (as recorded in `Cf::Meta`).
    finished: i64,
    run: Option<Run>,
}

/// A physical compaction in progress.
#[derive(Debug, Clone, Copy)]
struct Run {
    target: i64,
    /// The next revision-index entry to visit.
    next: Revision,
}

impl CompactionProgress {
    pub(super) fn starting_at(finished: i64) -> Self {
        CompactionProgress {
            finished,
            run: None,
        }
    }
}

/// Deletes what compaction to `target` makes unreachable among `key`'s versions; returns the
/// number of deletions.
fn compact_key<V: ReadView + ?Sized>(
    view: &V,
    key: &[u8],
    target: i64,
    batch: &mut WriteBatch,
) -> Result<usize> {
    let enc = encode_user_key(key);
    let end = escaped_key_end(&enc);
    let mut cursor = view.cursor(Cf::Kv, Some(&kv_seek_key(&enc, target)), Some(&end))?;
    let mut ok = cursor.seek_to_first()?;
    if !ok {
        return Ok(0);
    }
    let mut deleted = 0;
    let (_, newest) = split_kv_key(cursor.key())?;
    if newest.main == target {
        // Everything written at the compaction revision itself stays (watch may resume there).
        while ok && split_kv_key(cursor.key())?.1.main == target {
            ok = cursor.next()?;
        }
    } else {
        if is_tombstone(cursor.value()) {
            batch.delete(Cf::Kv, cursor.key().to_vec());
            deleted += 1;
        }
        ok = cursor.next()?;
    }
    while ok {
        batch.delete(Cf::Kv, cursor.key().to_vec());
        deleted += 1;
        ok = cursor.next()?;
    }
    Ok(deleted)
}

impl<E: Engine> KvStore<E> {
    /// Compacts the history below `rev`: records it in `batch` (which the caller writes) and
    /// fails reads below it from now on. `Compacted` if `rev` is not above the current
    /// compaction revision, `FutureRevision` if it is above the current revision. The old
    /// versions are removed later by [`KvStore::physical_compaction_step`].
    pub fn compact(&self, rev: i64, batch: &mut WriteBatch) -> Result<()> {
        if rev <= self.compact_revision() {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_revision() {
            return Err(MvccError::FutureRevision);
        }
        batch.put(Cf::Meta, META_COMPACT_SCHEDULED, rev.to_be_bytes());
        self.shared
            .compact
            .store(rev, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Physically compacts a little: visits up to about `max_keys` revision-index entries and
    /// deletions, in one storage write. Returns `true` once every recorded compaction is done
    /// (call again until then). Safe to run concurrently with reads and writes; only one step
    /// runs at a time.
    pub fn physical_compaction_step(&self, max_keys: usize) -> Result<bool> {
        // Never compute a step from data a snapshot install is about to replace.
        let _shared = self.install_shared();
        let mut progress = self.compaction.lock().unwrap_or_else(|p| p.into_inner());
        let engine = self.engine.as_ref();
        let run = match progress.run {
            Some(run) => run,
            None => {
                // The recorded (written) target, never one whose batch may not have landed.
                let scheduled = read_i64(engine, META_COMPACT_SCHEDULED, 0)?;
                if scheduled <= progress.finished {
                    return Ok(true);
                }
                // Start at the previous target: what was kept at exactly it may go now.
                Run {
                    target: scheduled,
                    next: Revision::new(progress.finished, 0),
                }
            }
        };
        let lower = run.next.to_bytes();
        let upper = Revision::new(run.target + 1, 0).to_bytes();
        let mut batch = WriteBatch::new();
        let mut seen = HashSet::new();
        let mut work = 0usize;
        let mut next = run.next;
        let mut cursor = engine.cursor(Cf::Rev, Some(&lower), Some(&upper))?;
        let mut more = cursor.seek_to_first()?;
        while more && work < max_keys.max(1) {
            let rev = decode_rev_key(cursor.key())?;
            let (_, key) = decode_rev_value(cursor.value())?;
            if rev.main < run.target {
                batch.delete(Cf::Rev, cursor.key().to_vec());
            }
            if seen.insert(key.to_vec()) {
                work += compact_key(engine, key, run.target, &mut batch)?;
            }
            work += 1;
            next = Revision::new(rev.main, rev.sub + 1);
            more = cursor.next()?;
        }
        drop(cursor);
        if more {
            fail::fail_point!("compactBeforeCommitBatch");
            engine.write(batch, false)?;
            fail::fail_point!("compactAfterCommitBatch");
            progress.run = Some(Run { next, ..run });
            return Ok(false);
        }
        batch.put(Cf::Meta, META_COMPACT_FINISHED, run.target.to_be_bytes());
        fail::fail_point!("compactBeforeSetFinishedCompact");
        engine.write(batch, false)?;
        fail::fail_point!("compactAfterSetFinishedCompact");
        progress.finished = run.target;
        progress.run = None;
        tracing::debug!(revision = run.target, "physical compaction finished");
        let scheduled = read_i64(engine, META_COMPACT_SCHEDULED, 0)?;
        Ok(scheduled <= run.target)
    }
}
