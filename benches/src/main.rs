//! `setpoint-bench`: a load generator that speaks etcd's v3 API through setpoint-client, so it
//! measures etcd and Setpoint alike. Flags follow etcd's benchmark tool. This first cut has
//! the `put` and `range` loads and a text report; issue 5 adds the rest (txn-put, watch,
//! lease, JSON/SVG output, progress bar, the side-by-side compare command).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use setpoint_client::proto::etcdserverpb::{PutRequest, RangeRequest};
use setpoint_client::{Client, ConnectOptions};

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
    Put(PutArgs),
    /// Ranges over a key.
    Range(RangeArgs),
}

#[derive(Args)]
struct PutArgs {
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    #[arg(long)]
    sequential_keys: bool,
}

#[derive(Args)]
struct RangeArgs {
    key: String,
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// l (linearizable) or s (serializable).
    #[arg(long, default_value = "l")]
    consistency: String,
}

fn key_for(i: u64, size: usize, space: u64, sequential: bool) -> Vec<u8> {
    let n = if sequential {
        i % space.max(1)
    } else {
        // A cheap, deterministic scatter over the key space.
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % space.max(1)
    };
    let mut k = format!("{n:0width$}", width = size).into_bytes();
    k.truncate(size.max(1));
    k
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let endpoints: Vec<String> = cli.endpoints.split(',').map(str::to_string).collect();
    let mut conns = Vec::new();
    for _ in 0..cli.conns.max(1) {
        conns.push(
            Client::connect(endpoints.clone(), ConnectOptions::default())
                .await
                .context("connect")?,
        );
    }
    let (total, op): (u64, Arc<dyn Fn(Client, u64) -> BoxFut + Send + Sync>) = match cli.cmd {
        Cmd::Put(a) => {
            let value = vec![b'v'; a.val_size];
            let (ks, space, seq) = (a.key_size, a.key_space_size, a.sequential_keys);
            (
                a.total,
                Arc::new(move |c: Client, i: u64| {
                    let req = PutRequest {
                        key: key_for(i, ks, space, seq),
                        value: value.clone(),
                        ..Default::default()
                    };
                    Box::pin(async move { c.put(req).await.map(|_| ()).map_err(|e| e.to_string()) })
                        as BoxFut
                }),
            )
        }
        Cmd::Range(a) => {
            let serializable = a.consistency == "s";
            let key = a.key.into_bytes();
            (
                a.total,
                Arc::new(move |c: Client, _i: u64| {
                    let req = RangeRequest {
                        key: key.clone(),
                        serializable,
                        ..Default::default()
                    };
                    Box::pin(
                        async move { c.range(req).await.map(|_| ()).map_err(|e| e.to_string()) },
                    ) as BoxFut
                }),
            )
        }
    };
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..cli.clients.max(1) {
        let client = conns[w % conns.len()].clone();
        let (next, errors, op) = (next.clone(), errors.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram bounds");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return hist;
                }
                let t = Instant::now();
                if op(client.clone(), i).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let _ = hist.record(t.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram bounds");
    for t in tasks {
        hist.add(t.await?)?;
    }
    report(&hist, start.elapsed(), errors.load(Ordering::Relaxed));
    Ok(())
}

type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

fn report(h: &Histogram<u64>, took: Duration, errors: u64) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!("Summary:");
    println!("  Total:\t{:.4} secs.", took.as_secs_f64());
    println!("  Slowest:\t{:.4} ms.", ms(h.max()));
    println!("  Fastest:\t{:.4} ms.", ms(h.min()));
    println!("  Average:\t{:.4} ms.", h.mean() / 1000.0);
    println!("  Stddev:\t{:.4} ms.", h.stdev() / 1000.0);
    println!(
        "  Requests/sec:\t{:.1}",
        h.len() as f64 / took.as_secs_f64()
    );
    println!("  Errors:\t{errors}");
    for q in [50.0, 90.0, 99.0, 99.9] {
        println!("  p{q}:\t{:.4} ms.", ms(h.value_at_quantile(q / 100.0)));
    }
}
