//! The MVCC layer's error type.
//!
//! The messages of `Compacted`, `FutureRevision` and `KeyNotFound` are etcd's, because
//! clients match on them; the mapping to gRPC status codes happens in one place outside this
//! module (`crate::error`). `Storage` and `Corrupt` mean the member cannot serve correctly and
//! are never the client's fault.

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("mvcc storage: {0}")]
    Storage(#[from] StorageError),
    #[error("mvcc: corrupt data: {0}")]
    Corrupt(String),
}

pub type Result<T, E = MvccError> = std::result::Result<T, E>;
