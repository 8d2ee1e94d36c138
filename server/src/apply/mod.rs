//! The one deterministic place where replicated state changes.
//!
//! `Applier::apply` takes a committed Raft entry and writes its effect — MVCC data, the new
//! store revision, member attributes, the Raft membership — together with the entry's log id
//! in ONE storage batch, so a crash leaves either all of an entry applied or none of it, and a
//! restart resumes from the recorded log id. `Applier::apply_into` lets consecutive puts
//! share that batch (one storage write for many entries, with the last one's log id: all of
//! them or none), and `Applier::write` writes it. It never reads the clock, the network or
//! anything local to one member. It does not decide what to replicate (that is `api`), nor
//! when (that is `raft`).

pub mod compactor;
pub mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::EntryPayload;
use prost::Message;
use serde::{Deserialize, Serialize};
use setpoint_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, PutRequest, TxnRequest,
};

use crate::error::{Error, Result};
use crate::mvcc::{Changed, KvStore, PublishToken, Unwritten};
use crate::raft::types::{Entry, LogId, StoredMembership};
use crate::raft::{ApplyResult, Command, NodeId};
use crate::storage::{Cf, Engine, ReadView, WriteBatch};

pub use compactor::Compactor;

const KEY_APPLIED: &[u8] = b"raft/applied";
const KEY_MEMBERSHIP: &[u8] = b"raft/membership";
const MEMBER_PREFIX: &[u8] = b"member/";

/// What a member published about itself (etcd's member attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttributes {
    pub name: String,
    pub client_urls: Vec<String>,
}

