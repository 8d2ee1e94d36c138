//! The latency chart (`--svg FILE`), drawn with plotters: on top, latency
//! over the run (each successful operation a faint dot, up to a limit, and
//! the p50 and p99 of each time slice as lines, on a log scale); below, the
//! latency histogram up to p99.9 (slower samples in the last bar) with the
//! p50 and p99 marked. A run without successful operations gets a chart
//! that says so. It only draws what the outcome holds.

use anyhow::anyhow;
use plotters::prelude::*;

use crate::load::Sample;
use crate::outcome::Outcome;
use crate::report::{self, ms};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 760;
const TOP: u32 = 440;
const FONT: &str = "sans-serif";
/// More dots than this are thinned to every n-th.
const MAX_DOTS: usize = 20_000;
/// Time slices of the p50/p99 lines.
const SLICES: f64 = 50.0;
/// Histogram bars.
const BARS: usize = 40;

/// Points of a line: (seconds, ms).
type Line = Vec<(f64, f64)>;

const P50: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const P99: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const DOT: RGBColor = RGBColor(0x88, 0x88, 0x88);
const BAR: RGBColor = RGBColor(0x4c, 0x9a, 0x6a);

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// The chart of `out` as an SVG document.
pub fn svg(out: &Outcome) -> anyhow::Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let what = if out.events.is_some() {
            "delivery latency"
        } else {
            "latency"
        };
        let r = &out.result;
        let title = match out.events {
            Some(n) => format!(
                "{}: {what}, {n} events after {} puts, {:.2} s",
                out.load,
                r.total,
                r.took.as_secs_f64()
            ),
            None => format!(
                "{}: {what}, {} ok, {} failed, {:.2} s",
                out.load,
                r.hist.len(),
                r.errors,
                r.took.as_secs_f64()
            ),
        };
        let root = root.titled(&title, (FONT, 20)).map_err(draw_err)?;
        if r.samples.is_empty() || r.hist.is_empty() {
            root.draw(&Text::new(
                "No successful operations: nothing to draw.",
                (40, 60),
                (FONT, 16).into_font(),
            ))
            .map_err(draw_err)?;
        } else {
            let (top, bottom) = root.split_vertically(TOP - 30);
            over_time(&top, out, what)?;
            histogram(&bottom, out, what)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(text)
}

/// Latency over the run: dots and per-slice p50/p99 lines, log scale.
fn over_time<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    out: &Outcome,
    what: &str,
) -> anyhow::Result<()> {
    let samples = &out.result.samples;
    let lat = |s: &Sample| (ms(s.us)).max(0.001);
    let x_max = samples
        .iter()
        .map(|s| s.at)
        .fold(out.result.took.as_secs_f64(), f64::max)
        .max(0.001);
    let (lo, hi) = samples
        .iter()
        .map(lat)
        .fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    // Whole decades, at least one, each labelled.
    let e_lo = lo.log10().floor() as i32;
    let e_hi = (hi.log10().ceil() as i32).max(e_lo + 1);
    let (y_lo, y_hi) = (10f64.powi(e_lo), 10f64.powi(e_hi));
    let decades: Vec<f64> = (e_lo..=e_hi).map(|e| 10f64.powi(e)).collect();
    let minor: Vec<f64> = (e_lo..e_hi)
        .flat_map(|e| (2..10).map(move |m| f64::from(m) * 10f64.powi(e)))
        .collect();

    let mut chart = ChartBuilder::on(area)
        .caption(format!("{what} over the run"), (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..x_max,
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(decades)
                .with_light_points(minor),
        )
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start (completion)")
        .y_desc(format!("{what} (ms, log)"))
        .y_label_formatter(&|v| format_ms(*v))
        .draw()
        .map_err(draw_err)?;

    let stride = samples.len().div_ceil(MAX_DOTS).max(1);
    let each = unit(out);
    let dots = if stride > 1 {
        format!("each {each} (1 in {stride})")
    } else {
        format!("each {each}")
    };
    chart
        .draw_series(
            samples
                .iter()
                .step_by(stride)
                .map(|s| Circle::new((s.at.min(x_max), lat(s)), 1, DOT.mix(0.4).filled())),
        )
        .map_err(draw_err)?
        .label(dots)
        .legend(|(x, y)| Circle::new((x + 10, y), 3, DOT.filled()));

    let (p50, p99) = slice_percentiles(samples, x_max);
    let slice = x_max / SLICES;
    chart
        .draw_series(LineSeries::new(p50, P50.stroke_width(2)))
        .map_err(draw_err)?
        .label(format!("p50 per {}", format_secs(slice)))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], P50.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(p99, P99.stroke_width(2)))
        .map_err(draw_err)?
        .label(format!("p99 per {}", format_secs(slice)))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], P99.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// p50 and p99 of each of `SLICES` equal slices of `0..x_max`, at the
