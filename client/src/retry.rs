//! Failover and retry policy: which failures move the client to the next
//! endpoint, and which requests may be sent again automatically.
//!
//! The rule that matters for correctness (Jepsen): a request that might have
//! reached a server is never resent unless it is a read. A write is retried
//! only when the connection was never established (refused, connect timeout,
//! DNS failure), because then no byte of it left this process. Anything else
//! (a timeout, a reset connection, etcd's `Unavailable` "leader changed" /
//! "request timed out") is returned so the caller can record an indeterminate
//! outcome. This module only classifies and computes delays; the retry loop
//! itself lives in `client`.

use std::error::Error as _;
use std::time::Duration;

use tonic::Code;

use setpoint_proto::etcdserverpb::request_op::Request;
use setpoint_proto::etcdserverpb::TxnRequest;

use crate::error::ClientError;
use crate::options::ConnectOptions;

/// Whether a request may safely be executed more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// No side effects (Range, read-only Txn, MemberList, Status): always
    /// safe to resend.
    Read,
    /// Changes state (Put, DeleteRange, Txn with writes, Compact): resend only
    /// if it certainly never left the client.
    Write,
}

/// What a failure tells us about whether the request reached a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The connection was never established; the request was not sent.
    NotSent,
    /// The request may have reached a server (and may have been applied):
    /// timeout, connection lost, server said Unavailable.
    MaybeSent,
    /// A definite answer from a server (bad argument, compacted revision,
    /// permission denied, ...). Neither failover nor retry helps.
    Definite,
}

/// Classifies an error returned by one attempt.
pub fn classify(err: &ClientError) -> FailureClass {
    match err {
        ClientError::Status(status) => classify_status(status),
        ClientError::Transport(e) => {
            if chain_has_connect_error(e) {
                FailureClass::NotSent
            } else {
                FailureClass::MaybeSent
            }
        }
        ClientError::Timeout | ClientError::StreamClosed => FailureClass::MaybeSent,
        ClientError::NoEndpoints
        | ClientError::InvalidEndpoint(_)
        | ClientError::Compacted { .. }
        | ClientError::WatchCanceled { .. } => FailureClass::Definite,
    }
}

fn classify_status(status: &tonic::Status) -> FailureClass {
    // tonic wraps failures to establish a connection in `ConnectError` and
    // keeps the original error as the status' source.
    if chain_has_connect_error(status) {
        return FailureClass::NotSent;
    }
    match status.code() {
        // From a server (etcd: "leader changed", "no leader", "request timed
        // out") or from tonic for a lost connection / keepalive timeout.
        Code::Unavailable | Code::DeadlineExceeded => FailureClass::MaybeSent,
        // A status built locally from a transport error (hyper/h2) carries a
        // source; one decoded from a server's trailers does not.
        _ if status.source().is_some() => FailureClass::MaybeSent,
        _ => FailureClass::Definite,
    }
}

fn chain_has_connect_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Whether a failure of this class should move the client to another
/// endpoint (the current one is unreachable or unhealthy).
pub fn should_failover(class: FailureClass) -> bool {
    matches!(class, FailureClass::NotSent | FailureClass::MaybeSent)
}

/// Whether a request of `kind` may be sent again after a failure of `class`.
pub fn should_retry(kind: RequestKind, class: FailureClass) -> bool {
    match (kind, class) {
        (_, FailureClass::Definite) => false,
        (RequestKind::Read, _) => true,
        (RequestKind::Write, FailureClass::NotSent) => true,
        (RequestKind::Write, FailureClass::MaybeSent) => false,
    }
}

/// A Txn is a read (safe to resend) when every op in both branches, nested
/// txns included, is a Range.
pub fn txn_kind(txn: &TxnRequest) -> RequestKind {
    fn read_only(txn: &TxnRequest) -> bool {
        txn.success.iter().chain(txn.failure.iter()).all(|op| {
            match &op.request {
                Some(Request::RequestRange(_)) => true,
                Some(Request::RequestTxn(inner)) => read_only(inner),
                Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
                // An empty op is rejected by the server; nothing gets applied.
                None => true,
            }
        })
    }
    if read_only(txn) {
        RequestKind::Read
    } else {
        RequestKind::Write
    }
}

