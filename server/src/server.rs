//! Wiring: opens storage, starts Raft, serves the peer service on the peer URLs and etcd's
//! client services on the client URLs, publishes this member's client URLs, and stops on
//! SIGINT/SIGTERM.
//!
//! This is the only place that knows how the pieces fit; it holds no logic of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::rt::WatchReceiver;
use setpoint_proto::etcdserverpb::cluster_server::ClusterServer;
use setpoint_proto::etcdserverpb::kv_server::KvServer;
use setpoint_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use setpoint_proto::etcdserverpb::watch_server::WatchServer;
use setpoint_proto::setpointpb::peer_server::PeerServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::api::cluster::ClusterService;
use crate::api::kv::KvService;
use crate::api::maintenance::MaintenanceService;
use crate::api::watch::{WatchService, WatchSettings};
use crate::api::Ctx;
use crate::api::{client_port, grpc_health, http};
use crate::apply::{Applier, Compactor};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::mvcc::KvStore;
use crate::raft::identity;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, MAX_PEER_MESSAGE, PEER_CONNECTION_WINDOW, PEER_STREAM_WINDOW};
use crate::raft::peer_service::PeerService;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::Raft;
use crate::raft::wal::WalOptions;
use crate::raft::{Command, Member, NodeId, RaftNode};
use crate::storage::RocksEngine;

/// gRPC framing allowance on top of --max-request-bytes, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Log entries kept behind a snapshot so a briefly lagging member catches up by log.
const SNAPSHOT_CATCHUP_ENTRIES: u64 = 5000;

/// A running member.
pub struct Server {
    pub ctx: Ctx,
    pub client_addrs: Vec<SocketAddr>,
    pub peer_addrs: Vec<SocketAddr>,
}

async fn bind_all(addrs: &[SocketAddr], what: &str) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("listen on {what} address {a}"))?;
        out.push(l);
    }
    Ok(out)
}

/// Starts a member and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Bind first: a port in use is a clear error before anything is opened.
    let peer_listeners = bind_all(&config.listen_peer, "peer").await?;
    let client_listeners = bind_all(&config.listen_client, "client").await?;
    let metrics_listeners = bind_all(&config.listen_metrics, "metrics").await?;
    let metrics = Metrics::new().context("metrics registry")?;

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let mut engine = RocksEngine::open(&config.data_dir.join("db")).context("open storage")?;
    if config.unsafe_no_fsync {
        tracing::warn!(
            "--unsafe-no-fsync: writes are acknowledged without fsync; a power loss will lose them"
        );
        engine = engine.without_fsync();
    }
    let engine = Arc::new(engine);
    let kv = Arc::new(KvStore::open(engine.clone()).context("open mvcc store")?);
    let compactor = Compactor::start(kv.clone())?;
    let applier = Arc::new(Applier::new(engine.clone(), kv.clone(), compactor.clone()));
    let log_opts = WalOptions {
        fsync: !config.unsafe_no_fsync,
        ..WalOptions::default()
    };
    let log_store = LogStore::open(engine.clone(), &config.data_dir.join("raft-log"), log_opts)
        .context("open the raft log")?;
    // Snapshots were once one serialized file; a member upgraded from then rebuilds them.
    match std::fs::remove_file(config.data_dir.join("snapshot.bin")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context("remove the old snapshot file")
        }
        _ => {}
    }
    let state_machine = StateMachine::open(
        engine.clone(),
        applier.clone(),
        &config.data_dir.join("snap"),
        &log_store,
    )
    .context("open snapshots")?;

    let token = &config.cluster_token;
    let members: BTreeMap<NodeId, Member> = config
        .initial_cluster
        .iter()
        .map(|m| {
            (
                identity::member_id(&m.peer_urls, token),
                Member {
                    name: m.name.clone(),
                    peer_urls: m.peer_urls.clone(),
                },
            )
        })
        .collect();
    let id = identity::member_id(&config.advertise_peer_urls, token);
    let cluster_id = identity::cluster_id(&config.initial_cluster, token);

    let election_ms = config.election_timeout.as_millis() as u64;
    let raft_config = openraft::Config {
        cluster_name: token.clone(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        // openraft makes a follower that heard from its leader wait out a leader lease of
        // `election_timeout_max`, then a random `[min, max)` election timeout, before it
        // campaigns (and refuses votes during the lease). `[et, 2et)` made that 3-4 x
        // --election-timeout of silence before a lost leader was replaced; `[et/2, et)` gives a
        // lease of `et` (etcd's check-quorum lease) and a campaign after 1.5-2 x, within etcd's
        // `[et, 2et)`. Reads use ReadIndex, never the lease, so this is liveness only.
        election_timeout_min: election_ms / 2,
        election_timeout_max: election_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        max_in_snapshot_log_to_keep: SNAPSHOT_CATCHUP_ENTRIES.min(config.snapshot_count),
        // A leader that restarts must not take up its old term again. Only the log is fsynced;
        // the committed index and the applies are not, so after a power loss it comes back with
        // both behind what it acknowledged, and as a restored leader it would hand out that
        // stale commit index as the read index (a power-loss jepsen run read values older than
        // acknowledged writes). As in etcd, a restarted member starts as a follower and a new
        // election's no-op entry re-establishes the commit index.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .context("raft configuration")?;
    let network = Network {
        append_timeout: config.election_timeout,
    };
    let syncs = log_store.clone();
    let raft = Raft::new(id, Arc::new(raft_config), network, log_store, state_machine)
        .await
        .context("start raft")?;
    tokio::spawn(defer_syncs_with_peers(raft.clone(), syncs));
    if !config.existing_cluster && !raft.is_initialized().await.context("raft state")? {
        // Every member initializes with the same membership; openraft accepts that.
        if let Err(e) = raft.initialize(members.clone()).await {
            tracing::info!(error = %e, "cluster already initialized");
        }
    }
    if members.len() == 1 && members.contains_key(&id) {
        // Alone in the cluster: no one to wait for, campaign now instead of after a timeout.
        let _ = raft.trigger().elect(false).await;
    }
    let request_timeout = Duration::from_secs(5) + 2 * config.election_timeout;
    let node = RaftNode::new(
        raft,
        id,
        cluster_id,
        request_timeout,
        metrics.forward.clone(),
    );
    tracing::info!(
        name = %config.name,
        member_id = %format!("{id:x}"),
        cluster_id = %format!("{cluster_id:x}"),
        version = env!("CARGO_PKG_VERSION"),
        "setpoint member starting"
    );

    let ctx = Ctx {
        node: node.clone(),
        kv,
        applier,
        engine,
        compactor,
        max_request_bytes: config.max_request_bytes,
        max_txn_ops: config.max_txn_ops,
        watch: WatchSettings {
            progress_notify_interval: config.watch_progress_notify_interval,
            fragment_bytes: config.max_request_bytes + GRPC_OVERHEAD_BYTES,
            leader_check_interval: config.election_timeout,
        },
        watch_metrics: metrics.watch.clone(),
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut http_tasks = Vec::new();
    for l in peer_listeners {
        let svc = PeerServer::new(PeerService::new(node.clone()))
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(
            tonic::transport::Server::builder()
                .initial_stream_window_size(PEER_STREAM_WINDOW)
                .initial_connection_window_size(PEER_CONNECTION_WINDOW)
                .add_service(svc)
                .serve_with_incoming_shutdown(peer_incoming(l), async move {
                    let _ = stop.wait_for(|s| *s).await;
                }),
        ));
    }
    let max_recv = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    for l in client_listeners {
        // gRPC and plain HTTP/1.1 share the port, as on etcd's (see api::client_port).
        let port = client_port::split(l).context("client port")?;
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(
                    KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_recv),
                )
                .add_service(
                    ClusterServer::new(ClusterService::new(ctx.clone()))
                        .max_decoding_message_size(max_recv),
                )
                .add_service(
                    MaintenanceServer::new(MaintenanceService::new(ctx.clone()))
                        .max_decoding_message_size(max_recv),
                )
                .add_service(
                    WatchServer::new(WatchService::new(ctx.clone()))
                        .max_decoding_message_size(max_recv),
                )
                .add_service(grpc_health::service(stop_rx.clone()))
                // Client connections go through AuthorityFix: etcd clients that send a
                // malformed :authority (etcdctl --cluster, clientv3 3.5.0) must work.
                .serve_with_incoming_shutdown(port.grpc, async move {
                    let _ = stop.wait_for(|s| *s).await;
                }),
        ));
        let router = http::client_router(ctx.clone(), metrics.clone());
        http_tasks.push(serve_http(port.http, router, stop_rx.clone(), "client"));
    }
    for l in metrics_listeners {
        let router = http::metrics_router(ctx.clone(), metrics.clone());
        http_tasks.push(serve_http(l, router, stop_rx.clone(), "metrics"));
    }
    tokio::spawn(publish(
        ctx.clone(),
        config.name.clone(),
        config.advertise_client_urls.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = node.raft.shutdown().await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    for t in http_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    Ok(())
}

/// Serves `router` over HTTP/1.1 on `listener` until `stop` turns true.
fn serve_http<L: axum::serve::Listener>(
    listener: L,
    router: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()>
where
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, endpoint = what, "HTTP endpoint stopped");
        }
    })
}

