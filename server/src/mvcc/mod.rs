//! etcd's revisioned key space (MVCC) on top of the storage engine, without keeping every key
//! in memory (only a bounded cache of recently written ones).
//!
//! Every change gets a revision (see [`Revision`]); a key's versions stay readable at their
//! revisions until compaction, and a deleted key leaves a tombstone. Semantics follow etcd
//! v3.4/3.5 — revisions start at 1, one write transaction bumps the revision once (and not
//! at all if it changes nothing), `create_revision`/`version` as etcd counts them — but the
//! layout scales past RAM: versions live in the engine keyed by (user key, inverted revision),
//! so "newest version at or below R" is one seek, and a revision-ordered index serves watch
//! catch-up and compaction (see `key_codec`). This module does not know about Raft, leases,
//! auth or gRPC: callers decide what to write and turn [`MvccError`] into etcd's statuses.

mod compaction;
mod error;
pub mod key_codec;
mod kvstore;
mod latest;
mod range;
mod revision;
mod txn;
pub mod watchable;
pub mod watcher_group;

#[cfg(test)]
mod tests;

pub use error::MvccError;
pub use kvstore::{EventBatch, KvStore, INITIAL_REVISION};
pub use range::RangeOutput;
pub use revision::Revision;
pub use txn::{Changed, PublishToken, Unwritten, WriteTxn};
pub use watchable::{HubStream, Published, WatchHub};
pub use watcher_group::{KeyRange, WatcherGroup};