/// Attempt budget and backoff, derived from [`ConnectOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; at least 1.
    pub max_attempts: usize,
    /// Delay before the first retry.
    pub backoff_min: Duration,
    /// Cap on the delay.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Policy for a client with `endpoints` endpoints.
    pub fn new(options: &ConnectOptions, endpoints: usize) -> Self {
        let max_attempts = options
            .max_attempts
            .unwrap_or_else(|| endpoints.saturating_mul(2))
            .max(1);
        RetryPolicy {
            max_attempts,
            backoff_min: options.backoff_min,
            backoff_max: options.backoff_max.max(options.backoff_min),
        }
    }

    /// Delay before retry number `retry` (0 = first retry): exponential from
    /// `backoff_min`, capped at `backoff_max`.
    pub fn backoff(&self, retry: usize) -> Duration {
        let factor = 1u32 << retry.min(16);
        self.backoff_min
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_refused_status() -> tonic::Status {
        // What tonic builds when TCP connect fails: Unavailable, with the
        // ConnectError (wrapping the io error) as source.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err: Box<dyn std::error::Error + Send + Sync> =
            Box::new(tonic::ConnectError(Box::new(io)));
        tonic::Status::from_error(err)
    }

    #[test]
    fn connect_failure_is_not_sent() {
        let st = connect_refused_status();
        assert_eq!(st.code(), Code::Unavailable);
        assert_eq!(classify(&st.into()), FailureClass::NotSent);
    }

    #[test]
    fn server_unavailable_is_maybe_sent() {
        for msg in [
            "etcdserver: leader changed",
            "etcdserver: no leader",
            "etcdserver: request timed out",
        ] {
            let err = ClientError::Status(tonic::Status::unavailable(msg));
            assert_eq!(classify(&err), FailureClass::MaybeSent, "{msg}");
        }
    }

    #[test]
    fn timeout_and_lost_connection_are_maybe_sent() {
        assert_eq!(classify(&ClientError::Timeout), FailureClass::MaybeSent);
        // A locally built status from an I/O error after connecting.
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let st = tonic::Status::from_error(Box::new(io));
        assert_eq!(classify(&st.into()), FailureClass::MaybeSent);
        let err = ClientError::Status(tonic::Status::deadline_exceeded(
            "context deadline exceeded",
        ));
        assert_eq!(classify(&err), FailureClass::MaybeSent);
    }

    #[test]
    fn application_errors_are_definite() {
        for st in [
            tonic::Status::invalid_argument("etcdserver: key is not provided"),
            tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
            tonic::Status::permission_denied("etcdserver: permission denied"),
            tonic::Status::not_found("etcdserver: requested lease not found"),
            tonic::Status::failed_precondition("etcdserver: too many operations in txn request"),
            tonic::Status::unknown("something the server said"),
        ] {
            let code = st.code();
            assert_eq!(classify(&st.into()), FailureClass::Definite, "{code:?}");
        }
        assert_eq!(classify(&ClientError::NoEndpoints), FailureClass::Definite);
    }

    #[test]
    fn reads_retry_on_anything_transient() {
        assert!(should_retry(RequestKind::Read, FailureClass::NotSent));
        assert!(should_retry(RequestKind::Read, FailureClass::MaybeSent));
        assert!(!should_retry(RequestKind::Read, FailureClass::Definite));
    }

    #[test]
    fn writes_retry_only_when_certainly_not_sent() {
        assert!(should_retry(RequestKind::Write, FailureClass::NotSent));
        assert!(!should_retry(RequestKind::Write, FailureClass::MaybeSent));
        assert!(!should_retry(RequestKind::Write, FailureClass::Definite));
        // End to end through classification.
        let leader_changed =
            ClientError::Status(tonic::Status::unavailable("etcdserver: leader changed"));
        assert!(!should_retry(RequestKind::Write, classify(&leader_changed)));
        assert!(should_retry(RequestKind::Read, classify(&leader_changed)));
        assert!(should_retry(
            RequestKind::Write,
            classify(&connect_refused_status().into())
        ));
        assert!(!should_retry(
            RequestKind::Write,
            classify(&ClientError::Timeout)
        ));
    }

    #[test]
    fn failover_on_transient_only() {
        assert!(should_failover(FailureClass::NotSent));
        assert!(should_failover(FailureClass::MaybeSent));
        assert!(!should_failover(FailureClass::Definite));
    }

    #[test]
    fn txn_kind_detects_writes_anywhere() {
        use setpoint_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp};
        let range = || RequestOp {
            request: Some(Request::RequestRange(RangeRequest::default())),
        };
        let put = || RequestOp {
            request: Some(Request::RequestPut(PutRequest::default())),
        };
        let ro = TxnRequest {
            compare: vec![],
            success: vec![range()],
            failure: vec![range()],
        };
        assert_eq!(txn_kind(&ro), RequestKind::Read);
        assert_eq!(txn_kind(&TxnRequest::default()), RequestKind::Read);
        let write_in_failure = TxnRequest {
            failure: vec![range(), put()],
            ..ro.clone()
        };
        assert_eq!(txn_kind(&write_in_failure), RequestKind::Write);
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(write_in_failure)),
            }],
            ..ro.clone()
        };
        assert_eq!(txn_kind(&nested), RequestKind::Write);
    }

    #[test]
    fn policy_attempts_and_backoff() {
        let opts = ConnectOptions::default();
        let p = RetryPolicy::new(&opts, 3);
        assert_eq!(p.max_attempts, 6);
        assert_eq!(p.backoff(0), Duration::from_millis(50));
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(60), Duration::from_millis(200));
        let one = RetryPolicy::new(
            &ConnectOptions {
                max_attempts: Some(0),
                ..opts
            },
            3,
        );
        assert_eq!(one.max_attempts, 1);
    }
}
