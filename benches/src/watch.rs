//! The watch delivery loads, after etcd's `benchmark watch` and
//! `watch-latency`: watchers on a few keys are created and confirmed first,
//! then puts to those keys are sent, each value carrying the put's sequence
//! number, and every watcher must receive every event. Each event's delivery
//! latency is the time from its put being sent to its arrival at the watcher.
//! `watch` reports how long the whole fan-out took (events/s) and the
//! latencies; `watch-latency` puts at a fixed rate and reports the latency
//! distribution. Both give up after `--wait-timeout`, printing what is
//! missing, and fail on duplicates, cancels and lost streams. For `--json`
//! and `--svg` the puts count as the operations and the events' delivery
//! latencies as the latencies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use setpoint_client::proto::etcdserverpb::PutRequest;
use setpoint_client::Client;

use crate::load::{self, BoxFut, LoadResult, Sample};
use crate::outcome::Outcome;
use crate::report;
use crate::setup::Setup;
use crate::watchers::{self, RawStream};

#[derive(Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WatchArgs {
    /// Watchers in all.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Watch streams the watchers are spread over (round-robin).
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Keys watched: watcher i watches key i mod this, put i writes it.
    #[arg(long, default_value_t = 1)]
    watched_key_total: usize,
    /// Puts to the watched keys, by the --clients clients.
    #[arg(long, default_value_t = 1000)]
    put_total: u64,
    /// Puts per second; 0 means as fast as the clients go.
    #[arg(long, default_value_t = 0)]
    put_rate: u64,
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// At least 8: the value starts with the put's sequence number.
    #[arg(long, default_value_t = 32)]
    val_size: usize,
    /// Seconds to wait for the watchers to be created, and for the events
    /// after the last put.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
}

#[derive(Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WatchLatencyArgs {
    /// Puts to the watched key.
    #[arg(long, default_value_t = 1000)]
    put_total: u64,
    /// Puts per second.
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    /// Watchers, all on the one key.
    #[arg(long, default_value_t = 10)]
    watchers: usize,
    /// Watch streams the watchers are spread over (round-robin).
    #[arg(long, default_value_t = 10)]
    streams: usize,
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// At least 8: the value starts with the put's sequence number.
    #[arg(long, default_value_t = 32)]
    val_size: usize,
    /// Seconds to wait for the watchers to be created, and for the events
    /// after the last put.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
}

/// The shape of one fan-out run.
struct Fanout {
    watchers: usize,
    streams: usize,
    keys: usize,
    put_total: u64,
    put_rate: u64,
    key_size: usize,
    val_size: usize,
    timeout: Duration,
}

/// What a fan-out run measured.
struct Delivery {
    received: u64,
    expected: u64,
    /// From the first put's start to the last event's arrival.
    elapsed: Duration,
    latency: Histogram<u64>,
    /// Each event: arrival (seconds after the first put) and latency.
    samples: Vec<Sample>,
}

impl Delivery {
    /// The run as a load outcome: the puts as operations (all succeeded,
    /// or the run would have failed), the deliveries as latencies.
    fn outcome(self, load: &'static str, params: serde_json::Value, puts: u64) -> Outcome {
        Outcome {
            load,
            params,
            result: LoadResult {
                total: puts,
                hist: self.latency,
                samples: self.samples,
                errors: 0,
                first_error: None,
                error_kinds: Vec::new(),
                took: self.elapsed,
            },
            events: Some(self.received),
        }
    }
}

pub async fn run_watch(setup: &Setup, args: WatchArgs) -> anyhow::Result<()> {
    let params = setup.params(&args);
    let d = fanout(
        setup,
        Fanout {
            watchers: args.watchers,
            streams: args.streams,
            keys: args.watched_key_total,
            put_total: args.put_total,
            put_rate: args.put_rate,
            key_size: args.key_size,
            val_size: args.val_size,
            timeout: Duration::from_secs(args.wait_timeout),
        },
    )
    .await?;
    let secs = d.elapsed.as_secs_f64();
    println!();
    println!("Watch events:");
    println!("  Received:\t{}", d.received);
    println!("  Expected:\t{}", d.expected);
    println!("  Elapsed:\t{secs:.4} secs.");
    println!("  Events/sec:\t{:.1}", d.received as f64 / secs);
    report::latency("Delivery latency (put sent to event received)", &d.latency);
    d.outcome("watch", params, args.put_total).publish(setup)
}