/// The peer port's connections, each with `TCP_NODELAY`. The server builder's `tcp_nodelay`
/// does not reach sockets from a given listener. Without it a follower's reply to a heartbeat
/// or an append could leave in two segments, the second held back by Nagle's algorithm until
/// the leader's delayed ACK (~40 ms), and a linearizable read on the leader waited for it
/// (21 ms on average on an idle 3-member cluster).
fn peer_incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Announces this member's name and client URLs through Raft (etcd's publish), once a leader
/// exists, unless the store already has exactly these.
async fn publish(ctx: Ctx, name: String, client_urls: Vec<String>) {
    let id = ctx.node.id;
    loop {
        if let Ok(attrs) = ctx.applier.member_attributes() {
            if let Some(a) = attrs.get(&id) {
                if a.name == name && a.client_urls == client_urls {
                    return;
                }
            }
        }
        let cmd = Command::Publish {
            member_id: id,
            name: name.clone(),
            client_urls: client_urls.clone(),
        };
        match ctx.node.propose(cmd).await {
            Ok(_) => tracing::info!(%name, ?client_urls, "published member attributes"),
            Err(e) => {
                tracing::debug!(error = %e, "publish not done yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Keeps the log store's fsyncs deferred (overlapping replication) while this member leads
/// other voters, and inline while it follows (it answers its leader only once synced: nothing to
/// overlap) or is alone (see `raft::log_store`).
async fn defer_syncs_with_peers(raft: Raft, log: LogStore<RocksEngine>) {
    // Server metrics change only with the leader, vote or membership (not with every write).
    let mut metrics = raft.server_metrics();
    loop {
        let leads_others = {
            let m = metrics.borrow_watched();
            // Learners do not count towards a commit: only other voters' fsyncs overlap.
            m.current_leader == Some(m.id) && m.membership_config.voter_ids().any(|v| v != m.id)
        };
        log.defer_syncs(leads_others);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn peer_connections_are_accepted_with_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut incoming = peer_incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
