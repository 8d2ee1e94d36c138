//! The request driver shared by the loads: `--clients` tasks, spread over
//! the `--conns` connections, take operation numbers 0..total from a shared
//! counter and run them one at a time, optionally paced to a fixed overall
//! rate, with a progress bar. It times each operation, keeps the latencies
//! of the successful ones (as etcd's tool does, failures are counted apart,
//! by message) and when each completed; what an operation does is up to the
//! caller, and so is printing the result.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use setpoint_client::Client;

use crate::progress;
use crate::report;
use crate::setup::Setup;

/// One operation's future; the error is already a message.
pub type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Operation number `i` (third argument), run by client task `w` (second
/// argument, 0..clients) on that task's connection.
pub type Op = Arc<dyn Fn(Client, usize, u64) -> BoxFut + Send + Sync>;

/// Distinct error messages kept per run; the rest are counted as "other".
const MAX_ERROR_KINDS: usize = 20;

/// One successful operation, for the chart over time.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds from the start of the run to the operation's completion.
    pub at: f64,
    /// Its latency in microseconds.
    pub us: u64,
}

/// What a run measured.
pub struct LoadResult {
    /// Operations attempted.
    pub total: u64,
    /// Latency (µs) of every successful operation.
    pub hist: Histogram<u64>,
    /// Every successful operation, in no particular order.
    pub samples: Vec<Sample>,
    /// Failed operations.
    pub errors: u64,
    /// The first failure seen, to show what went wrong.
    pub first_error: Option<String>,
    /// Failures by message, most frequent first.
    pub error_kinds: Vec<(String, u64)>,
    /// Wall time of the whole run.
    pub took: Duration,
}

/// What one client task saw.
struct Worker {
    hist: Histogram<u64>,
    samples: Vec<Sample>,
    errors: HashMap<String, u64>,
    first_error: Option<(Instant, String)>,
}

/// Runs operations 0..`total` with `setup.clients` concurrent tasks over
/// `setup.conns`, client task `w` on connection `w mod conns`. With a
/// positive `rate`, operation `i` does not start before `i / rate` seconds
/// into the run (a fixed overall rate, as far as the clients keep up).
pub async fn run(
    setup: &Setup,
    what: &str,
    total: u64,
    rate: u64,
    op: Op,
) -> anyhow::Result<LoadResult> {
    let conns = &setup.conns;
    anyhow::ensure!(!conns.is_empty(), "no connections");
    let bar = progress::bar(total, what, setup.progress);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..setup.clients.max(1) {
        let client = conns[w % conns.len()].clone();
        let (next, op, bar) = (next.clone(), op.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut me = Worker {
                hist: report::histogram(),
                samples: Vec::new(),
                errors: HashMap::new(),
                first_error: None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return me;
                }
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                let result = op(client.clone(), w, i).await;
                let took = t.elapsed();
                match result {
                    Ok(()) => {
                        report::record(&mut me.hist, took);
                        me.samples.push(Sample {
                            at: start.elapsed().as_secs_f64(),
                            us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                        });
                    }
                    Err(e) => {
                        if me.first_error.is_none() {
                            me.first_error = Some((t, e.clone()));
                        }
                        if me.errors.len() < MAX_ERROR_KINDS || me.errors.contains_key(&e) {
                            *me.errors.entry(e).or_default() += 1;
                        } else {
                            *me.errors.entry("(other errors)".into()).or_default() += 1;
                        }
                    }
                }
                bar.inc(1);
            }
        }));
    }
    let mut hist = report::histogram();
    let mut samples = Vec::new();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    let mut first: Option<(Instant, String)> = None;
    for t in tasks {
        let w = t.await?;
        hist.add(w.hist)?;
        samples.extend(w.samples);
        for (e, n) in w.errors {
            *kinds.entry(e).or_default() += n;
        }
        if let Some((at, e)) = w.first_error {
            if first.as_ref().is_none_or(|(f, _)| at < *f) {
                first = Some((at, e));
            }
        }
    }
    let took = start.elapsed();
    bar.finish_and_clear();
    let mut error_kinds: Vec<(String, u64)> = kinds.into_iter().collect();
    error_kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(LoadResult {
        total,
        errors: error_kinds.iter().map(|(_, n)| n).sum(),
        hist,
        samples,
        first_error: first.map(|(_, e)| e),
        error_kinds,
        took,
    })
}
