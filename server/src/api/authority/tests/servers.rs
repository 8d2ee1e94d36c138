//! The rewrite in front of real servers: a tonic server reached with a raw HTTP/2 client,
//! and the real etcdctl, with and without `AuthorityFix`; plus a cost probe.

use super::*;

/// Sends one gRPC request with `:authority` `authority` on a raw HTTP/2 connection to
/// `addr`; returns the server's answer on stream 1: `Ok(fields)` for response HEADERS,
/// `Err(code)` for RST_STREAM.
async fn raw_grpc_call(addr: std::net::SocketAddr, authority: &[u8]) -> Result<Fields, u32> {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = opening();
    let block = encode(&[
        Rep::Indexed(3),
        Rep::Indexed(6),
        Rep::Literal(
            0x40,
            Name::Idx(4),
            b"/etcdserverpb.Maintenance/Status",
            true,
        ),
        Rep::Literal(0x40, Name::Idx(1), authority, true),
        Rep::Literal(0x40, Name::Idx(31), b"application/grpc", true),
        Rep::Literal(0x40, Name::Lit(b"te"), b"trailers", true),
    ]);
    req.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
    req.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    s.write_all(&req).await.unwrap();
    let mut loona = loona_hpack::Decoder::new();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        got.extend_from_slice(&chunk[..n]);
        let mut rest = &got[..];
        while rest.len() >= 9 {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            if rest.len() < 9 + len {
                break;
            }
            let (ty, stream, payload) = (
                rest[3],
                stream_id([rest[5], rest[6], rest[7], rest[8]]),
                &rest[9..9 + len],
            );
            if ty == TYPE_HEADERS {
                let fields = loona.decode(payload).unwrap();
                if stream == 1 {
                    return Ok(fields);
                }
            }
            if ty == 0x3 && stream == 1 {
                return Err(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
            }
            rest = &rest[9 + len..];
        }
    }
}

async fn serve<I, IO>(
    incoming: I,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)
where
    I: Stream<Item = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

fn grpc_status(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<&[u8]> {
    fields
        .iter()
        .find(|(n, _)| n == b"grpc-status")
        .map(|(_, v)| &v[..])
}

/// Without the rewrite h2 resets the stream (the bug); with it the request reaches tonic,
/// which answers UNIMPLEMENTED (no service is registered).
#[tokio::test]
async fn tonic_server_answers_a_url_authority_only_through_the_rewrite() {
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    let (stop_plain, plain_task) =
        serve(tokio_stream::wrappers::TcpListenerStream::new(plain)).await;
    assert_eq!(
        raw_grpc_call(plain_addr, b"http://127.0.0.1:2379").await,
        Err(1),
        "h2 resets with PROTOCOL_ERROR"
    );

    let fixed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fixed_addr = fixed.local_addr().unwrap();
    let (stop_fixed, fixed_task) = serve(incoming(fixed)).await;
    for authority in [
        &b"http://127.0.0.1:2379"[..],
        b"#initially=[http://127.0.0.1:2379]",
        b"127.0.0.1:2379",
        b"^bad",
    ] {
        let fields = raw_grpc_call(fixed_addr, authority)
            .await
            .expect("a response, not a reset");
        assert!(
            fields.contains(&(b":status".to_vec(), b"200".to_vec())),
            "{fields:?}"
        );
        assert_eq!(grpc_status(&fields), Some(&b"12"[..]), "{fields:?}");
    }
    let _ = stop_plain.send(());
    let _ = stop_fixed.send(());
    let _ = plain_task.await;
    let _ = fixed_task.await;
}

/// Just enough of etcd's Cluster and Maintenance services for `etcdctl endpoint status
/// --cluster`: one member, whose client URL is `url`.
#[derive(Clone)]
struct OneMember {
    url: String,
}

fn header() -> Option<setpoint_proto::etcdserverpb::ResponseHeader> {
    Some(setpoint_proto::etcdserverpb::ResponseHeader {
        cluster_id: 7,
        member_id: 1,
        revision: 1,
        raft_term: 2,
    })
}

mod stub {
    use setpoint_proto::etcdserverpb::*;
    use tonic::{Request, Response, Status};

    type R<T> = Result<Response<T>, Status>;

    #[tonic::async_trait]
    impl cluster_server::Cluster for super::OneMember {
        async fn member_add(&self, _: Request<MemberAddRequest>) -> R<MemberAddResponse> {
            Err(Status::unimplemented(""))
        }
        async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> R<MemberRemoveResponse> {
            Err(Status::unimplemented(""))
        }
        async fn member_update(&self, _: Request<MemberUpdateRequest>) -> R<MemberUpdateResponse> {
            Err(Status::unimplemented(""))
        }
        async fn member_list(&self, _: Request<MemberListRequest>) -> R<MemberListResponse> {
            Ok(Response::new(MemberListResponse {
                header: super::header(),
                members: vec![Member {
                    id: 1,
                    name: "one".into(),
                    peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                    client_ur_ls: vec![self.url.clone()],
                    is_learner: false,
                }],
            }))
        }
        async fn member_promote(
            &self,
            _: Request<MemberPromoteRequest>,
        ) -> R<MemberPromoteResponse> {
            Err(Status::unimplemented(""))
        }
    }

    #[tonic::async_trait]
    impl maintenance_server::Maintenance for super::OneMember {
        async fn alarm(&self, _: Request<AlarmRequest>) -> R<AlarmResponse> {
            Err(Status::unimplemented(""))
        }
        async fn status(&self, _: Request<StatusRequest>) -> R<StatusResponse> {
            Ok(Response::new(StatusResponse {
                header: super::header(),
                version: "3.4.0".into(),
                leader: 1,
                raft_index: 5,
                raft_term: 2,
                raft_applied_index: 5,
                ..Default::default()
            }))
        }
        async fn defragment(&self, _: Request<DefragmentRequest>) -> R<DefragmentResponse> {
            Err(Status::unimplemented(""))
        }
        async fn hash(&self, _: Request<HashRequest>) -> R<HashResponse> {
            Err(Status::unimplemented(""))
        }
        async fn hash_kv(&self, _: Request<HashKvRequest>) -> R<HashKvResponse> {
            Err(Status::unimplemented(""))
        }
        type SnapshotStream = futures::stream::Empty<Result<SnapshotResponse, Status>>;
        async fn snapshot(&self, _: Request<SnapshotRequest>) -> R<Self::SnapshotStream> {
            Err(Status::unimplemented(""))
        }
        async fn move_leader(&self, _: Request<MoveLeaderRequest>) -> R<MoveLeaderResponse> {
            Err(Status::unimplemented(""))
        }
    }
}

async fn etcdctl_status_cluster(listener: TcpListener, wrap: bool) -> std::process::Output {
    use setpoint_proto::etcdserverpb::{
        cluster_server::ClusterServer, maintenance_server::MaintenanceServer,
    };
    let url = format!("http://{}", listener.local_addr().unwrap());
    let svc = OneMember { url: url.clone() };
    let router = tonic::transport::Server::builder()
        .add_service(ClusterServer::new(svc.clone()))
        .add_service(MaintenanceServer::new(svc));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async {
        let _ = rx.await;
    };
    let task = if wrap {
        tokio::spawn(router.serve_with_incoming_shutdown(incoming(listener), stop))
    } else {
        let plain = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(router.serve_with_incoming_shutdown(plain, stop))
    };
    let out = tokio::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &url,
            "--dial-timeout=3s",
            "--command-timeout=5s",
        ])
        .args(["endpoint", "status", "--cluster"])
        .env("ETCDCTL_API", "3")
        .output()
        .await
        .expect("etcdctl runs");
    let _ = tx.send(());
    let _ = task.await;
    out
}