fn member_key(id: NodeId) -> Vec<u8> {
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Applies committed entries to the store.
pub struct Applier<E: Engine> {
    engine: Arc<E>,
    kv: Arc<KvStore<E>>,
    compactor: Compactor,
}

impl<E: Engine> Applier<E> {
    pub fn new(engine: Arc<E>, kv: Arc<KvStore<E>>, compactor: Compactor) -> Self {
        Applier {
            engine,
            kv,
            compactor,
        }
    }

    pub fn kv(&self) -> &Arc<KvStore<E>> {
        &self.kv
    }

    /// The last applied log id and the membership it implies, as recorded on disk.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership)> {
        Self::applied_state_in(self.engine.as_ref())
    }

    /// The same, read from a given view (a snapshot being built).
    pub fn applied_state_in<V: ReadView + ?Sized>(
        view: &V,
    ) -> Result<(Option<LogId>, StoredMembership)> {
        let applied: Option<LogId> = match view.get(Cf::Meta, KEY_APPLIED).map_err(internal)? {
            Some(b) => Some(bincode::deserialize(&b).map_err(internal)?),
            None => None,
        };
        let membership: StoredMembership =
            match view.get(Cf::Meta, KEY_MEMBERSHIP).map_err(internal)? {
                Some(b) => bincode::deserialize(&b).map_err(internal)?,
                None => StoredMembership::default(),
            };
        Ok((applied, membership))
    }

    /// Re-reads in-memory state after the engine's contents were replaced by a snapshot.
    pub fn reload(&self) -> Result<()> {
        self.kv.reload().map_err(Error::from)
    }

    /// Published attributes of every member that has published.
    pub fn member_attributes(&self) -> Result<BTreeMap<NodeId, MemberAttributes>> {
        let mut end = MEMBER_PREFIX.to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut out = BTreeMap::new();
        for item in self.engine.scan(Cf::Meta, MEMBER_PREFIX, Some(&end), false) {
            let (k, v) = item.map_err(internal)?;
            let id_bytes: [u8; 8] = k[MEMBER_PREFIX.len()..]
                .try_into()
                .map_err(|_| Error::Internal("bad member key".into()))?;
            out.insert(
                u64::from_be_bytes(id_bytes),
                bincode::deserialize(&v).map_err(internal)?,
            );
        }
        Ok(out)
    }

    /// Applies one entry and makes its effect and its log id one storage write.
    /// An `Err` means storage failed (the member must stop); request-level failures are
    /// inside the `ApplyResult`.
    pub fn apply(&self, entry: &Entry) -> Result<ApplyResult> {
        let mut batch = ApplyBatch::default();
        let result = self.apply_into(entry, &mut batch)?;
        self.write(&mut batch)?;
        Ok(result)
    }

    /// Applies `entry` into `batch`: its effect becomes durable and visible, together with
    /// everything else in the batch and the last entry's log id, at [`Applier::write`] —
    /// answer the entry's client only after that. Blank entries and puts join the batch
    /// (a put reads the batch's earlier puts through [`Unwritten`]); any other entry is
    /// written alone, after the batch so far is written. An `Err` means storage failed.
    pub fn apply_into(&self, entry: &Entry, batch: &mut ApplyBatch<E>) -> Result<ApplyResult> {
        let joins = match entry.payload {
            EntryPayload::Blank | EntryPayload::Normal(Command::Put(_)) => true,
            EntryPayload::Membership(_) | EntryPayload::Normal(_) => false,
        };
        if !joins {
            self.write(batch)?;
        }
        let log_id = entry.log_id();
        batch.last = Some(log_id);
        batch.entries += 1;
        let mut result = ApplyResult {
            revision: self.kv.current_revision(),
            ..Default::default()
        };
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(ref m) => {
                let stored = StoredMembership::new(Some(log_id), m.clone());
                batch.write.put(
                    Cf::Meta,
                    KEY_MEMBERSHIP.to_vec(),
                    bincode::serialize(&stored).map_err(internal)?,
                );
            }
            EntryPayload::Normal(ref cmd) => {
                batch.bytes += cmd.request_len();
                match self.apply_command(cmd, batch) {
                    Ok((revision, body)) => {
                        result.revision = revision;
                        result.body = body;
                    }
                    Err(e @ Error::Internal(_)) => return Err(e),
                    Err(e) => {
                        // Nothing of the request went in, but the batch may already hold
                        // earlier puts: the store's revision is theirs.
                        result.revision = batch.unwritten.revision().unwrap_or(result.revision);
                        result.error = Some(e);
                    }
                }
            }
        }
        if !joins {
            self.write(batch)?;
        }
        Ok(result)
    }

    /// Writes `batch` (nothing if it is empty) with the last entry's log id in one storage
    /// write, then makes its revisions visible and schedules any compaction it holds.
    pub fn write(&self, batch: &mut ApplyBatch<E>) -> Result<()> {
        let ApplyBatch {
            mut write,
            mut unwritten,
            published,
            compacted_to,
            last: Some(last),
            ..
        } = std::mem::take(batch)
        else {
            return Ok(());
        };
        write.put(
            Cf::Meta,
            KEY_APPLIED.to_vec(),
            bincode::serialize(&last).map_err(internal)?,
        );
        unwritten.seal(&mut write);
        fail::fail_point!("beforeCommit");
        if compacted_to.is_some() {
            fail::fail_point!("compactBeforeCommitScheduledCompact");
        }
        self.engine.write(write, false).map_err(internal)?;
        fail::fail_point!("afterCommit");
        if compacted_to.is_some() {
            fail::fail_point!("compactAfterCommitScheduledCompact");
        }
        for token in published {
            self.kv.publish(token);
        }
        if let Some(rev) = compacted_to {
            self.compactor.schedule(rev);
        }
        Ok(())
    }

    /// Applies a command into `batch`: the store's revision after it and the encoded response.
    fn apply_command(&self, cmd: &Command, batch: &mut ApplyBatch<E>) -> Result<(i64, Vec<u8>)> {
        let decode_err =
            |e: prost::DecodeError| Error::Internal(format!("undecodable command: {e}"));
        match cmd {
            Command::Put(bytes) => {
                let req = PutRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                let mut w = self.kv.write_txn_over(&batch.unwritten);
                let begin = w.begin_revision();
                let resp = txn::put(&mut w, &req, begin)?;
                let done = w.into_unwritten_batch(&mut batch.write);
                Ok(batch.record(done, resp.encode_to_vec()))
            }
            Command::DeleteRange(bytes) => {
                let req = DeleteRangeRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                let mut w = self.kv.write_txn();
                let begin = w.begin_revision();
                let resp = txn::delete_range(&mut w, &req, begin)?;
                let done = w.into_unwritten_batch(&mut batch.write);
                Ok(batch.record(done, resp.encode_to_vec()))
            }
            Command::Txn(bytes) => {
                let req = TxnRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                let mut w = self.kv.write_txn();
                let begin = w.begin_revision();
                let resp = txn::txn(&mut w, &req, begin)?;
                let done = w.into_unwritten_batch(&mut batch.write);
                Ok(batch.record(done, resp.encode_to_vec()))
            }
            Command::Compact(bytes) => {
                let req = CompactionRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                self.kv.compact(req.revision, &mut batch.write)?;
                batch.compacted_to = Some(req.revision);
                Ok((
                    self.kv.current_revision(),
                    CompactionResponse::default().encode_to_vec(),
                ))
            }
            Command::Publish {
                member_id,
                name,
                client_urls,
            } => {
                let attrs = MemberAttributes {
                    name: name.clone(),
                    client_urls: client_urls.clone(),
                };
                batch.write.put(
                    Cf::Meta,
                    member_key(*member_id),
                    bincode::serialize(&attrs).map_err(internal)?,
                );
                Ok((self.kv.current_revision(), Vec::new()))
            }
        }
    }
}

