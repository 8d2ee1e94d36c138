//! The request driver shared by the loads: `--clients` tasks, spread over
//! the `--conns` connections, take operation numbers 0..total from a shared
//! counter and run them one at a time, optionally paced to a fixed overall
//! rate. It times each operation and counts failures; what an operation does
//! is up to the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use setpoint_client::Client;

use crate::report;

/// One operation's future; the error is already a message.
pub type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Operation number `i`, run on a client.
pub type Op = Arc<dyn Fn(Client, u64) -> BoxFut + Send + Sync>;

/// What a run measured.
pub struct LoadResult {
    /// Latency of every operation, failed ones included.
    pub hist: Histogram<u64>,
    /// Failed operations.
    pub errors: u64,
    /// The first failure, to show what went wrong.
    pub first_error: Option<String>,
    /// Wall time of the whole run.
    pub took: Duration,
}

/// Runs operations 0..`total` with `clients` concurrent tasks over `conns`.
/// With `rate` > 0, operation `i` does not start before `i / rate` seconds
/// into the run (a fixed overall rate, as far as the clients keep up).
pub async fn run(
    conns: &[Client],
    clients: usize,
    total: u64,
    rate: u64,
    op: Op,
) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(!conns.is_empty(), "no connections");
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients.max(1) {
        let client = conns[w % conns.len()].clone();
        let (next, errors, first_error, op) = (
            next.clone(),
            errors.clone(),
            first_error.clone(),
            op.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut hist = report::histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return hist;
                }
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                if let Err(e) = op(client.clone(), i).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = first_error.lock() {
                        first.get_or_insert(e);
                    }
                }
                report::record(&mut hist, t.elapsed());
            }
        }));
    }
    let mut hist = report::histogram();
    for t in tasks {
        hist.add(t.await?)?;
    }
    let took = start.elapsed();
    let first_error = first_error.lock().ok().and_then(|mut f| f.take());
    Ok(LoadResult {
        hist,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        took,
    })
}

impl LoadResult {
    /// The text report etcd's benchmark prints for a load.
    pub fn print_summary(&self) {
        crate::report::summary(
            &self.hist,
            self.took,
            self.errors,
            self.first_error.as_deref(),
        );
    }
}
