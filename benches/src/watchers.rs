//! Raw Watch streams for the loads, on the generated client straight from
//! `Client::watch_client()`: no resume and no deduplication, because a bench
//! watcher that loses its stream is a failure to report, not to hide. Here:
//! opening a stream that carries a batch of watchers and waiting until the
//! server confirmed each (Created), idle watchers that are kept polled in the
//! background while a load runs, and stalled watchers whose responses are
//! never read. Measuring what arrives is up to the loads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::channel::mpsc;
use setpoint_client::proto::etcdserverpb::watch_request::RequestUnion;
use setpoint_client::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use setpoint_client::{Client, ConnectOptions};
use tokio::task::JoinHandle;
use tonic::Streaming;

/// One Watch stream and the watchers created on it.
pub struct RawStream {
    /// Kept so the request side stays open (etcd and Setpoint may treat a
    /// half-closed stream as finished).
    pub requests: mpsc::UnboundedSender<WatchRequest>,
    pub responses: Streaming<WatchResponse>,
    /// Watch ids, in the order of the create requests.
    pub ids: Vec<i64>,
}

/// A create request for `key`..`range_end` from the current revision.
pub fn create(key: Vec<u8>, range_end: Vec<u8>, prev_kv: bool) -> WatchCreateRequest {
    WatchCreateRequest {
        key,
        range_end,
        prev_kv,
        ..Default::default()
    }
}

/// Opens a stream on `client`'s current endpoint, sends every create
/// request, and waits until each was confirmed. A refused create or a stream
/// ending early is an error. Not bounded in time: callers wrap it.
pub async fn open(client: &Client, creates: Vec<WatchCreateRequest>) -> anyhow::Result<RawStream> {
    let want = creates.len();
    let (requests, rx) = mpsc::unbounded();
    // Queue the creates before the call: a server may hold the response
    // headers until it has something to answer.
    for c in creates {
        requests
            .unbounded_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(c)),
            })
            .context("queue watch create")?;
    }
    let mut responses = client
        .watch_client()
        .watch(rx)
        .await
        .context("open watch stream")?
        .into_inner();
    let mut ids = Vec::with_capacity(want);
    while ids.len() < want {
        let Some(resp) = responses
            .message()
            .await
            .context("watch stream failed during setup")?
        else {
            bail!(
                "watch stream closed after {} of {want} watchers were created",
                ids.len()
            );
        };
        if resp.created {
            if resp.canceled {
                bail!(
                    "watch create refused: {:?} (compact revision {})",
                    resp.cancel_reason,
                    resp.compact_revision
                );
            }
            ids.push(resp.watch_id);
        }
    }
    Ok(RawStream {
        requests,
        responses,
        ids,
    })
}

/// Opens every stream concurrently, failing if they are not all ready
/// within `timeout`. `plan` is (connection, create requests) per stream.
pub async fn open_all(
    plan: Vec<(Client, Vec<WatchCreateRequest>)>,
    timeout: Duration,
) -> anyhow::Result<Vec<RawStream>> {
    let n = plan.len();
    let opens = plan
        .into_iter()
        .map(|(client, creates)| async move { open(&client, creates).await });
    match tokio::time::timeout(timeout, futures::future::try_join_all(opens)).await {
        Ok(streams) => streams,
        Err(_) => bail!("{n} watch streams were not all created within {timeout:?}"),
    }
}

/// Idle watchers: each on its own key that the load never writes, on
/// streams that are read (and should stay silent) in the background until
/// this is dropped.
pub struct IdleWatchers {
    pub watchers: usize,
    pub streams: usize,
    pub setup: Duration,
    tasks: Vec<JoinHandle<()>>,
    responses: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
}

impl IdleWatchers {
    /// Creates `watchers` watchers on keys `idle/<i>`, watcher `i` on stream
    /// `i % streams`, stream `s` on connection `s % conns.len()`, and waits
    /// for every confirmation.
    pub async fn start(
        conns: &[Client],
        watchers: usize,
        streams: usize,
        timeout: Duration,
    ) -> anyhow::Result<IdleWatchers> {
        anyhow::ensure!(!conns.is_empty(), "no connections");
        let streams = streams.clamp(1, watchers.max(1));
        let began = Instant::now();
        let plan = (0..streams)
            .map(|s| {
                let creates = (s..watchers)
                    .step_by(streams)
                    .map(|i| create(format!("idle/{i}").into_bytes(), Vec::new(), false))
                    .collect();
                (conns[s % conns.len()].clone(), creates)
            })
            .collect();
        let opened = open_all(plan, timeout)
            .await
            .context("creating idle watchers")?;
        let setup = began.elapsed();
        let responses = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let tasks = opened
            .into_iter()
            .map(|mut stream| {
                let (responses, lost) = (responses.clone(), lost.clone());
                tokio::spawn(async move {
                    let _requests = stream.requests;
                    loop {
                        match stream.responses.message().await {
                            Ok(Some(_)) => {
                                responses.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(None) | Err(_) => {
                                lost.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(IdleWatchers {
            watchers,
            streams,
            setup,
            tasks,
            responses,
            lost,
        })
    }

    /// Responses the idle watchers got (none expected).
    pub fn responses(&self) -> u64 {
        self.responses.load(Ordering::Relaxed)
    }

    /// Streams that ended or failed.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for IdleWatchers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Stalled watchers: each on its own connection, watching the whole key
/// space with previous values, and never read after Created, so the
/// server's send window fills and the watcher falls behind. Held open until
/// dropped.
pub struct StalledWatchers {
    pub watchers: usize,
    pub setup: Duration,
    _streams: Vec<RawStream>,
    _clients: Vec<Client>,
}

impl StalledWatchers {
    /// Creates `watchers` stalled watchers. Each gets a connection of its
    /// own so a full flow-control window cannot hold up the load's requests
    /// in this process: whatever slows down is on the server.
    pub async fn start(
        endpoints: &[String],
        watchers: usize,
        timeout: Duration,
    ) -> anyhow::Result<StalledWatchers> {
        let began = Instant::now();
        let mut clients = Vec::with_capacity(watchers);
        for _ in 0..watchers {
            clients.push(
                Client::connect(endpoints.to_vec(), ConnectOptions::default())
                    .await
                    .context("connect for a stalled watcher")?,
            );
        }
        let plan = clients
            .iter()
            .map(|c| (c.clone(), vec![create(vec![0], vec![0], true)]))
            .collect();
        let streams = open_all(plan, timeout)
            .await
            .context("creating stalled watchers")?;
        Ok(StalledWatchers {
            watchers,
            setup: began.elapsed(),
            _streams: streams,
            _clients: clients,
        })
    }
}