pub async fn run_watch_latency(setup: &Setup, args: WatchLatencyArgs) -> anyhow::Result<()> {
    let params = setup.params(&args);
    let d = fanout(
        setup,
        Fanout {
            watchers: args.watchers,
            streams: args.streams,
            keys: 1,
            put_total: args.put_total,
            put_rate: args.put_rate,
            key_size: args.key_size,
            val_size: args.val_size,
            timeout: Duration::from_secs(args.wait_timeout),
        },
    )
    .await?;
    println!();
    println!(
        "Watch events: {} received of {} expected.",
        d.received, d.expected
    );
    report::latency("Delivery latency (put sent to event received)", &d.latency);
    d.outcome("watch-latency", params, args.put_total)
        .publish(setup)
}

/// Key `k` of the watched keys, padded to `size`.
fn watched_key(k: usize, size: usize) -> anyhow::Result<Vec<u8>> {
    let mut key = format!("watch/{k}/").into_bytes();
    ensure!(
        key.len() <= size,
        "--key-size {size} is too small for watched key {k} ({} bytes)",
        key.len()
    );
    key.resize(size, b'-');
    Ok(key)
}

/// The value of put `seq`: its number, big-endian, then padding.
fn value_for(seq: u64, size: usize) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.resize(size.max(8), b'v');
    v
}

fn seq_of(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

async fn fanout(setup: &Setup, f: Fanout) -> anyhow::Result<Delivery> {
    let (conns, clients) = (&setup.conns, setup.clients);
    ensure!(
        f.val_size >= 8,
        "--val-size must be at least 8: the value carries the put's sequence number"
    );
    ensure!(
        f.watchers > 0 && f.keys > 0 && f.put_total > 0,
        "watchers, keys and puts must be positive"
    );
    ensure!(!conns.is_empty(), "no connections");
    let keys = (0..f.keys)
        .map(|k| watched_key(k, f.key_size))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (p, nk) = (f.put_total, f.keys as u64);
    let puts_to = |k: usize| p / nk + u64::from((k as u64) < p % nk);
    let streams = f.streams.clamp(1, f.watchers);

    // Watcher i is on stream i % streams and watches key i % keys.
    let plan = (0..streams)
        .map(|s| {
            let creates = (s..f.watchers)
                .step_by(streams)
                .map(|i| watchers::create(keys[i % f.keys].clone(), Vec::new(), false))
                .collect();
            (conns[s % conns.len()].clone(), creates)
        })
        .collect();
    let expected_on = |s: usize| -> Vec<u64> {
        (s..f.watchers)
            .step_by(streams)
            .map(|i| puts_to(i % f.keys))
            .collect()
    };
    let began = Instant::now();
    let opened = watchers::open_all(plan, f.timeout)
        .await
        .context("creating watchers")?;
    println!(
        "Watchers: {} on {} streams watching {} key(s), created and confirmed in {:.3} secs.",
        f.watchers,
        streams,
        f.keys,
        began.elapsed().as_secs_f64()
    );

    let base = Instant::now();
    // Nanoseconds since `base` + 1 at which put i was sent; 0 = not yet.
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..p).map(|_| AtomicU64::new(0)).collect());
    let progress: Vec<Arc<AtomicU64>> = (0..streams).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let expected_per_stream: Vec<u64> = (0..streams).map(|s| expected_on(s).iter().sum()).collect();
    let expected: u64 = expected_per_stream.iter().sum();
    let mut tasks: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(s, stream)| {
            tokio::spawn(receive(
                stream,
                expected_on(s),
                sent_at.clone(),
                base,
                progress[s].clone(),
            ))
        })
        .collect();

    let val_size = f.val_size;
    let put_sent = sent_at.clone();
    let op = Arc::new(move |c: Client, _w: usize, i: u64| {
        let req = PutRequest {
            key: keys[(i % nk) as usize].clone(),
            value: value_for(i, val_size),
            ..Default::default()
        };
        let nanos = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        if let Some(slot) = put_sent.get(i as usize) {
            slot.store(nanos, Ordering::Release);
        }
        Box::pin(async move { c.put(req).await.map(|_| ()).map_err(|e| e.to_string()) }) as BoxFut
    });
    let put_start = Instant::now();
    let puts = load::run(setup, "watch puts", p, f.put_rate, op).await?;
    let rate = match f.put_rate {
        0 => "unlimited".to_string(),
        r => format!("{r}/s"),
    };
    println!(
        "Puts: {p} to {} key(s) by {} client(s), rate {rate}: {:.4} secs., {:.1} puts/sec, average {:.4} ms.",
        f.keys,
        clients.max(1),
        puts.took.as_secs_f64(),
        p as f64 / puts.took.as_secs_f64(),
        puts.hist.mean() / 1000.0
    );
    if puts.errors > 0 {
        for t in &tasks {
            t.abort();
        }
        bail!(
            "{} of {p} puts failed (first: {}); their events cannot be accounted for",
            puts.errors,
            puts.first_error.as_deref().unwrap_or("?")
        );
    }

    let deadline = tokio::time::Instant::now() + f.timeout;
    let mut latency = report::histogram();
    let mut samples = Vec::new();
    let mut last = put_start;
    for task in tasks.iter_mut() {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(joined) => {
                let (h, s, done) = joined.context("watch receiver panicked")??;
                latency.add(h)?;
                samples.extend(s);
                last = last.max(done);
            }
            Err(_) => {
                for t in &tasks {
                    t.abort();
                }
                let got: Vec<u64> = progress.iter().map(|a| a.load(Ordering::Relaxed)).collect();
                let received: u64 = got.iter().sum();
                println!(
                    "Timed out {:?} after the last put: received {received} of {expected} events.",
                    f.timeout
                );
                let short = (0..streams).filter(|&s| got[s] < expected_per_stream[s]);
                for s in short.clone().take(10) {
                    println!(
                        "  stream {s}: {} of {} events ({} missing)",
                        got[s],
                        expected_per_stream[s],
                        expected_per_stream[s] - got[s]
                    );
                }
                bail!(
                    "{} watch events missing on {} of {streams} streams",
                    expected - received,
                    short.count()
                );
            }
        }
    }
    Ok(Delivery {
        received: progress.iter().map(|a| a.load(Ordering::Relaxed)).sum(),
        expected,
        elapsed: last.saturating_duration_since(put_start),
        latency,
        samples,
    })
}

