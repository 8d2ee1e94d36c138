//! Setpoint's error type and the one place it becomes an etcd gRPC status.
//!
//! Every failure a client can see is a variant here, and `From<Error> for tonic::Status`
//! gives it etcd's code and exact message, so clients that match on etcd's strings
//! (etcdctl, clientv3's rpctypes) behave the same. Internal failures (disk, Raft) keep their
//! cause for the log but reach clients as etcd's generic Unavailable/Internal answers.
//! This module does not log or retry; callers decide that.

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::mvcc::MvccError;

/// Errors a request can end in. `Serialize` so that a leader's verdict can travel back to the
/// follower that forwarded the request.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// A request the API layer rejects before it reaches Raft (bad field values).
    #[error("{0}")]
    InvalidArgument(String),
    /// Storage or replication failed underneath; the message is for logs.
    #[error("etcdserver: internal error: {0}")]
    Internal(String),
}

impl Error {
    fn code(&self) -> Code {
        use Error::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge | InvalidArgument(_) => Code::InvalidArgument,
            Compacted | FutureRevision => Code::OutOfRange,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            NotLeader | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader | LeaderChanged | Timeout | Stopped | NotCapable | LeaderTransferTimeout => {
                Code::Unavailable
            }
            Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<MvccError> for Error {
    fn from(e: MvccError) -> Error {
        match e {
            MvccError::Compacted => Error::Compacted,
            MvccError::FutureRevision => Error::FutureRevision,
            MvccError::KeyNotFound => Error::KeyNotFound,
            other => Error::Internal(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_codes_and_strings() {
        let s: Status = Error::Compacted.into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s: Status = Error::EmptyKey.into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: key is not provided");
        let s: Status = Error::NoLeader.into();
        assert_eq!(s.code(), Code::Unavailable);
        let s: Status = Error::LeaseNotFound.into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
    }
}
