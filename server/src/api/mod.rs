//! The client-facing gRPC services, one per file, as etcd's v3 API defines them.
//!
//! Each service validates a request (`validate`), turns writes into Raft commands and waits
//! for their applied result, serves reads from the local MVCC store after a read-index point
//! (or at once when serializable), and fills etcd's response header. Services not built yet
//! are simply not registered: tonic answers UNIMPLEMENTED for them, as a client expects.
//! The client port also answers etcd's plain-HTTP `/health`, `/version` and `/metrics`
//! (`http`), the two protocols told apart per connection (`client_port`), and the standard
//! gRPC health service (`grpc_health`).

pub mod authority;
pub mod client_port;
pub mod cluster;
pub mod grpc_health;
pub mod http;
pub mod kv;
pub mod maintenance;
pub mod validate;
pub mod watch;

use std::sync::Arc;

use crate::apply::{Applier, Compactor};
use crate::mvcc::KvStore;
use crate::raft::RaftNode;
use crate::storage::RocksEngine;
use watch::{WatchMetrics, WatchSettings};

/// What every service needs; cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    pub node: Arc<RaftNode>,
    pub kv: Arc<KvStore<RocksEngine>>,
    pub applier: Arc<Applier<RocksEngine>>,
    pub engine: Arc<RocksEngine>,
    pub compactor: Compactor,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub watch: WatchSettings,
    pub watch_metrics: WatchMetrics,
}
