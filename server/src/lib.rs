//! Setpoint's server: a Raft-replicated, RocksDB-backed store that speaks etcd's v3 API.
//!
//! The modules follow the request path: `api` (one tonic service per file) validates and
//! forwards to `raft` (openraft behind our own types), whose committed entries reach `apply`,
//! the one deterministic place where replicated state changes, which writes through `mvcc`
//! (etcd's revisioned key space) into `storage` (the engine behind a small trait).
//! This crate is not a client library: see `setpoint-client` for that.

pub mod api;
pub mod apply;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod metrics;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod storage;
