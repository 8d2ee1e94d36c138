//! An async Rust client for the etcd v3 API that works against etcd and
//! Setpoint alike. It exists for Setpoint's integration tests, the
//! `setpoint-bench` load generator and the Jepsen harness: endpoint parsing,
//! failover across members, retries that never resend a write that might
//! have been applied, and watches that resume on another member without
//! losing or repeating an event. It is not a full etcd client (no lease
//! helpers, no auth or TLS); the raw generated tonic clients are exposed for
//! the rest.

pub mod client;
pub mod endpoints;
pub mod error;
pub mod options;
pub mod retry;
pub mod watch;

pub use setpoint_proto as proto;

pub use client::{Client, EndpointStatus, StatusTarget};
pub use endpoints::{parse_endpoint, parse_endpoints};
pub use error::{ClientError, Result};
pub use options::{ConnectOptions, DEFAULT_MAX_MESSAGE_SIZE};
pub use retry::{classify, should_failover, should_retry, FailureClass, RequestKind, RetryPolicy};
pub use watch::{prefix_range_end, WatchBatch, WatchOptions, Watcher};
