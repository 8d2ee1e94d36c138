//! The `lease-keepalive` load, as etcd's `benchmark lease-keepalive`: each
//! client grants one lease (TTL 100 s) and opens one LeaseKeepAlive stream
//! before the clock starts, then the `--total` operations are keep-alive
//! round trips on those streams (send the lease id, wait for its answer).
//! A client whose grant failed fails each of its operations with the grant's
//! error, so a server without leases (Setpoint today: Unimplemented) shows
//! up as a report of errors and a failing exit status. The leases are
//! revoked at the end. Uses the raw generated Lease client: no retries.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use futures::channel::mpsc;
use serde::Serialize;
use setpoint_client::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use setpoint_client::{Client, ClientError};
use tokio::sync::Mutex;
use tonic::Streaming;

use crate::load::{self, BoxFut};
use crate::outcome::Outcome;
use crate::report;
use crate::setup::Setup;

/// TTL of the granted leases, as etcd's tool.
const TTL: i64 = 100;
/// Bound on one grant, stream open or round trip.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseKeepaliveArgs {
    /// Total number of keep-alive round trips.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
}

/// An open keep-alive stream.
struct Stream {
    /// Kept so the request side stays open.
    requests: mpsc::UnboundedSender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

/// One client's lease and stream.
struct Session {
    /// The granted lease, or why the grant failed.
    lease: Result<i64, String>,
    /// None until opened, or after it broke (reopened by the next op).
    stream: Option<Stream>,
}

/// A status as the client shows it, without a dangling colon when the
/// server sent no message (as for Unimplemented).
fn status_text(status: tonic::Status) -> String {
    if status.message().is_empty() {
        format!("grpc status {:?}", status.code())
    } else {
        ClientError::Status(status).to_string()
    }
}

/// Grants a lease on `client`.
async fn grant(client: &Client) -> Result<i64, String> {
    let mut lease = client.lease_client();
    let call = lease.lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 });
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            if resp.error.is_empty() && resp.id != 0 {
                Ok(resp.id)
            } else {
                Err(format!("lease grant refused: {:?}", resp.error))
            }
        }
        Ok(Err(status)) => Err(format!("lease grant: {}", status_text(status))),
        Err(_) => Err(format!("lease grant: no answer in {TIMEOUT:?}")),
    }
}

/// Sends one keep-alive for `id` on `stream` and waits for its answer.
async fn round_trip(stream: &mut Stream, id: i64) -> Result<(), String> {
    stream
        .requests
        .unbounded_send(LeaseKeepAliveRequest { id })
        .map_err(|_| "keep-alive stream closed".to_string())?;
    match tokio::time::timeout(TIMEOUT, stream.responses.message()).await {
        Ok(Ok(Some(resp))) if resp.ttl > 0 => Ok(()),
        Ok(Ok(Some(_))) => Err(format!("lease {id:x} expired or not found (TTL 0)")),
        Ok(Ok(None)) => Err("keep-alive stream closed by the server".to_string()),
        Ok(Err(status)) => Err(format!("lease keep-alive: {}", status_text(status))),
        Err(_) => Err(format!("lease keep-alive: no answer in {TIMEOUT:?}")),
    }
}

/// Opens a keep-alive stream for `id` with a first round trip (a server may
/// hold the response headers until it has an answer to send).
async fn open(client: &Client, id: i64) -> Result<Stream, String> {
    let (requests, rx) = mpsc::unbounded();
    requests
        .unbounded_send(LeaseKeepAliveRequest { id })
        .map_err(|_| "queue keep-alive".to_string())?;
    let mut lease = client.lease_client();
    let call = lease.lease_keep_alive(rx);
    let responses = match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => return Err(format!("lease keep-alive: {}", status_text(status))),
        Err(_) => return Err(format!("lease keep-alive: no stream in {TIMEOUT:?}")),
    };
    let mut stream = Stream {
        requests,
        responses,
    };
    match tokio::time::timeout(TIMEOUT, stream.responses.message()).await {
        Ok(Ok(Some(resp))) if resp.ttl > 0 => Ok(stream),
        Ok(Ok(Some(_))) => Err(format!("lease {id:x} expired or not found (TTL 0)")),
        Ok(Ok(None)) => Err("keep-alive stream closed by the server".to_string()),
        Ok(Err(status)) => Err(format!("lease keep-alive: {}", status_text(status))),
        Err(_) => Err(format!("lease keep-alive: no answer in {TIMEOUT:?}")),
    }
}

impl Session {
    async fn start(client: &Client) -> Session {
        let lease = grant(client).await;
        let stream = match &lease {
            Ok(id) => open(client, *id).await.ok(),
            Err(_) => None,
        };
        Session { lease, stream }
    }

    /// One timed operation: a round trip, reopening the stream first if it
    /// broke earlier. A broken stream is dropped for the next op to reopen.
    async fn keep_alive(&mut self, client: &Client) -> Result<(), String> {
        let id = self.lease.clone()?;
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => open(client, id).await?,
        };
        round_trip(&mut stream, id).await?;
        self.stream = Some(stream);
        Ok(())
    }
}

pub async fn run(setup: &Setup, args: LeaseKeepaliveArgs) -> anyhow::Result<()> {
    let params = setup.params(&args);
    let conns = &setup.conns;
    if conns.is_empty() {
        bail!("no connections");
    }
    let clients: Vec<Client> = (0..setup.clients)
        .map(|w| conns[w % conns.len()].clone())
        .collect();
    let sessions: Vec<Session> =
        futures::future::join_all(clients.iter().map(Session::start)).await;
    let granted = sessions.iter().filter(|s| s.lease.is_ok()).count();
    println!(
        "Leases: {granted} of {} granted (TTL {TTL} s), one per client.",
        sessions.len()
    );
    if let Some(Err(e)) = sessions.iter().map(|s| &s.lease).find(|l| l.is_err()) {
        println!("  Grant failed: {e}");
    }
    let sessions: Arc<Vec<Mutex<Session>>> =
        Arc::new(sessions.into_iter().map(Mutex::new).collect());

    let all = sessions.clone();
    let op = Arc::new(move |c: Client, w: usize, _i: u64| {
        let all = all.clone();
        Box::pin(async move {
            match all.get(w) {
                Some(s) => s.lock().await.keep_alive(&c).await,
                None => Err(format!("no lease session for client {w}")),
            }
        }) as BoxFut
    });
    let result = load::run(setup, "lease-keepalive", args.total, 0, op).await?;

    // Best effort: the leases would expire by themselves anyway.
    let revokes = clients
        .iter()
        .zip(sessions.iter())
        .map(|(c, s)| async move {
            let id = s.lock().await.lease.clone();
            if let Ok(id) = id {
                let mut lease = c.lease_client();
                let call = lease.lease_revoke(LeaseRevokeRequest { id });
                let _ = tokio::time::timeout(TIMEOUT, call).await;
            }
        });
    futures::future::join_all(revokes).await;

    let out = Outcome {
        load: "lease-keepalive",
        params,
        result,
        events: None,
    };
    report::requests(&out);
    out.publish(setup)
}
