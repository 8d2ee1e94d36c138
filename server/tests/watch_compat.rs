//! Watch behaves as etcd's does: the same etcdctl watch sessions (catch-up with --rev,
//! --prefix, --prev-kv, ranges, JSON output, a compacted start, live events, interactive
//! mode with progress requests) and the same raw Watch stream (server- and client-chosen
//! ids, duplicate ids, empty ranges, cancel, filters, fragments, progress requests and
//! periodic progress notifications) against the real etcd and against Setpoint must give
//! the same output, ids and terms aside.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;

use common::{
    assert_same_transcript, etcd_bin, etcdctl, etcdctl_input, normalize, setpoint_bin, Cluster,
};
use setpoint_client::proto::etcdserverpb::watch_client::WatchClient;
use setpoint_client::proto::etcdserverpb::watch_create_request::FilterType;
use setpoint_client::proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_client::proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Waits for a long-running etcdctl watch to print what it will print.
const SETTLE: Duration = Duration::from_millis(1500);

fn spawn_watch(endpoint: &str, args: &[&str]) -> Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("watch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl (install Debian's etcd-client)")
}

/// Stops a watch (if still running) and returns what it printed.
fn finish(mut child: Child, label: &str) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().expect("etcdctl output");
    format!(
        "$ etcdctl watch {label}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A watch over existing history: started, given time to print, stopped.
fn watch_history(endpoint: &str, args: &[&str]) -> String {
    let child = spawn_watch(endpoint, args);
    std::thread::sleep(SETTLE);
    finish(child, &args.join(" "))
}

fn ctl(endpoint: &str, args: &[&str]) {
    let out = etcdctl(endpoint, args);
    assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
}

/// etcdctl with `input` on its standard input (txn scripts, values too long for argv).
fn ctl_input(endpoint: &str, args: &[&str], input: &str) {
    let out = etcdctl_input(endpoint, args, input.as_bytes());
    assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
}

fn etcdctl_transcript(binary: &std::path::Path) -> String {
    let cluster = Cluster::start(binary, 1, &[]);
    let ep = cluster.members[0].endpoint();
    ctl(&ep, &["put", "foo", "1"]); // rev 2
    ctl(&ep, &["put", "foo2", "a"]); // 3
    ctl(&ep, &["put", "bar", "x"]); // 4
    ctl_input(&ep, &["txn"], "\nput foo 2\ndel bar\nput zoo z\n\n\n"); // 5
    ctl(&ep, &["del", "foo2"]); // 6
    ctl(&ep, &["put", "foo", "3"]); // 7
    let mut out = String::new();
    for args in [
        &["foo", "--rev", "1"][..],
        &["foo", "--prefix", "--rev", "1", "--prev-kv"],
        &["", "--prefix", "--rev", "3", "-w", "json"],
        &["bar", "zoo", "--rev", "2"],
        &["zoo", "--rev", "5", "-w", "json"],
        &["b", "a", "--rev", "1"],
    ] {
        out.push_str(&watch_history(&ep, args));
    }
    ctl(&ep, &["compaction", "4"]);
    out.push_str(&watch_history(&ep, &["foo", "--rev", "2"]));
    out.push_str(&watch_history(&ep, &["foo", "--prefix", "--rev", "4"]));

    // Live events, with previous values.
    let live = spawn_watch(&ep, &["f", "--prefix", "--prev-kv"]);
    std::thread::sleep(SETTLE);
    ctl(&ep, &["put", "foo", "4"]);
    ctl(&ep, &["del", "foo"]);
    ctl(&ep, &["put", "f", "new"]);
    ctl(&ep, &["put", "other", "unwatched"]);
    std::thread::sleep(SETTLE);
    out.push_str(&finish(live, "f --prefix --prev-kv (live)"));

    // Interactive: a watch, progress requests around a write.
    let mut inter = spawn_watch(&ep, &["-i"]);
    let mut stdin = inter.stdin.take().expect("stdin");
    stdin.write_all(b"watch zoo\n").expect("write");
    std::thread::sleep(SETTLE);
    stdin.write_all(b"progress\n").expect("write");
    std::thread::sleep(SETTLE);
    ctl(&ep, &["put", "zoo", "zz"]);
    std::thread::sleep(SETTLE);
    stdin.write_all(b"progress\n").expect("write");
    std::thread::sleep(SETTLE);
    out.push_str(&finish(
        inter,
        "-i (watch zoo, progress, put zoo, progress)",
    ));
    normalize(&out)
}

#[test]
fn etcdctl_watch_matches_real_etcd() {
    let etcd = etcd_bin().expect("the real etcd is needed: install Debian's etcd-server");
    let ours = etcdctl_transcript(&setpoint_bin());
    let theirs = etcdctl_transcript(&etcd);
    assert_same_transcript(&ours, &theirs);
    // The sessions did real work (not two identical failures).
    assert!(ours.contains("PUT\nfoo\n3"), "{ours}");
    assert!(
        ours.contains("required revision has been compacted"),
        "{ours}"
    );
    assert!(ours.contains("progress notify: 11"), "{ours}");
    println!("{ours}");
}

/// A raw Watch stream: requests in, responses collected until the stream goes quiet.
struct RawStream {
    tx: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

impl RawStream {
    /// Opens a stream whose first request is `first` (etcd sends no response headers before
    /// its first response, so the stream cannot wait for them with nothing sent).
    async fn open(endpoint: &str, first: RequestUnion) -> RawStream {
        let mut client = WatchClient::connect(format!("http://{endpoint}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        tx.send(WatchRequest {
            request_union: Some(first),
        })
        .await
        .expect("queue first request");
        let responses = client
            .watch(ReceiverStream::new(rx))
            .await
            .expect("watch stream")
            .into_inner();
        RawStream { tx, responses }
    }

    async fn send(&self, req: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(req),
            })
            .await
            .expect("send watch request");
    }

    /// Responses until none arrives for `quiet`; ids/terms zeroed, one line each.
    async fn drain(&mut self, quiet: Duration) -> Vec<String> {
        self.collect(usize::MAX, quiet).await
    }

    /// At most `n` responses, each within `wait` of the previous.
    async fn collect(&mut self, n: usize, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let Ok(Some(Ok(mut r))) = tokio::time::timeout(wait, self.responses.next()).await
            else {
                break;
            };
            if let Some(h) = r.header.as_mut() {
                h.cluster_id = 0;
                h.member_id = 0;
                h.raft_term = 0;
            }
            for e in &mut r.events {
                for kv in e.kv.iter_mut().chain(e.prev_kv.iter_mut()) {
                    if kv.value.len() > 64 {
                        kv.value = format!("<{} bytes>", kv.value.len()).into_bytes();
                    }
                }
            }
            out.push((r.watch_id, format!("{r:?}")));
        }
        // Neither etcd nor Setpoint orders responses of different watchers; each watcher's
        // own responses keep their order.
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, line)| line).collect()
    }
}

