//! A watcher whose client stops reading never holds up writes, costs bounded memory, shows
//! in the metrics, and — once it reads again — gets every event it missed, in order, from
//! storage.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, setpoint_bin, Cluster};
use futures::StreamExt;
use setpoint_client::proto::etcdserverpb::watch_client::WatchClient;
use setpoint_client::proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_client::proto::etcdserverpb::{
    PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use setpoint_client::{Client, ConnectOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const PUTS: i64 = 4000;
const VALUE: usize = 2048;

/// One metric's value, read off the blocking runtime threads.
async fn metric(port: u16, name: &'static str) -> i64 {
    tokio::task::spawn_blocking(move || common::metric(port, name))
        .await
        .expect("metrics fetch")
}

/// One member serving metrics; the metrics port.
fn one_member_with_metrics() -> (Cluster, u16) {
    let metrics_port = free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let cluster = Cluster::start(
        &setpoint_bin(),
        1,
        &["--listen-metrics-urls", metrics_url.as_str()],
    );
    (cluster, metrics_port)
}

/// Opens a raw watch stream with one watcher: the request sender (kept open), the response
/// stream, and the first revision the watcher will report.
async fn open_watch(
    ep: &str,
    create: WatchCreateRequest,
) -> (mpsc::Sender<WatchRequest>, Streaming<WatchResponse>, i64) {
    let (tx, rx) = mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .expect("queue create");
    let mut wc = WatchClient::connect(ep.to_string()).await.expect("connect");
    let mut responses = wc
        .watch(ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let created = responses.next().await.expect("created").expect("created");
    assert!(created.created);
    let start_rev = created.header.expect("header").revision + 1;
    (tx, responses, start_rev)
}

#[test]
fn a_stalled_watcher_never_stalls_writes_and_catches_up_later() {
    let (cluster, metrics_port) = one_member_with_metrics();
    let ep = cluster.members[0].client_url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (_requests, mut stalled, start_rev) = open_watch(
            &ep,
            WatchCreateRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                prev_kv: true,
                ..Default::default()
            },
        )
        .await;

        // The watcher now reads nothing while every put must still complete.
        let client = Client::connect(vec![ep.clone()], ConnectOptions::default())
            .await
            .expect("client");
        let value = vec![b'v'; VALUE];
        for i in 0..PUTS {
            client
                .put(PutRequest {
                    key: format!("k{}", i % 100).into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("put {i} failed while a watcher stalled: {e}"));
        }
        let queued = metric(metrics_port, "setpoint_watch_queued_response_bytes").await;
        let streams = metric(metrics_port, "etcd_debugging_mvcc_watch_stream_total").await;
        println!("stalled: queued {queued} bytes");
        assert_eq!(streams, 1);
        // Bounded: a few batches of responses of at most ~64 KiB each (revisions merged up
        // to that), far below the ~16 MB of events written meanwhile.
        assert!(
            queued < 1 << 20,
            "queued {queued} bytes for one stalled watcher"
        );

        // Reading again: every event, in order, once.
        let mut next = start_rev;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < start_rev + PUTS {
            assert!(Instant::now() < deadline, "caught up only to {next}");
            let resp = tokio::time::timeout(Duration::from_secs(10), stalled.next())
                .await
                .expect("a response within 10 s")
                .expect("stream open")
                .expect("response");
            for e in resp.events {
                let kv = e.kv.expect("kv");
                assert_eq!(
                    kv.mod_revision, next,
                    "events in order, no gaps, no duplicates"
                );
                assert_eq!(kv.value.len(), VALUE);
                if next - start_rev >= 100 {
                    assert!(e.prev_kv.is_some(), "prev_kv at {next}");
                }
                next += 1;
            }
        }
        let reads = metric(metrics_port, "setpoint_watch_catchup_reads_total").await;
        let losses = metric(metrics_port, "setpoint_watch_stream_losses_total").await;
        println!(
            "caught up through {} with {reads} storage reads after {losses} queue losses",
            next - 1
        );
        assert!(
            losses > 0,
            "the stalled stream should have fallen off the ring"
        );
        assert!(reads > 0, "the missed events came from storage");
    });
}

/// A watcher whose client fell behind (but not off the hub's queue) gets the revisions
/// queued meanwhile merged: one response carrying the events of several revisions, in
/// order, none missing — not one response per revision.
#[test]
fn revisions_queued_for_a_slow_client_arrive_merged() {
    // Enough large values to fill the client's HTTP/2 window (2 MB) and the stream's
    // outbound batches, so the stream's loop waits with the rest queued; together with the
    // small puts well under the hub's 128 queued revisions, so nothing is lost.
    const BIG: i64 = 60;
    const BIG_VALUE: usize = 60 * 1024;
    const SMALL: i64 = 50;
    let (cluster, metrics_port) = one_member_with_metrics();
    let ep = cluster.members[0].client_url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (_requests, mut behind, start_rev) = open_watch(
            &ep,
            WatchCreateRequest {
                key: b"m".to_vec(),
                range_end: b"n".to_vec(),
                ..Default::default()
            },
        )
        .await;

        let client = Client::connect(vec![ep.clone()], ConnectOptions::default())
            .await
            .expect("client");
        for i in 0..BIG + SMALL {
            let size = if i < BIG { BIG_VALUE } else { 8 };
            client
                .put(PutRequest {
                    key: format!("m{i}").into_bytes(),
                    value: vec![b'v'; size],
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
        }

        let (mut next, mut most_revisions) = (start_rev, 0usize);
        let deadline = Instant::now() + Duration::from_secs(30);
        while next < start_rev + BIG + SMALL {
            assert!(Instant::now() < deadline, "got events only up to {next}");
            let resp = tokio::time::timeout(Duration::from_secs(10), behind.next())
                .await
                .expect("a response within 10 s")
                .expect("stream open")
                .expect("response");
            let mut revisions = std::collections::BTreeSet::new();
            for e in resp.events {
                let kv = e.kv.expect("kv");
                assert_eq!(kv.mod_revision, next, "in order, no gaps, no duplicates");
                revisions.insert(kv.mod_revision);
                next += 1;
            }
            if let Some(&last) = revisions.last() {
                let header_rev = resp.header.expect("header").revision;
                assert!(
                    header_rev >= last,
                    "header {header_rev} before event {last}"
                );
            }
            most_revisions = most_revisions.max(revisions.len());
        }
        println!("at most {most_revisions} revisions in one response");
        assert!(
            most_revisions > 1,
            "every response carried a single revision: nothing was merged"
        );
        // The merge happened on the hub's queue, not in a catch-up from storage (which
        // batches revisions anyway).
        let losses = metric(metrics_port, "setpoint_watch_stream_losses_total").await;
        let reads = metric(metrics_port, "setpoint_watch_catchup_reads_total").await;
        assert_eq!((losses, reads), (0, 0), "the stream fell back to storage");
    });
}