/// The real client this exists for (needs `etcdctl` 3.4 on the PATH):
/// `cargo test --release -p setpoint-server --lib authority::tests::etcdctl -- --ignored`
#[tokio::test]
#[ignore]
async fn etcdctl_endpoint_status_cluster() {
    let out = etcdctl_status_cluster(TcpListener::bind("127.0.0.1:0").await.unwrap(), false).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "without the rewrite: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
    assert!(
        stderr.contains("PROTOCOL_ERROR"),
        "the bug no longer reproduces: {stderr}"
    );

    let out = etcdctl_status_cluster(TcpListener::bind("127.0.0.1:0").await.unwrap(), true).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "with the rewrite: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    assert!(stdout.contains("3.4.0"), "{stdout}");
}

/// Not a test of behaviour: prints what the rewrite costs per request.
/// `cargo test --release -p setpoint-server --lib authority::tests::cost -- --ignored
/// --nocapture`
#[test]
#[ignore]
fn cost() {
    // A tonic client's steady state: :path Huffman-coded every time (h2 never indexes it).
    let mut input = opening();
    input.extend(frame(
        1,
        FLAG_END_HEADERS,
        1,
        &first_request(b"127.0.0.1:2379"),
    ));
    let n = 20_000;
    for i in 0..n {
        let block = encode(&[
            Rep::Indexed(3),
            Rep::Indexed(6),
            Rep::Literal(0x00, Name::Idx(4), b"/etcdserverpb.KV/Put", true),
            Rep::Indexed(65),
            Rep::Indexed(64),
            Rep::Indexed(63),
            Rep::Indexed(62),
        ]);
        input.extend(frame(1, FLAG_END_HEADERS, 3 + 2 * i, &block));
        input.extend(data_frame(3 + 2 * i, 60));
    }
    let t = std::time::Instant::now();
    let out = rewrite(&input, 1 << 16, 1 << 16).unwrap();
    let per = t.elapsed() / n;
    let plain = std::time::Instant::now();
    let mut sink = Vec::with_capacity(input.len());
    for c in input.chunks(1 << 16) {
        sink.extend_from_slice(c);
    }
    println!(
        "{per:?} per request ({} bytes in, {} out; a plain copy of all input took {:?})",
        input.len(),
        out.len(),
        plain.elapsed()
    );
}