fn create(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: end.into(),
        start_revision: start,
        ..Default::default()
    }
}

async fn raw_transcript(binary: &std::path::Path) -> Vec<String> {
    let cluster = Cluster::start(
        binary,
        1,
        &[
            "--max-request-bytes",
            "300000",
            "--experimental-watch-progress-notify-interval",
            "700ms",
        ],
    );
    let ep = cluster.members[0].endpoint();
    ctl(&ep, &["put", "a", "1"]); // 2
    ctl(&ep, &["put", "b", "2"]); // 3
    let quiet = Duration::from_millis(400);
    let mut s = RawStream::open(&ep, RequestUnion::CreateRequest(create("a", "", 0))).await;
    let mut log = Vec::new();
    let mut step = |name: &str, lines: Vec<String>| {
        log.push(format!("## {name}"));
        log.extend(lines);
    };
    step("auto id", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(WatchCreateRequest {
        watch_id: 7,
        ..create("b", "", 0)
    }))
    .await;
    step("client id 7", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(WatchCreateRequest {
        watch_id: 7,
        ..create("a", "", 0)
    }))
    .await;
    step("duplicate id", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(create("b", "a", 0)))
        .await;
    step("empty range", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(WatchCreateRequest {
        prev_kv: true,
        ..create("a", "", 2)
    }))
    .await;
    step("history with prev_kv", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        ..create("a", "c", 0)
    }))
    .await;
    step("no-put filter", s.drain(quiet).await);
    ctl(&ep, &["put", "a", "2"]); // 4
    ctl(&ep, &["del", "a"]); // 5
    step("live put and delete", s.drain(quiet).await);
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 0,
    }))
    .await;
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 99,
    }))
    .await;
    step("cancel 0 and unknown 99", s.drain(quiet).await);
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    step("progress request", s.drain(quiet).await);

    // Five 250 KB values: a catch-up response over them is larger than etcd's fragment
    // limit (--max-request-bytes + 512 KiB of gRPC allowance).
    let big = "v".repeat(250_000);
    for k in ["big1", "big2", "big3", "big4", "big5"] {
        ctl_input(&ep, &["put", k], &big); // 6..10
    }
    step("(writes while watching)", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(WatchCreateRequest {
        fragment: true,
        watch_id: 20,
        ..create("big", "bih", 6)
    }))
    .await;
    step("fragmented catch-up", s.drain(quiet).await);
    s.send(RequestUnion::CreateRequest(WatchCreateRequest {
        watch_id: 21,
        ..create("big", "bih", 6)
    }))
    .await;
    step("unfragmented catch-up", s.drain(quiet).await);

    let mut p = RawStream::open(
        &ep,
        RequestUnion::CreateRequest(WatchCreateRequest {
            progress_notify: true,
            ..create("quiet", "", 0)
        }),
    )
    .await;
    step(
        "periodic progress notification",
        p.collect(2, Duration::from_secs(3)).await,
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_stream_matches_real_etcd() {
    let etcd = etcd_bin().expect("the real etcd is needed: install Debian's etcd-server");
    let limit = Duration::from_secs(120);
    let ours = tokio::time::timeout(limit, raw_transcript(&setpoint_bin()))
        .await
        .expect("setpoint session finishes")
        .join("\n");
    let theirs = tokio::time::timeout(limit, raw_transcript(&etcd))
        .await
        .expect("etcd session finishes")
        .join("\n");
    assert_same_transcript(&ours, &theirs);
    assert!(ours.contains("fragment: true"), "{ours}");
    assert!(ours.contains("duplicate watch ID"), "{ours}");
    println!("{ours}");
}

/// A stream opened with etcd's `hasleader` metadata on a member that loses its quorum: how
/// it ends (status code and message), or "still open" after 20 s.
async fn leaderless_stream_end(binary: &std::path::Path) -> String {
    let mut cluster = Cluster::start(binary, 3, &[]);
    let leader = cluster.wait_leader();
    let survivor = (leader + 1) % 3;
    let ep = cluster.members[survivor].endpoint();
    let mut client = WatchClient::connect(format!("http://{ep}"))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create("k", "", 0))),
    })
    .await
    .expect("queue create");
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("hasleader", "true".parse().expect("metadata"));
    let mut stream = client.watch(req).await.expect("watch").into_inner();
    let created = stream.next().await.expect("created").expect("created");
    assert!(created.created);
    for i in 0..3 {
        if i != survivor {
            cluster.members[i].kill();
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
        Ok(Some(Err(status))) => format!("{:?}: {}", status.code(), status.message()),
        Ok(Some(Ok(resp))) => format!("unexpected response {resp:?}"),
        Ok(None) => "stream ended without a status".into(),
        Err(_) => "still open".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_leader_streams_end_when_the_member_loses_its_leader() {
    let etcd = etcd_bin().expect("the real etcd is needed: install Debian's etcd-server");
    let ours = leaderless_stream_end(&setpoint_bin()).await;
    let theirs = leaderless_stream_end(&etcd).await;
    assert_eq!(ours, theirs);
    assert_eq!(ours, "Unavailable: etcdserver: no leader");
}
