//! The run's report for a human: a latency scatter and a throughput chart (SVG, with the
//! nemesis's fault windows shaded behind the data) and one self-contained HTML page holding
//! both, the checkers' verdicts, the faults applied, and per-operation counts and latencies.
//!
//! It only draws what the history and the checkers' results already say; it decides nothing
//! about validity and never reads the cluster.

use crate::history::{self, Op, OpType, Process};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// A span of time during which a fault was in force: from a nemesis `start-KIND` to the
/// matching `stop-KIND` (or the end of the run, if it was never stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultWindow {
    /// The fault's name, without the `start-` prefix (`partition`, `kill`, ...).
    pub kind: String,
    /// Nanoseconds since the run started.
    pub start: u64,
    /// Nanoseconds since the run started.
    pub end: u64,
    /// The `start-` op's value: what the nemesis did (targets, links, mode).
    pub detail: Value,
}

/// One thing the nemesis did: an invocation merged with its completion when both exist.
#[derive(Debug, Clone)]
struct NemesisEvent {
    f: String,
    /// The completion's time if there was one, else the invocation's.
    time: u64,
    /// The completion's type, or `Invoke` if none was recorded.
    kind: OpType,
    value: Value,
    error: Option<String>,
}

/// The last finite timestamp in the history: the run's end, to which anything unfinished or
/// never closed is clamped.
fn run_end(history: &[Op]) -> u64 {
    history
        .iter()
        .map(|o| o.time)
        .filter(|&t| t != u64::MAX)
        .max()
        .unwrap_or(0)
}

fn nemesis_events(history: &[Op]) -> Vec<NemesisEvent> {
    fn from_invoke(op: &Op) -> NemesisEvent {
        NemesisEvent {
            f: op.f.clone(),
            time: op.time,
            kind: OpType::Invoke,
            value: op.value.clone(),
            error: op.error.clone(),
        }
    }
    let mut out = Vec::new();
    let mut pending: Option<&Op> = None;
    for op in history.iter().filter(|o| o.process == Process::NEMESIS) {
        if op.kind == OpType::Invoke {
            if let Some(p) = pending.replace(op) {
                out.push(from_invoke(p));
            }
            continue;
        }
        let invoke = match pending.take() {
            Some(p) if p.f == op.f => Some(p),
            Some(p) => {
                out.push(from_invoke(p));
                None
            }
            None => None,
        };
        let value = match (&op.value, invoke) {
            (Value::Null, Some(inv)) => inv.value.clone(),
            (v, _) => v.clone(),
        };
        out.push(NemesisEvent {
            f: op.f.clone(),
            time: op.time,
            kind: op.kind,
            value,
            error: op.error.clone(),
        });
    }
    if let Some(p) = pending {
        out.push(from_invoke(p));
    }
    out
}

