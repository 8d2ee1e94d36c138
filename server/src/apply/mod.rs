//! The one deterministic place where replicated state changes.
//!
//! `Applier::apply` takes a committed Raft entry and writes its effect — MVCC data, the new
//! store revision, member attributes, the Raft membership — together with the entry's log id
//! in ONE storage batch, so a crash leaves either all of an entry applied or none of it, and a
//! restart resumes from the recorded log id. It never reads the clock, the network or
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
use crate::mvcc::KvStore;
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
        let log_id = entry.log_id();
        let mut batch = WriteBatch::default();
        batch.put(
            Cf::Meta,
            KEY_APPLIED.to_vec(),
            bincode::serialize(&log_id).map_err(internal)?,
        );
        let mut result = ApplyResult {
            revision: self.kv.current_revision(),
            ..Default::default()
        };
        let mut publish = None;
        let mut compacted_to = None;
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(ref m) => {
                let stored = StoredMembership::new(Some(log_id), m.clone());
                batch.put(
                    Cf::Meta,
                    KEY_MEMBERSHIP.to_vec(),
                    bincode::serialize(&stored).map_err(internal)?,
                );
            }
            EntryPayload::Normal(ref cmd) => match self.apply_command(cmd, &mut batch) {
                Ok(outcome) => {
                    result.revision = outcome.revision;
                    result.body = outcome.body;
                    publish = outcome.publish;
                    compacted_to = outcome.compacted_to;
                }
                Err(e @ Error::Internal(_)) => return Err(e),
                Err(e) => result.error = Some(e),
            },
        }
        fail::fail_point!("beforeCommit");
        if compacted_to.is_some() {
            fail::fail_point!("compactBeforeCommitScheduledCompact");
        }
        self.engine.write(batch, false).map_err(internal)?;
        fail::fail_point!("afterCommit");
        if compacted_to.is_some() {
            fail::fail_point!("compactAfterCommitScheduledCompact");
        }
        if let Some(token) = publish {
            self.kv.publish(token);
        }
        if let Some(rev) = compacted_to {
            self.compactor.schedule(rev);
        }
        Ok(result)
    }

    fn apply_command(&self, cmd: &Command, batch: &mut WriteBatch) -> Result<Outcome<E>> {
        let begin = self.kv.current_revision();
        let decode_err =
            |e: prost::DecodeError| Error::Internal(format!("undecodable command: {e}"));
        match cmd {
            Command::Put(bytes) => {
                let req = PutRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                let mut w = self.kv.write_txn();
                let resp = txn::put(&mut w, &req, begin)?;
                Ok(Outcome::written(w, batch, resp.encode_to_vec()))
            }
            Command::DeleteRange(bytes) => {
                let req = DeleteRangeRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                let mut w = self.kv.write_txn();
                let resp = txn::delete_range(&mut w, &req, begin)?;
                Ok(Outcome::written(w, batch, resp.encode_to_vec()))
            }
            Command::Txn(bytes) => {
                let req = TxnRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                let mut w = self.kv.write_txn();
                let resp = txn::txn(&mut w, &req, begin)?;
                Ok(Outcome::written(w, batch, resp.encode_to_vec()))
            }
            Command::Compact(bytes) => {
                let req = CompactionRequest::decode(bytes.as_slice()).map_err(decode_err)?;
                self.kv.compact(req.revision, batch)?;
                Ok(Outcome {
                    revision: begin,
                    body: CompactionResponse::default().encode_to_vec(),
                    publish: None,
                    compacted_to: Some(req.revision),
                })
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
                batch.put(
                    Cf::Meta,
                    member_key(*member_id),
                    bincode::serialize(&attrs).map_err(internal)?,
                );
                Ok(Outcome {
                    revision: begin,
                    body: Vec::new(),
                    publish: None,
                    compacted_to: None,
                })
            }
        }
    }
}

struct Outcome<E: Engine> {
    revision: i64,
    body: Vec<u8>,
    publish: Option<crate::mvcc::PublishToken<E>>,
    compacted_to: Option<i64>,
}

impl<E: Engine> Outcome<E> {
    fn written(w: crate::mvcc::WriteTxn<'_, E>, batch: &mut WriteBatch, body: Vec<u8>) -> Self {
        let (revision, token) = w.into_batch(batch);
        Outcome {
            revision,
            body,
            publish: Some(token),
            compacted_to: None,
        }
    }
}
