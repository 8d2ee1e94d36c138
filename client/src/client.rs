//! [`Client`]: the entry point. Holds one lazily connected gRPC channel per
//! endpoint and a "current" endpoint; unary calls go to the current endpoint
//! and, on failure, move on to the next one following the rules in
//! [`crate::retry`]. Covers the KV API plus MemberList and Status; watches
//! that resume across endpoints are in [`crate::watch`]. For anything else
//! (raw watch and lease streams, auth, ...) take a raw generated client from
//! `kv_client()`, `watch_client()` and friends, which get no retries.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use setpoint_proto::etcdserverpb::cluster_client::ClusterClient;
use setpoint_proto::etcdserverpb::kv_client::KvClient;
use setpoint_proto::etcdserverpb::lease_client::LeaseClient;
use setpoint_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use setpoint_proto::etcdserverpb::watch_client::WatchClient;
use setpoint_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    MemberListRequest, MemberListResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    StatusRequest, StatusResponse, TxnRequest, TxnResponse,
};
use setpoint_proto::mvccpb::KeyValue;
use tonic::transport::Channel;

use crate::endpoints::{lazy_channel, parse_endpoints};
use crate::error::{ClientError, Result};
use crate::options::ConnectOptions;
use crate::retry::{classify, should_failover, should_retry, txn_kind, RequestKind, RetryPolicy};

/// Which members [`Client::status`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusTarget {
    /// One endpoint, by its index in [`Client::endpoints`].
    Endpoint(usize),
    /// Every endpoint, concurrently.
    All,
}

/// The Status answer of one endpoint.
#[derive(Debug)]
pub struct EndpointStatus {
    /// Index in [`Client::endpoints`].
    pub index: usize,
    /// Normalized endpoint (`http://host:port`).
    pub endpoint: String,
    /// The member's status, or why it could not be fetched.
    pub result: Result<StatusResponse>,
}

/// An etcd v3 client with failover across endpoints. Cheap to clone; clones
/// share channels and the current endpoint.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    options: ConnectOptions,
    policy: RetryPolicy,
}

/// Applies the configured message size limits to a generated client.
macro_rules! limited {
    ($client:expr, $max:expr) => {
        $client
            .max_decoding_message_size($max)
            .max_encoding_message_size($max)
    };
}