/// The fault windows of a history, ordered by start. Each nemesis `start-KIND` (its
/// completion's time when both invocation and completion were recorded, else whichever
/// exists) opens a window that the next `stop-KIND` closes; one never stopped runs to the
/// end of the run. A start or stop that completed with `fail` certainly did not happen and
/// is ignored. Instant faults (any other nemesis op) make no window.
pub fn fault_windows(history: &[Op]) -> Vec<FaultWindow> {
    let end = run_end(history);
    let mut open: Vec<FaultWindow> = Vec::new();
    let mut done: Vec<FaultWindow> = Vec::new();
    for ev in nemesis_events(history) {
        if ev.kind == OpType::Fail {
            continue;
        }
        if let Some(kind) = ev.f.strip_prefix("start-") {
            open.push(FaultWindow {
                kind: kind.to_string(),
                start: ev.time,
                end,
                detail: ev.value,
            });
        } else if let Some(kind) = ev.f.strip_prefix("stop-") {
            let (closing, still): (Vec<_>, Vec<_>) = open.into_iter().partition(|w| w.kind == kind);
            open = still;
            done.extend(closing.into_iter().map(|mut w| {
                w.end = ev.time.max(w.start);
                // What only the stop knows (e.g. which crash points fired) joins the detail.
                if let (Some(detail), Some(stop)) = (w.detail.as_object_mut(), ev.value.as_object())
                {
                    for (k, v) in stop {
                        detail.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                w
            }));
        }
    }
    done.extend(open);
    done.sort_by(|a, b| (a.start, &a.kind).cmp(&(b.start, &b.kind)));
    done
}

/// Nemesis ops that are neither `start-` nor `stop-`: compaction, the final heal, ...
fn instant_faults(history: &[Op]) -> Vec<NemesisEvent> {
    nemesis_events(history)
        .into_iter()
        .filter(|e| !e.f.starts_with("start-") && !e.f.starts_with("stop-"))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Fail,
    Info,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Fail, Outcome::Info];

    fn of(kind: OpType) -> Outcome {
        match kind {
            OpType::Ok => Outcome::Ok,
            OpType::Fail => Outcome::Fail,
            OpType::Info | OpType::Invoke => Outcome::Info,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Outcome::Ok => RGBColor(0x2c, 0xa0, 0x2c),
            Outcome::Fail => RGBColor(0xd6, 0x27, 0x28),
            Outcome::Info => RGBColor(0x1f, 0x77, 0xb4),
        }
    }
}

/// One client operation, invocation to completion.
#[derive(Debug, Clone)]
struct Sample {
    f: String,
    outcome: Outcome,
    /// Completion time, clamped to the run's end for unfinished operations.
    done: u64,
    latency: u64,
    unfinished: bool,
}

fn samples(history: &[Op], end: u64) -> Vec<Sample> {
    history::pairs(history)
        .into_iter()
        .map(|(inv, done)| {
            let unfinished = done.time == u64::MAX;
            let t = if unfinished {
                end.max(inv.time)
            } else {
                done.time
            };
            Sample {
                f: inv.f,
                outcome: Outcome::of(done.kind),
                done: t,
                latency: t.saturating_sub(inv.time),
                unfinished,
            }
        })
        .collect()
}

/// Opacity of the fault-window shading. Nothing else in the charts uses it, so the shaded
/// rectangles can be told apart (and counted) in the SVG.
const SHADE_ALPHA: f64 = 0.22;
const FAULT_COLORS: [RGBColor; 8] = [
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0x39, 0x3b, 0x79),
];
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 460;
const LEGEND_WIDTH: u32 = 220;
/// Beyond this many points the latency chart thins `ok` points (never `fail` or `info`).
const MAX_POINTS: usize = 20_000;
const FONT: &str = "sans-serif";

/// Everything the charts and the page need, computed once.
struct Run {
    end: u64,
    samples: Vec<Sample>,
    windows: Vec<FaultWindow>,
    instants: Vec<NemesisEvent>,
    /// A colour per fault kind: window kinds first, then instant ones.
    colors: BTreeMap<String, RGBColor>,
}

impl Run {
    fn new(history: &[Op]) -> Run {
        let end = run_end(history);
        let windows = fault_windows(history);
        let instants = instant_faults(history);
        let mut kinds: Vec<String> = windows
            .iter()
            .map(|w| w.kind.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for k in instants
            .iter()
            .map(|e| e.f.clone())
            .collect::<BTreeSet<_>>()
        {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        let colors = kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, FAULT_COLORS[i % FAULT_COLORS.len()]))
            .collect();
        Run {
            end,
            samples: samples(history, end),
            windows,
            instants,
            colors,
        }
    }

    fn color(&self, kind: &str) -> RGBColor {
        self.colors.get(kind).copied().unwrap_or(FAULT_COLORS[6])
    }

    /// The x axis's extent in seconds.
    fn x_max(&self) -> f64 {
        secs(self.end).max(1.0)
    }

    /// Instant faults that happened (a `fail` one certainly did not).
    fn drawn_instants(&self) -> impl Iterator<Item = &NemesisEvent> {
        self.instants.iter().filter(|e| e.kind != OpType::Fail)
    }

