//! `setpoint-bench`: a load generator that speaks etcd's v3 API through
//! setpoint-client, so it measures etcd and Setpoint alike. Flags follow
//! etcd's benchmark tool. Loads: `put` (optionally with idle or stalled
//! watchers), `range`, `watch` (fan-out throughput) and `watch-latency`, each
//! with a text report; still to come: txn-put, lease, JSON/SVG output, a
//! progress bar and the side-by-side compare command. This file is the
//! command line; each load has its own module.

mod load;
mod put;
mod range;
mod report;
mod watch;
mod watchers;

use anyhow::Context;
use clap::{Parser, Subcommand};
use setpoint_client::{parse_endpoints, Client, ConnectOptions};

#[derive(Parser)]
#[command(name = "setpoint-bench", version, about = "etcd v3 API load generator")]
struct Cli {
    /// Comma-separated client endpoints.
    #[arg(long, global = true, default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// Number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Number of concurrent clients.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Puts keys.
    Put(put::PutArgs),
    /// Ranges over a key.
    Range(range::RangeArgs),
    /// Watchers on a few keys, then puts to them: time until every watcher
    /// got every event.
    Watch(watch::WatchArgs),
    /// Puts at a fixed rate to one watched key: delivery latency.
    WatchLatency(watch::WatchLatencyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let endpoints = parse_endpoints(&[cli.endpoints.as_str()]).context("--endpoints")?;
    let mut conns = Vec::new();
    for _ in 0..cli.conns.max(1) {
        conns.push(
            Client::connect(endpoints.clone(), ConnectOptions::default())
                .await
                .context("connect")?,
        );
    }
    match cli.cmd {
        Cmd::Put(args) => put::run(&endpoints, &conns, cli.clients, args).await,
        Cmd::Range(args) => range::run(&conns, cli.clients, args).await,
        Cmd::Watch(args) => watch::run_watch(&conns, cli.clients, args).await,
        Cmd::WatchLatency(args) => watch::run_watch_latency(&conns, cli.clients, args).await,
    }
}
