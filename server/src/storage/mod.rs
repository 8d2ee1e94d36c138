//! The storage engine behind a small trait: ordered key-value column families, atomic write
//! batches, consistent snapshots and seekable cursors.
//!
//! Everything durable in Setpoint (MVCC data, its revision index and metadata, the Raft log
//! and vote) goes through [`Engine`], modelled on TiKV's `engine_traits`: callers name a
//! column family ([`Cf`]) and work with plain byte strings. [`RocksEngine`] is the production
//! implementation; [`MemoryEngine`] is a `BTreeMap` one for fast unit tests. This module knows
//! nothing about what the bytes mean (encodings live in `mvcc` and `raft`), does not retry,
//! and never decides when to fsync: every `write` says whether it must be synced.

mod engine;
pub mod memory;
pub mod rocks;

pub use engine::{
    Cf, Cursor, Engine, KvPair, ReadView, Result, ScanIter, StorageError, WriteBatch, WriteOp,
};
pub use memory::MemoryEngine;
pub use rocks::RocksEngine;
