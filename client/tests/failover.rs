//! Failover and retry behaviour against in-process mock KV servers: which
//! requests are resent, to which endpoint, and which errors come back as-is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use setpoint_client::proto::etcdserverpb::kv_server::{Kv, KvServer};
use setpoint_client::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use setpoint_client::proto::mvccpb::KeyValue;
use setpoint_client::{Client, ClientError, ConnectOptions};
use tonic::{Code, Request, Response, Status};

#[derive(Clone, Copy)]
enum Behavior {
    Ok,
    Unavailable(&'static str),
    InvalidArgument(&'static str),
    Hang,
}

struct Mock {
    behavior: Behavior,
    member_id: u64,
    puts: AtomicUsize,
    ranges: AtomicUsize,
}

impl Mock {
    async fn respond(&self) -> Result<ResponseHeader, Status> {
        match self.behavior {
            Behavior::Ok => Ok(ResponseHeader {
                member_id: self.member_id,
                revision: 7,
                ..Default::default()
            }),
            Behavior::Unavailable(msg) => Err(Status::unavailable(msg)),
            Behavior::InvalidArgument(msg) => Err(Status::invalid_argument(msg)),
            Behavior::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::internal("unreachable"))
            }
        }
    }
}

#[tonic::async_trait]
impl Kv for Mock {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.ranges.fetch_add(1, Ordering::SeqCst);
        let header = self.respond().await?;
        let key = req.into_inner().key;
        Ok(Response::new(RangeResponse {
            header: Some(header),
            kvs: vec![KeyValue {
                key,
                value: b"v".to_vec(),
                version: 1,
                ..Default::default()
            }],
            more: false,
            count: 1,
        }))
    }
    async fn put(&self, _req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        let header = self.respond().await?;
        Ok(Response::new(PutResponse {
            header: Some(header),
            prev_kv: None,
        }))
    }
    async fn delete_range(
        &self,
        _req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn txn(&self, _req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn compact(
        &self,
        _req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
}

async fn spawn_mock(behavior: Behavior, member_id: u64) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock {
        behavior,
        member_id,
        puts: AtomicUsize::new(0),
        ranges: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let svc = KvServer::from_arc(mock.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (addr.to_string(), mock)
}

/// An address nobody listens on (bound, then released).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr.to_string()
}

/// Accepts TCP connections and closes them at once: the connection exists,
/// so a request sent on it cannot be proven unsent.
async fn slam_door() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            drop(sock);
        }
    });
    addr.to_string()
}

fn fast_options() -> ConnectOptions {
    ConnectOptions {
        request_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(10),
        ..Default::default()
    }
}

async fn client(endpoints: Vec<String>) -> Client {
    Client::connect(endpoints, fast_options())
        .await
        .expect("connect")
}

#[tokio::test]
async fn write_fails_over_when_connection_refused() {
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![closed_port(), b]).await;
    let resp = c.put_kv("k", "v").await.expect("put after failover");
    assert_eq!(resp.header.map(|h| h.member_id), Some(2));
    assert_eq!(mock_b.puts.load(Ordering::SeqCst), 1);
    assert_eq!(c.current_endpoint(), 1);
}

#[tokio::test]
async fn write_not_retried_after_server_unavailable() {
    let (a, mock_a) = spawn_mock(Behavior::Unavailable("etcdserver: leader changed"), 1).await;
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![a, b]).await;
    let err = c.put_kv("k", "v").await.expect_err("must not be retried");
    assert_eq!(err.code(), Some(Code::Unavailable));
    assert_eq!(err.message(), Some("etcdserver: leader changed"));
    assert_eq!(mock_a.puts.load(Ordering::SeqCst), 1);
    assert_eq!(mock_b.puts.load(Ordering::SeqCst), 0);
    // The client still moved on, so the caller's next request goes elsewhere.
    assert_eq!(c.current_endpoint(), 1);
    c.put_kv("k", "v2")
        .await
        .expect("next put on the other member");
    assert_eq!(mock_b.puts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn read_retried_after_server_unavailable() {
    let (a, mock_a) = spawn_mock(Behavior::Unavailable("etcdserver: no leader"), 1).await;
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![a, b]).await;
    let kv = c.get("key").await.expect("read retried").expect("some kv");
    assert_eq!(kv.key, b"key");
    assert_eq!(mock_a.ranges.load(Ordering::SeqCst), 1);
    assert_eq!(mock_b.ranges.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn write_timeout_is_indeterminate_not_retried() {
    let (a, mock_a) = spawn_mock(Behavior::Hang, 1).await;
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![a, b]).await;
    let err = c.put_kv("k", "v").await.expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert_eq!(mock_a.puts.load(Ordering::SeqCst), 1);
    assert_eq!(mock_b.puts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn read_timeout_retried_elsewhere() {
    let (a, _mock_a) = spawn_mock(Behavior::Hang, 1).await;
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![a, b]).await;
    let resp = c
        .range(RangeRequest {
            key: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .expect("read after timeout");
    assert_eq!(resp.header.map(|h| h.member_id), Some(2));
    assert_eq!(mock_b.ranges.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn definite_error_neither_retried_nor_failed_over() {
    let (a, mock_a) = spawn_mock(
        Behavior::InvalidArgument("etcdserver: key is not provided"),
        1,
    )
    .await;
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![a, b]).await;
    let err = c.get("").await.expect_err("invalid argument");
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert_eq!(err.message(), Some("etcdserver: key is not provided"));
    assert_eq!(mock_a.ranges.load(Ordering::SeqCst), 1);
    assert_eq!(mock_b.ranges.load(Ordering::SeqCst), 0);
    assert_eq!(c.current_endpoint(), 0);
}

#[tokio::test]
async fn write_not_retried_when_connection_dropped_after_connect() {
    let (b, mock_b) = spawn_mock(Behavior::Ok, 2).await;
    let c = client(vec![slam_door().await, b]).await;
    let err = c.put_kv("k", "v").await.expect_err("indeterminate");
    assert_eq!(
        setpoint_client::classify(&err),
        setpoint_client::FailureClass::MaybeSent,
        "{err:?}"
    );
    assert_eq!(mock_b.puts.load(Ordering::SeqCst), 0);
    // A read in the same situation goes through.
    let c = client(vec![slam_door().await, c.endpoints()[1].clone()]).await;
    c.get("k").await.expect("read after dropped connection");
}

#[tokio::test]
async fn all_endpoints_down_gives_up_after_budget() {
    let c = client(vec![closed_port(), closed_port()]).await;
    let err = c.get("k").await.expect_err("nobody home");
    assert_eq!(err.code(), Some(Code::Unavailable), "{err:?}");
    assert_eq!(
        setpoint_client::classify(&err),
        setpoint_client::FailureClass::NotSent
    );
}

#[tokio::test]
async fn status_of_bad_index_is_an_error() {
    let c = client(vec![closed_port()]).await;
    assert!(matches!(
        c.status(setpoint_client::StatusTarget::Endpoint(3)).await,
        Err(ClientError::InvalidEndpoint(_))
    ));
    let all = c
        .status(setpoint_client::StatusTarget::All)
        .await
        .expect("per-endpoint results");
    assert_eq!(all.len(), 1);
    assert!(all[0].result.is_err());
}