/// Reads one stream until each of its watchers got `expected[j]` events
/// (watcher j is the j-th create of the stream). Returns the delivery
/// latencies, each event's arrival (seconds after `base`) and latency, and
/// when the last event arrived.
async fn receive(
    mut stream: RawStream,
    expected: Vec<u64>,
    sent_at: Arc<Vec<AtomicU64>>,
    base: Instant,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<(Histogram<u64>, Vec<Sample>, Instant)> {
    let index: HashMap<i64, usize> = stream
        .ids
        .iter()
        .enumerate()
        .map(|(j, &id)| (id, j))
        .collect();
    let mut got = vec![0u64; expected.len()];
    let mut remaining: u64 = expected.iter().sum();
    let mut hist = report::histogram();
    let mut samples = Vec::new();
    let mut last = Instant::now();
    while remaining > 0 {
        let resp = match stream.responses.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => bail!("watch stream closed with {remaining} events missing"),
            Err(status) => bail!("watch stream failed with {remaining} events missing: {status}"),
        };
        let now = Instant::now();
        if resp.canceled {
            bail!(
                "watch {} canceled: {:?} (compact revision {})",
                resp.watch_id,
                resp.cancel_reason,
                resp.compact_revision
            );
        }
        // Progress notifications and the like.
        let Some(&j) = index.get(&resp.watch_id) else {
            continue;
        };
        for ev in &resp.events {
            let seq = ev
                .kv
                .as_ref()
                .and_then(|kv| seq_of(&kv.value))
                .ok_or_else(|| anyhow!("an event without a sequence number in its value"))?;
            let sent = sent_at
                .get(seq as usize)
                .map(|a| a.load(Ordering::Acquire))
                .filter(|&t| t > 0)
                .ok_or_else(|| anyhow!("an event for put {seq}, which was never sent"))?;
            let took = now.saturating_duration_since(base + Duration::from_nanos(sent - 1));
            report::record(&mut hist, took);
            samples.push(Sample {
                at: now.saturating_duration_since(base).as_secs_f64(),
                us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            });
            got[j] += 1;
            ensure!(
                got[j] <= expected[j],
                "watch {} got more than the {} events of its key: duplicates",
                resp.watch_id,
                expected[j]
            );
            remaining -= 1;
            progress.fetch_add(1, Ordering::Relaxed);
        }
        last = now;
    }
    Ok((hist, samples, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip() {
        for seq in [0, 1, 999, u64::MAX] {
            let v = value_for(seq, 32);
            assert_eq!(v.len(), 32);
            assert_eq!(seq_of(&v), Some(seq));
        }
        assert_eq!(value_for(7, 3).len(), 8);
        assert_eq!(seq_of(b"short"), None);
    }

    #[test]
    fn watched_keys_are_distinct_and_sized() {
        let a = watched_key(1, 32).expect("fits");
        let b = watched_key(10, 32).expect("fits");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(watched_key(12345, 8).is_err());
    }
}
