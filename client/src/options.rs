//! Tunables for a [`crate::Client`]: connection setup, per-request timeout,
//! message size limits and the retry budgets (requests and watch resumes). Only plain data lives here; the
//! code that uses it is in `endpoints` (channels) and `client`/`retry`
//! (requests).

use std::time::Duration;

/// 64 MiB: large values, big ranges and snapshots must fit (tonic's default
/// decoding limit is 4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Options for [`crate::Client::connect`]. Start from `Default` and override
/// fields as needed.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TCP connect timeout per endpoint. Default 2 s.
    pub connect_timeout: Duration,
    /// Deadline for each attempt of a unary request. Default 5 s.
    pub request_timeout: Duration,
    /// HTTP/2 keepalive ping interval. Default 10 s.
    pub keepalive_interval: Duration,
    /// How long to wait for a keepalive ping ack before dropping the
    /// connection. Default 5 s.
    pub keepalive_timeout: Duration,
    /// Max encoded/decoded gRPC message size. Default 64 MiB.
    pub max_message_size: usize,
    /// Total attempts per request (first try included). `None` means
    /// 2 × number of endpoints.
    pub max_attempts: Option<usize>,
    /// A request that may be retried keeps being retried, past
    /// `max_attempts`, until this long after its first attempt — long enough
    /// to ride out a leader election. Default 10 s.
    pub retry_budget: Duration,
    /// Backoff before the first retry; doubled each retry up to
    /// `backoff_max`. Default 50 ms.
    pub backoff_min: Duration,
    /// Upper bound of the backoff. Default 200 ms.
    pub backoff_max: Duration,
    /// How long a [`crate::Watcher`] keeps trying to re-create its watch on
    /// another endpoint after its stream failed, before `next()` returns the
    /// error. Default 30 s.
    pub watch_resume_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_attempts: None,
            retry_budget: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            watch_resume_timeout: Duration::from_secs(30),
        }
    }
}