/// slices' middles (slices without samples are skipped).
fn slice_percentiles(samples: &[Sample], x_max: f64) -> (Line, Line) {
    let n = SLICES as usize;
    let width = x_max / SLICES;
    let mut slices: Vec<Vec<u64>> = vec![Vec::new(); n];
    for s in samples {
        let i = ((s.at / width) as usize).min(n - 1);
        slices[i].push(s.us);
    }
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for (i, mut v) in slices.into_iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        v.sort_unstable();
        let at = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]).max(0.001);
        let x = (i as f64 + 0.5) * width;
        p50.push((x, at(0.50)));
        p99.push((x, at(0.99)));
    }
    (p50, p99)
}

/// The histogram up to p99.9, with p50 and p99 marked.
fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    out: &Outcome,
    what: &str,
) -> anyhow::Result<()> {
    let h = &out.result.hist;
    let lo = ms(h.min());
    let hi = report::percentile_ms(h, 99.9).max(lo + 0.001);
    let width = (hi - lo) / BARS as f64;
    let mut counts = vec![0u64; BARS];
    let mut beyond = 0u64;
    for v in h.iter_recorded() {
        let at = ms(h.lowest_equivalent(v.value_iterated_to()));
        if at > hi {
            beyond += v.count_at_value();
        }
        let i = (((at - lo) / width).max(0.0) as usize).min(BARS - 1);
        counts[i] += v.count_at_value();
    }
    let peak = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let caption = if beyond > 0 {
        format!("{what} histogram up to p99.9 (the {beyond} slower in the last bar)")
    } else {
        format!("{what} histogram")
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..hi, 0f64..peak)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(format!("{what} (ms)"))
        .y_desc(format!("{}s", unit(out)))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &n)| {
            let x0 = lo + width * i as f64;
            Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], BAR.filled())
        }))
        .map_err(draw_err)?;
    for (pct, color) in [(50.0, P50), (99.0, P99)] {
        let x = report::percentile_ms(h, pct).clamp(lo, hi);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, peak)],
                color.stroke_width(2),
            )))
            .map_err(draw_err)?
            .label(format!("p{pct} = {} ms", format_ms(x)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// What one sample is: an event for the watch loads, else an operation.
fn unit(out: &Outcome) -> &'static str {
    if out.events.is_some() {
        "event"
    } else {
        "op"
    }
}

fn format_ms(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn format_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} ms", (s * 1000.0).max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::LoadResult;

    fn outcome(samples: Vec<Sample>) -> Outcome {
        let mut hist = report::histogram();
        for s in &samples {
            report::record(&mut hist, Duration::from_micros(s.us));
        }
        Outcome {
            load: "put",
            params: serde_json::json!({}),
            result: LoadResult {
                total: samples.len() as u64,
                hist,
                samples,
                errors: 0,
                first_error: None,
                error_kinds: Vec::new(),
                took: Duration::from_secs(1),
            },
            events: None,
        }
    }

    #[test]
    fn draws_both_panels() {
        let samples = (0..500)
            .map(|i| Sample {
                at: f64::from(i) / 500.0,
                us: 200 + (i as u64 % 37) * 50,
            })
            .collect();
        let svg = svg(&outcome(samples)).expect("draws");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("over the run"));
        assert!(svg.contains("histogram"));
        assert!(svg.contains("p99"));
    }

    #[test]
    fn says_so_without_successes() {
        let svg = svg(&outcome(Vec::new())).expect("draws");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("No successful operations"));
    }
}
