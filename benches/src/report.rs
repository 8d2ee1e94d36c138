//! The text report, in the style of etcd's benchmark tool: the summary of a
//! timed request load (total time, slowest/fastest/average/stddev,
//! requests/s, errors), the response time histogram, the latency
//! distribution and the error distribution; and the latency block used for
//! watch delivery. Also the few numbers every output shares (percentiles,
//! histogram buckets), so the text, the JSON and the chart agree. All
//! printing of results happens here; histograms hold microseconds.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::outcome::Outcome;

/// The percentiles of etcd's "Latency distribution".
pub const DISTRIBUTION: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// A histogram of microseconds, three significant digits, growing as
/// needed.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// Records `d` in microseconds. The histogram grows as needed; only a value
/// beyond any it can grow to is clamped (`saturating_record` alone would
/// clamp to the current bounds instead of growing).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The latency at percentile `pct` (0-100), in ms; 0 for no samples.
pub fn percentile_ms(h: &Histogram<u64>, pct: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(pct / 100.0))
    }
}

/// etcd's response time histogram: bucket bounds from the fastest to the
/// slowest latency in ten equal steps (eleven bounds, the first holding the
/// fastest alone), each with the samples above the previous bound and at
/// most this one. Bounds in ms; empty for no samples.
pub fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    const STEPS: usize = 10;
    let (lo, hi) = (ms(h.min()), ms(h.max()));
    let width = (hi - lo) / STEPS as f64;
    let mut out: Vec<(f64, u64)> = (0..STEPS)
        .map(|i| (lo + width * i as f64, 0))
        .chain(std::iter::once((hi, 0)))
        .collect();
    for v in h.iter_recorded() {
        // The lowest value of the sample's bin: the fastest sample falls
        // on the first bound, as in etcd's tool.
        let at = ms(h.lowest_equivalent(v.value_iterated_to())).clamp(lo, hi);
        let i = out.iter().position(|(b, _)| at <= *b).unwrap_or(STEPS);
        out[i].1 += v.count_at_value();
    }
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The report of a request load: summary, histogram, latency and error
/// distributions, and a plain line when every request failed.
pub fn requests(out: &Outcome) {
    let r = &out.result;
    let h = &r.hist;
    println!();
    println!("Summary:");
    println!("  Total:\t{:.4} secs.", secs(r.took));
    if !h.is_empty() {
        println!("  Slowest:\t{:.4} ms.", ms(h.max()));
        println!("  Fastest:\t{:.4} ms.", ms(h.min()));
        println!("  Average:\t{:.4} ms.", h.mean() / 1000.0);
        println!("  Stddev:\t{:.4} ms.", h.stdev() / 1000.0);
    }
    println!("  Requests/sec:\t{:.4}", out.requests_per_sec());
    println!("  Errors:\t{} of {}", r.errors, r.total);
    if h.is_empty() {
        println!();
        println!("No request succeeded: no latencies to show.");
    } else {
        print_histogram("Response time histogram (ms)", h);
        print_distribution(h);
    }
    if !r.error_kinds.is_empty() {
        println!();
        println!("Error distribution:");
        for (e, n) in &r.error_kinds {
            println!("  [{n}]\t{e}");
        }
    }
    if out.all_failed() {
        println!();
        println!(
            "FAILED: every one of the {} {} requests failed.",
            r.total, out.load
        );
    }
}

/// A latency block under `title` (no throughput line): samples, extremes,
/// histogram and distribution.
pub fn latency(title: &str, h: &Histogram<u64>) {
    println!();
    println!("{title}:");
    println!("  Samples:\t{}", h.len());
    if h.is_empty() {
        return;
    }
    println!("  Slowest:\t{:.4} ms.", ms(h.max()));
    println!("  Fastest:\t{:.4} ms.", ms(h.min()));
    println!("  Average:\t{:.4} ms.", h.mean() / 1000.0);
    println!("  Stddev:\t{:.4} ms.", h.stdev() / 1000.0);
    print_histogram("Latency histogram (ms)", h);
    print_distribution(h);
}

fn print_histogram(title: &str, h: &Histogram<u64>) {
    const BAR: usize = 40;
    let b = buckets(h);
    let most = b.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    println!();
    println!("{title}:");
    for (bound, n) in b {
        let len = usize::try_from(n.saturating_mul(BAR as u64) / most).unwrap_or(BAR);
        println!("  {bound:.4} [{n}]\t|{}", "∎".repeat(len));
    }
}

fn print_distribution(h: &Histogram<u64>) {
    println!();
    println!("Latency distribution:");
    for pct in DISTRIBUTION {
        println!("  {pct}% in {:.4} ms.", percentile_ms(h, pct));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_every_sample_between_fastest_and_slowest() {
        let mut h = histogram();
        for us in [100, 150, 200, 1000, 1000, 5000] {
            record(&mut h, Duration::from_micros(us));
        }
        let b = buckets(&h);
        assert_eq!(b.len(), 11);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 6);
        assert_eq!(b[0], (0.1, 1), "the fastest alone on the first bound");
        assert!((b[10].0 - 5.0).abs() < 0.01, "last bound is the slowest");
        assert!(b[10].1 >= 1, "the slowest is in the last bucket");
        assert!(b.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn empty_histograms_have_no_buckets_and_zero_percentiles() {
        let h = histogram();
        assert!(buckets(&h).is_empty());
        assert_eq!(percentile_ms(&h, 99.0), 0.0);
    }
}
