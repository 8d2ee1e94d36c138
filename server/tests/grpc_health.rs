//! The standard gRPC health service on the client port, asked the same questions on the real
//! etcd and on Setpoint: the answers (statuses, error codes and messages) must be the same.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{etcd_bin, setpoint_bin, Cluster};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn ask(service: &str) -> tonic::Request<HealthCheckRequest> {
    tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    })
}

/// What one member of `binary` answers, as text.
async fn answers(binary: &Path) -> String {
    let cluster = Cluster::start(binary, 1, &[]);
    let channel = tonic::transport::Endpoint::from_shared(cluster.members[0].client_url())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let mut out = String::new();
    for service in ["", "etcdserverpb.KV", "no.such.Service"] {
        let got = match client.check(ask(service)).await {
            Ok(r) => format!("status {}", r.get_ref().status),
            Err(s) => format!("error {:?}: {}", s.code(), s.message()),
        };
        out += &format!("check {service:?}: {got}\n");
    }
    for service in ["", "no.such.Service"] {
        let mut stream = client
            .watch(ask(service))
            .await
            .expect("watch")
            .into_inner();
        let first = stream.message().await.expect("first status");
        // The stream stays open after its first status (nothing more within a moment).
        let next = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
        out += &format!(
            "watch {service:?}: {:?}, then {}\n",
            first.map(|m| m.status),
            if next.is_err() { "open" } else { "ended" }
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_answers_as_etcd_does() {
    let etcd = etcd_bin()
        .expect("the real etcd is needed for this comparison: install Debian's etcd-server");
    let ours = answers(&setpoint_bin()).await;
    let theirs = answers(&etcd).await;
    assert_eq!(
        ours, theirs,
        "\n--- Setpoint ---\n{ours}\n--- etcd ---\n{theirs}"
    );
    assert!(ours.contains("check \"\": status 1"), "{ours}");
}

/// A watch open when the member is told to stop (SIGTERM) hears NOT_SERVING and ends, and the
/// member exits: the watch does not hold up its shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_watch_ends_when_the_server_stops() {
    let mut cluster = Cluster::start(&setpoint_bin(), 1, &[]);
    let channel = tonic::transport::Endpoint::from_shared(cluster.members[0].client_url())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut stream = HealthClient::new(channel)
        .watch(ask(""))
        .await
        .expect("watch")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("first status")
        .expect("a status");
    assert_eq!(first.status, 1, "SERVING");

    let child = cluster.members[0].child.as_mut().expect("running");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let last = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a last status within 10 s");
    assert_eq!(
        last.expect("no error").map(|m| m.status),
        Some(2),
        "NOT_SERVING"
    );
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the end within 10 s");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "member still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
