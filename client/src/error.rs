//! The client's error type. Every failure a caller can see is a
//! [`ClientError`]; a gRPC status from a server keeps its code and message so
//! callers (tests, Jepsen checkers) can compare them with etcd's exact
//! strings. Deciding whether an error may be retried is not done here but in
//! [`crate::retry`].

/// Result alias used throughout the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// What can go wrong talking to an etcd v3 / Setpoint cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A gRPC status: either returned by a server, or produced locally by
    /// tonic when the connection failed (then it carries a `source`).
    #[error("grpc status {:?}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A transport-level error outside of a request.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The client was given no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint string could not be parsed; holds the input and the reason.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    /// The per-request timeout expired; the request may or may not have been
    /// applied.
    #[error("request timed out")]
    Timeout,
    /// The server canceled a watch because the revision it had to start
    /// from has been compacted away; re-read the data and watch again from
    /// `compact_revision` or later.
    #[error("watch canceled: required revision has been compacted (compact revision {compact_revision})")]
    Compacted {
        /// The store's compaction revision the server reported.
        compact_revision: i64,
    },
    /// The server canceled a watch for another reason (e.g. permission
    /// denied, invalid range); holds the server's `cancel_reason`, which may
    /// be empty.
    #[error("watch canceled by the server: {reason:?}")]
    WatchCanceled {
        /// The server's `cancel_reason`, verbatim.
        reason: String,
    },
    /// A server ended a watch stream without an error status.
    #[error("watch stream closed by the server")]
    StreamClosed,
}

impl ClientError {
    /// The gRPC code, if this is a status error.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The gRPC message (e.g. `"etcdserver: mvcc: required revision has been
    /// compacted"`), if this is a status error.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Status(s) => Some(s.message()),
            _ => None,
        }
    }

    /// The underlying status, if any.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Status(s) => Some(s),
            _ => None,
        }
    }
}