/// Entries applied but not yet written (see [`Applier::apply_into`]).
pub struct ApplyBatch<E: Engine> {
    write: WriteBatch,
    /// What the batch's puts changed, for the next put to read.
    unwritten: Unwritten,
    /// Tokens to publish, in order, once written.
    published: Vec<PublishToken<E>>,
    compacted_to: Option<i64>,
    last: Option<LogId>,
    entries: usize,
    bytes: usize,
}

impl<E: Engine> Default for ApplyBatch<E> {
    fn default() -> Self {
        ApplyBatch {
            write: WriteBatch::default(),
            unwritten: Unwritten::default(),
            published: Vec::new(),
            compacted_to: None,
            last: None,
            entries: 0,
            bytes: 0,
        }
    }
}

impl<E: Engine> ApplyBatch<E> {
    /// Entries applied into the batch since it was last written.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes of client requests applied into the batch since it was last written.
    pub fn request_bytes(&self) -> usize {
        self.bytes
    }

    /// Records a transaction turned into this batch's write.
    fn record(
        &mut self,
        (revision, token, changed): (i64, PublishToken<E>, Changed),
        body: Vec<u8>,
    ) -> (i64, Vec<u8>) {
        self.unwritten.add(changed);
        self.published.push(token);
        (revision, body)
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use setpoint_proto::etcdserverpb::{PutResponse, RangeRequest};
    use setpoint_proto::mvccpb::KeyValue;

    use super::*;
    use crate::storage::MemoryEngine;

    fn applier() -> Applier<MemoryEngine> {
        let engine = Arc::new(MemoryEngine::new());
        let kv = Arc::new(KvStore::open(engine.clone()).expect("kv"));
        let compactor = Compactor::start(kv.clone()).expect("compactor");
        Applier::new(engine, kv, compactor)
    }

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry::new_normal(
            openraft::testing::log_id::<crate::raft::types::TypeConfig>(1, 1, index),
            cmd,
        )
    }

