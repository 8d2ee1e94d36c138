//! `setpoint-bench`: a load generator that speaks etcd's v3 API through
//! setpoint-client, so it measures etcd and Setpoint alike. Subcommands and
//! flags follow etcd's benchmark tool: `put` (optionally with idle or stalled
//! watchers), `range`, `txn-put`, `lease-keepalive`, `watch` (fan-out
//! throughput) and `watch-latency`. Each prints etcd's text report on stdout
//! and can write a JSON result (`--json`) and an SVG chart (`--svg`); the exit
//! status is non-zero when the load could not run or every operation failed.
//! This file is the command line; each load has its own module.

mod chart;
mod compare;
mod json;
mod lease;
mod load;
mod outcome;
mod progress;
mod put;
mod range;
mod report;
mod setup;
mod txn_put;
mod watch;
mod watchers;

use clap::{Parser, Subcommand};

use crate::setup::{GlobalArgs, Setup};

#[derive(Parser)]
#[command(name = "setpoint-bench", version, about = "etcd v3 API load generator")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Puts keys.
    Put(put::PutArgs),
    /// Ranges over a key or a key range.
    Range(range::RangeArgs),
    /// Txns of --txn-ops puts each.
    TxnPut(txn_put::TxnPutArgs),
    /// One lease per client, then keep-alive round trips on its stream.
    LeaseKeepalive(lease::LeaseKeepaliveArgs),
    /// Watchers on a few keys, then puts to them: time until every watcher
    /// got every event.
    Watch(watch::WatchArgs),
    /// Puts at a fixed rate to one watched key: delivery latency.
    WatchLatency(watch::WatchLatencyArgs),
    /// etcd and Setpoint side by side: rounds of fresh clusters, the same
    /// loads, medians and ratios in a table and a Markdown report.
    Compare(compare::CompareArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let global = cli.global;
    let setup = || Setup::connect(&global);
    match cli.cmd {
        Cmd::Put(args) => put::run(&setup().await?, args).await,
        Cmd::Range(args) => range::run(&setup().await?, args).await,
        Cmd::TxnPut(args) => txn_put::run(&setup().await?, args).await,
        Cmd::LeaseKeepalive(args) => lease::run(&setup().await?, args).await,
        Cmd::Watch(args) => watch::run_watch(&setup().await?, args).await,
        Cmd::WatchLatency(args) => watch::run_watch_latency(&setup().await?, args).await,
        Cmd::Compare(args) => compare::run(args).await,
    }
}