impl Client {
    /// Parses `endpoints` (each may be a comma-separated list) and prepares a
    /// lazy channel per endpoint. Does not contact any server: an unreachable
    /// cluster shows up on the first request. Must run inside a Tokio runtime.
    pub async fn connect(endpoints: Vec<String>, options: ConnectOptions) -> Result<Client> {
        let endpoints = parse_endpoints(&endpoints)?;
        let channels = endpoints
            .iter()
            .map(|e| lazy_channel(e, &options))
            .collect::<Result<Vec<_>>>()?;
        let policy = RetryPolicy::new(&options, endpoints.len());
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                channels,
                current: AtomicUsize::new(0),
                options,
                policy,
            }),
        })
    }

    /// The normalized endpoints, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Index of the endpoint requests currently go to.
    pub fn current_endpoint(&self) -> usize {
        self.inner.current.load(Ordering::Acquire) % self.inner.channels.len()
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    fn current_channel(&self) -> Channel {
        self.inner.channels[self.current_endpoint()].clone()
    }

    /// Raw Watch client on endpoint `index` (which must be in range).
    pub(crate) fn watch_client_at(&self, index: usize) -> WatchClient<Channel> {
        limited!(
            WatchClient::new(self.inner.channels[index].clone()),
            self.max_msg()
        )
    }

    /// The attempt budget and backoff derived from the options.
    pub(crate) fn policy(&self) -> RetryPolicy {
        self.inner.policy
    }

    fn max_msg(&self) -> usize {
        self.inner.options.max_message_size
    }

    /// Raw KV client on the current endpoint (no retries, no timeout).
    pub fn kv_client(&self) -> KvClient<Channel> {
        limited!(KvClient::new(self.current_channel()), self.max_msg())
    }

    /// Raw Cluster client on the current endpoint.
    pub fn cluster_client(&self) -> ClusterClient<Channel> {
        limited!(ClusterClient::new(self.current_channel()), self.max_msg())
    }

    /// Raw Maintenance client on the current endpoint.
    pub fn maintenance_client(&self) -> MaintenanceClient<Channel> {
        limited!(
            MaintenanceClient::new(self.current_channel()),
            self.max_msg()
        )
    }

    /// Raw Watch client on the current endpoint.
    pub fn watch_client(&self) -> WatchClient<Channel> {
        limited!(WatchClient::new(self.current_channel()), self.max_msg())
    }

    /// Raw Lease client on the current endpoint.
    pub fn lease_client(&self) -> LeaseClient<Channel> {
        limited!(LeaseClient::new(self.current_channel()), self.max_msg())
    }

    /// Range (always retried on transient failures).
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let max = self.max_msg();
        self.call(RequestKind::Read, "range", |ch| {
            let req = req.clone();
            async move { limited!(KvClient::new(ch), max).range(req).await }
        })
        .await
    }

    /// Put (retried only if it certainly was not sent).
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        let max = self.max_msg();
        self.call(RequestKind::Write, "put", |ch| {
            let req = req.clone();
            async move { limited!(KvClient::new(ch), max).put(req).await }
        })
        .await
    }

    /// DeleteRange (retried only if it certainly was not sent).
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let max = self.max_msg();
        self.call(RequestKind::Write, "delete_range", |ch| {
            let req = req.clone();
            async move { limited!(KvClient::new(ch), max).delete_range(req).await }
        })
        .await
    }

    /// Txn. A txn whose ops are all Ranges is retried like a read; any write
    /// op makes it a write.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        let max = self.max_msg();
        let kind = txn_kind(&req);
        self.call(kind, "txn", |ch| {
            let req = req.clone();
            async move { limited!(KvClient::new(ch), max).txn(req).await }
        })
        .await
    }

    /// Compact (a write: a resend could report "already compacted").
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        let max = self.max_msg();
        // CompactionRequest is Copy (two scalar fields).
        self.call(RequestKind::Write, "compact", |ch| async move {
            limited!(KvClient::new(ch), max).compact(req).await
        })
        .await
    }

    /// MemberList (a read).
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        let max = self.max_msg();
        self.call(RequestKind::Read, "member_list", |ch| async move {
            limited!(ClusterClient::new(ch), max)
                .member_list(MemberListRequest {})
                .await
        })
        .await
    }

    /// Status of one or all endpoints. No failover: each answer comes from
    /// the endpoint it names. Fails only for an out-of-range index; per
    /// endpoint failures are in [`EndpointStatus::result`].
    pub async fn status(&self, target: StatusTarget) -> Result<Vec<EndpointStatus>> {
        let n = self.inner.channels.len();
        let indices: Vec<usize> = match target {
            StatusTarget::Endpoint(i) if i < n => vec![i],
            StatusTarget::Endpoint(i) => {
                return Err(ClientError::InvalidEndpoint(format!(
                    "index {i} out of range ({n} endpoints)"
                )))
            }
            StatusTarget::All => (0..n).collect(),
        };
        let max = self.max_msg();
        let timeout = self.inner.options.request_timeout;
        let queries = indices.into_iter().map(|index| {
            let channel = self.inner.channels[index].clone();
            let endpoint = self.inner.endpoints[index].clone();
            async move {
                let mut client = limited!(MaintenanceClient::new(channel), max);
                let result =
                    match tokio::time::timeout(timeout, client.status(StatusRequest {})).await {
                        Ok(Ok(resp)) => Ok(resp.into_inner()),
                        Ok(Err(status)) => Err(ClientError::Status(status)),
                        Err(_) => Err(ClientError::Timeout),
                    };
                EndpointStatus {
                    index,
                    endpoint,
                    result,
                }
            }
        });
        Ok(futures::future::join_all(queries).await)
    }

    /// The newest value of one key, or `None` if it does not exist.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let resp = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Puts one key with no lease.
    pub async fn put_kv(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse> {
        self.put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
    }

    /// Runs `attempt` against the current endpoint with the per-request
    /// timeout, failing over and retrying as `retry` allows.
    async fn call<T, F, Fut>(
        &self,
        kind: RequestKind,
        op: &'static str,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let policy = self.inner.policy;
        let timeout = self.inner.options.request_timeout;
        let began = std::time::Instant::now();
        let mut tries = 0usize;
        loop {
            let index = self.current_endpoint();
            let channel = self.inner.channels[index].clone();
            let err = match tokio::time::timeout(timeout, attempt(channel)).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => ClientError::Status(status),
                Err(_elapsed) => ClientError::Timeout,
            };
            tries += 1;
            let class = classify(&err);
            if should_failover(class) {
                self.failover_from(index);
            }
            let spent =
                tries >= policy.max_attempts && began.elapsed() >= self.inner.options.retry_budget;
            if !should_retry(kind, class) || spent {
                tracing::debug!(op, endpoint = %self.inner.endpoints[index], ?class, tries, error = %err, "request failed");
                return Err(err);
            }
            tracing::debug!(op, endpoint = %self.inner.endpoints[index], ?class, tries, error = %err, "retrying");
            tokio::time::sleep(policy.backoff(tries - 1)).await;
        }
    }

    /// Moves to the endpoint after `failed`, unless another request already
    /// moved the client elsewhere.
    pub(crate) fn failover_from(&self, failed: usize) {
        let n = self.inner.channels.len();
        let _ = self.inner.current.compare_exchange(
            failed,
            (failed + 1) % n,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("current", &self.current_endpoint())
            .finish_non_exhaustive()
    }
}
