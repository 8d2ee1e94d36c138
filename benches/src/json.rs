//! The machine-readable result (`--json FILE`), read back by the compare
//! command, so its keys are a contract: `load`, `total`, `errors`,
//! `first_error`, `took_s`, `requests_per_sec`, `latency_ms` (`min`, `max`,
//! `mean`, `stddev`, `p50`, `p90`, `p99`, `p99.9`), `histogram` (the text
//! report's buckets as `[upper_bound_ms, count]`), `params` (every flag), and
//! for the watch loads `events` and `events_per_sec`. Latencies cover the
//! successful operations (delivery latency for watch loads); with none they
//! are 0 and the histogram is empty. Only building the document lives here.

use serde_json::{json, Value};

use crate::outcome::Outcome;
use crate::report::{self, ms};

/// The JSON document of `out`.
pub fn document(out: &Outcome) -> Value {
    let r = &out.result;
    let h = &r.hist;
    let (min, max, mean, stddev) = if h.is_empty() {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (
            ms(h.min()),
            ms(h.max()),
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
        )
    };
    let histogram: Vec<Value> = report::buckets(h)
        .into_iter()
        // Bounds to 0.1 µs: finer is float noise.
        .map(|(bound, n)| json!([(bound * 1e4).round() / 1e4, n]))
        .collect();
    let mut doc = json!({
        "load": out.load,
        "total": r.total,
        "errors": r.errors,
        "first_error": r.first_error,
        "took_s": r.took.as_secs_f64(),
        "requests_per_sec": out.requests_per_sec(),
        "latency_ms": {
            "min": min,
            "max": max,
            "mean": mean,
            "stddev": stddev,
            "p50": report::percentile_ms(h, 50.0),
            "p90": report::percentile_ms(h, 90.0),
            "p99": report::percentile_ms(h, 99.0),
            "p99.9": report::percentile_ms(h, 99.9),
        },
        "histogram": histogram,
        "params": out.params,
    });
    if let (Some(events), Some(rate), Some(obj)) =
        (out.events, out.events_per_sec(), doc.as_object_mut())
    {
        obj.insert("events".into(), json!(events));
        obj.insert("events_per_sec".into(), json!(rate));
    }
    doc
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::LoadResult;

    fn outcome(latencies_us: &[u64], errors: u64, events: Option<u64>) -> Outcome {
        let mut hist = report::histogram();
        for &us in latencies_us {
            report::record(&mut hist, Duration::from_micros(us));
        }
        Outcome {
            load: "put",
            params: json!({"total": 3}),
            result: LoadResult {
                total: latencies_us.len() as u64 + errors,
                hist,
                samples: Vec::new(),
                errors,
                first_error: (errors > 0).then(|| "boom".to_string()),
                error_kinds: Vec::new(),
                took: Duration::from_secs(2),
            },
            events,
        }
    }

    #[test]
    fn has_exactly_the_agreed_keys() {
        let doc = document(&outcome(&[1000, 2000, 3000], 1, None));
        let mut keys: Vec<&str> = doc
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "errors",
                "first_error",
                "histogram",
                "latency_ms",
                "load",
                "params",
                "requests_per_sec",
                "took_s",
                "total"
            ]
        );
        let mut lat: Vec<&str> = doc["latency_ms"]
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        lat.sort_unstable();
        assert_eq!(
            lat,
            ["max", "mean", "min", "p50", "p90", "p99", "p99.9", "stddev"]
        );
        assert_eq!(doc["total"], 4);
        assert_eq!(doc["errors"], 1);
        assert_eq!(doc["first_error"], "boom");
        // Three successes in two seconds: failures are not throughput.
        assert_eq!(doc["requests_per_sec"], 1.5);
        assert_eq!(doc["histogram"].as_array().map(Vec::len), Some(11));
    }

    #[test]
    fn watch_loads_add_events() {
        let doc = document(&outcome(&[500], 0, Some(10)));
        assert_eq!(doc["events"], 10);
        assert_eq!(doc["events_per_sec"], 5.0);
        assert!(doc["first_error"].is_null());
    }
}