    fn put(index: u64, key: &str, value: &str, ignore_value: bool) -> Entry {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            prev_kv: true,
            ignore_value,
            ..Default::default()
        };
        entry(index, Command::Put(req.encode_to_vec()))
    }

    fn latest(a: &Applier<MemoryEngine>, key: &str) -> Option<KeyValue> {
        let req = RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        a.kv().range(&req).expect("range").kvs.pop()
    }

    #[test]
    fn puts_in_one_batch_see_each_other_and_become_visible_together() {
        let a = applier();
        let mut batch = ApplyBatch::default();
        let first = a
            .apply_into(&put(1, "k", "v1", false), &mut batch)
            .expect("apply");
        let second = a
            .apply_into(&put(2, "k", "", true), &mut batch)
            .expect("apply");
        let third = a
            .apply_into(&put(3, "other", "o", false), &mut batch)
            .expect("apply");
        assert_eq!((first.revision, second.revision, third.revision), (2, 3, 4));
        assert_eq!(batch.entries(), 3);
        // Nothing is visible or recorded as applied before the batch is written.
        assert_eq!(a.kv().current_revision(), 1);
        assert_eq!(latest(&a, "k"), None);
        assert_eq!(a.applied_state().expect("state").0, None);

        // The second put kept the first one's value and saw it as its previous version.
        let resp = PutResponse::decode(second.body.as_slice()).expect("decode");
        let prev = resp.prev_kv.expect("prev_kv");
        assert_eq!((prev.value.as_slice(), prev.version), (&b"v1"[..], 1));

        a.write(&mut batch).expect("write");
        assert_eq!(batch.entries(), 0);
        assert_eq!(a.kv().current_revision(), 4);
        let k = latest(&a, "k").expect("k");
        assert_eq!((k.value.as_slice(), k.version), (&b"v1"[..], 2));
        assert_eq!((k.create_revision, k.mod_revision), (2, 3));
        assert_eq!(
            a.applied_state().expect("state").0.map(|l| l.index),
            Some(3)
        );
        // The batch recorded the store's revision once, as the last put left it.
        assert_eq!(reopened_revision(&a), 4);
    }

    /// The current revision a store reopened over the same engine starts with.
    fn reopened_revision(a: &Applier<MemoryEngine>) -> i64 {
        KvStore::open(a.kv().engine().clone())
            .expect("reopen")
            .current_revision()
    }

    #[test]
    fn an_entry_other_than_a_put_writes_the_batch_before_it() {
        let a = applier();
        let mut batch = ApplyBatch::default();
        a.apply_into(&put(1, "a", "1", false), &mut batch)
            .expect("apply");
        a.apply_into(&put(2, "b", "2", false), &mut batch)
            .expect("apply");
        let del = DeleteRangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            ..Default::default()
        };
        let deleted = a
            .apply_into(
                &entry(3, Command::DeleteRange(del.encode_to_vec())),
                &mut batch,
            )
            .expect("apply");
        // The delete ran on the written puts, was written alone, and left nothing pending.
        assert_eq!(deleted.revision, 4);
        assert_eq!(batch.entries(), 0);
        assert_eq!(a.kv().current_revision(), 4);
        assert_eq!(reopened_revision(&a), 4);
        assert_eq!(latest(&a, "a"), None);
        assert_eq!(
            a.applied_state().expect("state").0.map(|l| l.index),
            Some(3)
        );
    }

    #[test]
    fn a_failed_put_in_a_batch_changes_nothing_and_reports_the_batch_revision() {
        let a = applier();
        let mut batch = ApplyBatch::default();
        a.apply_into(&put(1, "a", "1", false), &mut batch)
            .expect("apply");
        let missing = a
            .apply_into(&put(2, "nope", "", true), &mut batch)
            .expect("apply");
        assert_eq!(
            missing.error,
            Some(Error::from(crate::mvcc::MvccError::KeyNotFound))
        );
        assert_eq!(missing.revision, 2);
        let next = a
            .apply_into(&put(3, "b", "2", false), &mut batch)
            .expect("apply");
        assert_eq!(next.revision, 3);
        a.write(&mut batch).expect("write");
        assert_eq!(a.kv().current_revision(), 3);
        assert_eq!(reopened_revision(&a), 3);
        assert_eq!(latest(&a, "nope"), None);
    }
}
