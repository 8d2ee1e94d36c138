//! The text report, in the style of etcd's benchmark tool: a summary of a
//! timed request load (total time, slowest/fastest/average, throughput,
//! errors, percentiles) and the latency block used for watch delivery. Only
//! formatting lives here; histograms hold microseconds.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A histogram of microseconds, three significant digits, growing as
/// needed.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The summary of a request load that took `took`, with the first error
/// if there were any.
pub fn summary(h: &Histogram<u64>, took: Duration, errors: u64, first_error: Option<&str>) {
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
    if let Some(e) = first_error {
        println!("  First error:\t{e}");
    }
    percentiles(h);
}

/// A latency distribution under `title` (no throughput line).
pub fn latency(title: &str, h: &Histogram<u64>) {
    println!("{title}:");
    println!("  Samples:\t{}", h.len());
    println!("  Slowest:\t{:.4} ms.", ms(h.max()));
    println!("  Fastest:\t{:.4} ms.", ms(h.min()));
    println!("  Average:\t{:.4} ms.", h.mean() / 1000.0);
    println!("  Stddev:\t{:.4} ms.", h.stdev() / 1000.0);
    percentiles(h);
}

fn percentiles(h: &Histogram<u64>) {
    for q in [50.0, 90.0, 99.0, 99.9] {
        println!("  p{q}:\t{:.4} ms.", ms(h.value_at_quantile(q / 100.0)));
    }
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