    fn fault_legend(&self) -> Vec<LegendEntry> {
        let mut out = Vec::new();
        let window_kinds: BTreeSet<&str> = self.windows.iter().map(|w| w.kind.as_str()).collect();
        for k in &window_kinds {
            out.push(LegendEntry {
                label: (*k).to_string(),
                swatch: Swatch::Shade(self.color(k)),
            });
        }
        let instant_kinds: BTreeSet<&str> = self.drawn_instants().map(|e| e.f.as_str()).collect();
        for k in instant_kinds {
            out.push(LegendEntry {
                label: format!("{k} (instant)"),
                swatch: Swatch::VLine(self.color(k)),
            });
        }
        out
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn draw_err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(format!("drawing a chart: {e}"))
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Circle,
    Cross,
    Triangle,
    Square,
}

impl Shape {
    fn nth(i: usize) -> Shape {
        [Shape::Circle, Shape::Cross, Shape::Triangle, Shape::Square][i % 4]
    }
}

/// Draws `points` as small fixed-size markers of one shape.
fn draw_markers<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    shape: Shape,
    points: Vec<(f64, f64)>,
    color: RGBColor,
) -> io::Result<()>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = color.mix(0.7);
    let pts = points.into_iter();
    match shape {
        Shape::Circle => chart
            .draw_series(pts.map(|p| Circle::new(p, 2, style.filled())))
            .map(|_| ()),
        Shape::Cross => chart
            .draw_series(pts.map(|p| Cross::new(p, 3, style.stroke_width(1))))
            .map(|_| ()),
        Shape::Triangle => chart
            .draw_series(pts.map(|p| TriangleMarker::new(p, 3, style.filled())))
            .map(|_| ()),
        Shape::Square => {
            chart
                .draw_series(pts.map(|p| {
                    EmptyElement::at(p) + Rectangle::new([(-2, -2), (2, 2)], style.filled())
                }))
                .map(|_| ())
        }
    }
    .map_err(draw_err)
}

/// Draws one marker at a pixel position, for the legend.
fn draw_legend_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    shape: Shape,
    at: (i32, i32),
    color: RGBColor,
) -> io::Result<()> {
    let style = color.mix(0.9);
    match shape {
        Shape::Circle => area.draw(&Circle::new(at, 3, style.filled())),
        Shape::Cross => area.draw(&Cross::new(at, 4, style.stroke_width(1))),
        Shape::Triangle => area.draw(&TriangleMarker::new(at, 4, style.filled())),
        Shape::Square => area.draw(&Rectangle::new(
            [(at.0 - 3, at.1 - 3), (at.0 + 3, at.1 + 3)],
            style.filled(),
        )),
    }
    .map_err(draw_err)
}

enum Swatch {
    Marker(Shape, RGBColor),
    Line(RGBColor),
    Shade(RGBColor),
    VLine(RGBColor),
}

struct LegendEntry {
    label: String,
    swatch: Swatch,
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> io::Result<()> {
    const ROW: i32 = 18;
    const TOP: i32 = 40;
    let rows = ((HEIGHT as i32 - TOP - 10) / ROW).max(1) as usize;
    let shown = if entries.len() > rows {
        rows - 1
    } else {
        entries.len()
    };
    let font = (FONT, 13).into_font().color(&BLACK);
    for (i, e) in entries.iter().take(shown).enumerate() {
        let y = TOP + ROW * i as i32;
        let (cx, cy) = (18, y + 7);
        match e.swatch {
            Swatch::Marker(shape, c) => {
                draw_legend_marker(area, shape, (cx, cy), c)?;
                Ok(())
            }
            Swatch::Line(c) => area.draw(&PathElement::new(
                vec![(cx - 10, cy), (cx + 10, cy)],
                c.stroke_width(2),
            )),
            // Drawn less transparent than the chart's shading, so only the windows
            // themselves carry SHADE_ALPHA.
            Swatch::Shade(c) => area.draw(&Rectangle::new(
                [(cx - 10, cy - 6), (cx + 10, cy + 6)],
                c.mix(0.5).filled(),
            )),
            Swatch::VLine(c) => area.draw(&PathElement::new(
                vec![(cx, cy - 7), (cx, cy + 7)],
                c.stroke_width(2),
            )),
        }
        .map_err(draw_err)?;
        let mut label = e.label.clone();
        if label.chars().count() > 26 {
            label = label.chars().take(25).collect::<String>() + "…";
        }
        area.draw(&Text::new(label, (34, y), font.clone()))
            .map_err(draw_err)?;
    }
    if shown < entries.len() {
        let y = TOP + ROW * shown as i32;
        let more = format!("… and {} more", entries.len() - shown);
        area.draw(&Text::new(more, (34, y), font.clone()))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Shades every fault window and draws every instant fault, across `y_lo..y_hi`.
fn draw_faults<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    run: &Run,
    y_lo: f64,
    y_hi: f64,
) -> io::Result<()>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let x_max = run.x_max();
    let clamp = |t: u64| secs(t).clamp(0.0, x_max);
    chart
        .draw_series(run.windows.iter().map(|w| {
            Rectangle::new(
                [(clamp(w.start), y_lo), (clamp(w.end), y_hi)],
                run.color(&w.kind).mix(SHADE_ALPHA).filled(),
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(run.drawn_instants().map(|e| {
            let x = clamp(e.time);
            PathElement::new(
                vec![(x, y_lo), (x, y_hi)],
                run.color(&e.f).mix(0.8).stroke_width(2),
            )
        }))
        .map_err(draw_err)?;
    Ok(())
}

fn latency_svg(run: &Run) -> io::Result<String> {
    let fs: Vec<&str> = run
        .samples
        .iter()
        .map(|s| s.f.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let shape_of = |f: &str| Shape::nth(fs.iter().position(|x| *x == f).unwrap_or(0));
    // Latencies in ms, floored at 1 µs so the log scale has somewhere to put them.
    let lat = |s: &Sample| ms(s.latency).max(0.001);
    let (lo, hi) = run
        .samples
        .iter()
        .map(lat)
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
        .unwrap_or((1.0, 1000.0));
    // Whole decades, at least two of them, each labelled (plotters' own log key points can
    // lose the lowest decade to rounding).
    let e_lo = lo.log10().floor() as i32;
    let e_hi = (hi.log10().ceil() as i32).max(e_lo + 2);
    let (y_lo, y_hi) = (10f64.powi(e_lo), 10f64.powi(e_hi));
    let decades: Vec<f64> = (e_lo..=e_hi).map(|e| 10f64.powi(e)).collect();
    let minor: Vec<f64> = (e_lo..e_hi)
        .flat_map(|e| (2..10).map(move |m| f64::from(m) * 10f64.powi(e)))
        .collect();
    let ok_count = run
        .samples
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .count();
    let stride = if run.samples.len() > MAX_POINTS {
        ok_count.div_ceil(
            MAX_POINTS
                .saturating_sub(run.samples.len() - ok_count)
                .max(1000),
        )
    } else {
        1
    };
    let caption = if stride > 1 {
        format!("Latency by completion time (1 in {stride} ok ops shown)")
    } else {
        "Latency by completion time".to_string()
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(caption, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                0f64..run.x_max(),
                (y_lo..y_hi)
                    .log_scale()
                    .with_key_points(decades)
                    .with_light_points(minor),
            )
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start (completion)")
            .y_desc("latency (ms, log)")
            .y_label_formatter(&|v| format_ms(*v))
            .draw()
            .map_err(draw_err)?;
        draw_faults(&mut chart, run, y_lo, y_hi)?;

        let mut combos: BTreeSet<(&str, Outcome)> = BTreeSet::new();
        // ok first, so the rarer fail and info points land on top.
        for outcome in [Outcome::Ok, Outcome::Info, Outcome::Fail] {
            for f in &fs {
                let shape = shape_of(f);
                let mut n = 0usize;
                let points: Vec<(f64, f64)> = run
                    .samples
                    .iter()
                    .filter(|s| s.outcome == outcome && s.f == *f)
                    .filter(|_| {
                        n += 1;
                        outcome != Outcome::Ok || (n - 1).is_multiple_of(stride)
                    })
                    .map(|s| (secs(s.done).min(run.x_max()), lat(s).clamp(y_lo, y_hi)))
                    .collect();
                if n > 0 {
                    combos.insert((f, outcome));
                }
                draw_markers(&mut chart, shape, points, outcome.color())?;
            }
        }

        let mut entries = Vec::new();
        if combos.len() <= 15 {
            for (f, outcome) in &combos {
                entries.push(LegendEntry {
                    label: format!("{f} {}", outcome.name()),
                    swatch: Swatch::Marker(shape_of(f), outcome.color()),
                });
            }
            entries.extend(run.fault_legend());
        } else {
            // Too many pairs: colours (outcomes) and fault kinds first, since the shapes
            // (one per f) are the first thing to give up if the legend runs out of room.
            for outcome in Outcome::ALL {
                if combos.iter().any(|(_, o)| *o == outcome) {
                    entries.push(LegendEntry {
                        label: outcome.name().to_string(),
                        swatch: Swatch::Marker(Shape::Circle, outcome.color()),
                    });
                }
            }
            entries.extend(run.fault_legend());
            for f in &fs {
                entries.push(LegendEntry {
                    label: (*f).to_string(),
                    swatch: Swatch::Marker(shape_of(f), RGBColor(0x55, 0x55, 0x55)),
                });
            }
        }
        draw_legend(&legend, &entries)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn rate_svg(run: &Run) -> io::Result<String> {
    let buckets = (run.end / 1_000_000_000 + 1) as usize;
    let mut counts: BTreeMap<Outcome, Vec<u32>> = Outcome::ALL
        .iter()
        .map(|&o| (o, vec![0u32; buckets]))
        .collect();
    for s in run.samples.iter().filter(|s| !s.unfinished) {
        let b = ((s.done / 1_000_000_000) as usize).min(buckets - 1);
        if let Some(v) = counts.get_mut(&s.outcome) {
            v[b] += 1;
        }
    }
    let peak = counts
        .values()
        .flat_map(|v| v.iter().copied())
        .max()
        .unwrap_or(0);
    let y_hi = (f64::from(peak) * 1.1).max(1.0);
    let x_max = run.x_max();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption("Throughput (ops completed per second)", (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("ops/s")
            .y_label_formatter(&|v| {
                if y_hi >= 5.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .draw()
            .map_err(draw_err)?;
        draw_faults(&mut chart, run, 0.0, y_hi)?;
        let mut entries = Vec::new();
        for (outcome, v) in &counts {
            // A step line: each 1 s bucket is flat across its second.
            let points: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| {
                    let (a, b) = (i as f64, ((i + 1) as f64).min(x_max));
                    [(a.min(x_max), f64::from(n)), (b, f64::from(n))]
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points, outcome.color().stroke_width(2)))
                .map_err(draw_err)?;
            entries.push(LegendEntry {
                label: outcome.name().to_string(),
                swatch: Swatch::Line(outcome.color()),
            });
        }
        entries.extend(run.fault_legend());
        draw_legend(&legend, &entries)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A validity value as (CSS class, label).
fn verdict(v: Option<&Value>) -> (&'static str, String) {
    match v {
        Some(Value::Bool(true)) => ("valid", "valid".to_string()),
        Some(Value::Bool(false)) => ("invalid", "INVALID".to_string()),
        Some(Value::String(s)) => ("unknown", s.clone()),
        None | Some(Value::Null) => ("unknown", "unknown".to_string()),
        Some(other) => ("unknown", other.to_string()),
    }
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn ms_cell(v: Option<u64>) -> String {
    v.map(|ns| format!("{:.1}", ms(ns)))
        .unwrap_or_else(|| "—".to_string())
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f2f2f2}td.num{text-align:right}\
.valid{background:#d4f4d4}.invalid{background:#f8d0d0;font-weight:bold}\
.unknown{background:#fde9c0}\
pre{margin:0.3em 0;max-height:30em;overflow:auto;background:#fafafa;padding:0.5em}\
.chart svg{max-width:100%;height:auto}\
.swatch{display:inline-block;width:0.9em;height:0.9em;margin-right:0.4em;vertical-align:middle}";

fn html(run: &Run, results: &Value, latency: &str, rate: &str) -> String {
    let mut h = String::new();
    let (cls, label) = verdict(results.get("valid"));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Setpoint Jepsen report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <h1>Setpoint Jepsen report</h1>\n",
        esc(&label)
    );
    let count = |k: &str| match results.get(k) {
        Some(v @ Value::Number(_)) => v.to_string(),
        Some(Value::String(s)) => esc(s),
        _ => "—".to_string(),
    };
    let _ = write!(
        h,
        "<table>\n<tr><th>verdict</th><td class=\"{cls}\">{}</td></tr>\n\
         <tr><th>operations</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>faults</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>run length</th><td class=\"num\">{:.3} s</td></tr>\n</table>\n",
        esc(&label),
        count("ops"),
        count("faults"),
        secs(run.end)
    );

    h.push_str("<h2>Checkers</h2>\n");
    match results.get("checkers") {
        Some(Value::Object(map)) if !map.is_empty() => {
            h.push_str("<table>\n<tr><th>checker</th><th>valid</th><th>result</th></tr>\n");
            for (name, r) in map {
                let (cls, label) = verdict(r.get("valid"));
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"{cls}\">{}</td><td><details><summary>JSON\
                     </summary><pre>{}</pre></details></td></tr>",
                    esc(name),
                    esc(&label),
                    esc(&pretty(r))
                );
            }
            h.push_str("</table>\n");
        }
        _ => h.push_str("<p>No checker results.</p>\n"),
    }

    h.push_str("<h2>Latency</h2>\n<div class=\"chart\">\n");
    h.push_str(latency);
    h.push_str("</div>\n<h2>Throughput</h2>\n<div class=\"chart\">\n");
    h.push_str(rate);
    h.push_str("</div>\n");

    h.push_str("<h2>Operations</h2>\n");
    let mut by_f: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in &run.samples {
        by_f.entry(s.f.as_str()).or_default().push(s);
    }
    if by_f.is_empty() {
        h.push_str("<p>No client operations.</p>\n");
    } else {
        h.push_str(
            "<table>\n<tr><th>f</th><th>ok</th><th>fail</th><th>info</th>\
             <th>unfinished</th><th>ok p50 (ms)</th><th>ok p99 (ms)</th>\
             <th>all p50 (ms)</th><th>all p99 (ms)</th></tr>\n",
        );
        for (f, ss) in &by_f {
            let n = |o: Outcome| ss.iter().filter(|s| s.outcome == o).count();
            let unfinished = ss.iter().filter(|s| s.unfinished).count();
            let mut ok: Vec<u64> = ss
                .iter()
                .filter(|s| s.outcome == Outcome::Ok)
                .map(|s| s.latency)
                .collect();
            ok.sort_unstable();
            let mut all: Vec<u64> = ss
                .iter()
                .filter(|s| !s.unfinished)
                .map(|s| s.latency)
                .collect();
            all.sort_unstable();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(f),
                n(Outcome::Ok),
                n(Outcome::Fail),
                n(Outcome::Info),
                unfinished,
                ms_cell(percentile(&ok, 0.5)),
                ms_cell(percentile(&ok, 0.99)),
                ms_cell(percentile(&all, 0.5)),
                ms_cell(percentile(&all, 0.99)),
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Fault windows</h2>\n");
    if run.windows.is_empty() {
        h.push_str("<p>None.</p>\n");
    } else {
        h.push_str(
            "<table>\n<tr><th>kind</th><th>start (s)</th><th>end (s)</th>\
             <th>duration (s)</th><th>detail</th></tr>\n",
        );
        for w in &run.windows {
            let _ = writeln!(
                h,
                "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>\
                 <td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td>\
                 <td class=\"num\">{:.3}</td><td><code>{}</code></td></tr>",
                hex(run.color(&w.kind)),
                esc(&w.kind),
                secs(w.start),
                secs(w.end),
                secs(w.end.saturating_sub(w.start)),
                esc(&w.detail.to_string())
            );
        }
        h.push_str("</table>\n");
    }

    if !run.instants.is_empty() {
        h.push_str(
            "<h2>Instant faults</h2>\n<table>\n<tr><th>f</th><th>time (s)</th>\
             <th>outcome</th><th>detail</th><th>error</th></tr>\n",
        );
        for e in &run.instants {
            let outcome = match e.kind {
                OpType::Invoke => "no completion",
                OpType::Ok => "ok",
                OpType::Fail => "fail",
                OpType::Info => "info",
            };
            let _ = writeln!(
                h,
                "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>\
                 <td class=\"num\">{:.3}</td><td>{outcome}</td><td><code>{}</code></td>\
                 <td>{}</td></tr>",
                hex(run.color(&e.f)),
                esc(&e.f),
                secs(e.time),
                esc(&e.value.to_string()),
                esc(e.error.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>\n");
    }

    let _ = write!(
        h,
        "<details><summary>All results (JSON)</summary><pre>{}</pre></details>\n\
         </body>\n</html>\n",
        esc(&pretty(results))
    );
    h
}

/// Writes `latency.svg`, `rate.svg` and `report.html` (which inlines both charts) into `dir`,
/// creating it if needed, and returns the path of `report.html`.
pub fn write(dir: &Path, history: &[Op], results: &Value) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let run = Run::new(history);
    let latency = latency_svg(&run)?;
    let rate = rate_svg(&run)?;
    std::fs::write(dir.join("latency.svg"), &latency)?;
    std::fs::write(dir.join("rate.svg"), &rate)?;
    let path = dir.join("report.html");
    std::fs::write(&path, html(&run, results, &latency, &rate))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
