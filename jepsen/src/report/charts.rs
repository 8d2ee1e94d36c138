//! The report's two SVG charts, drawn with plotters: per-operation latency over time (a
//! marker per outcome, thinned beyond a bound) and completed operations per second, both
//! with the fault windows shaded behind the data and a legend beside it. Drawing only: the
//! samples and windows come from the parent's `Run`.

use super::{Outcome, Run, Sample};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// Opacity of the fault-window shading. Nothing else in the charts uses it, so the shaded
/// rectangles can be told apart (and counted) in the SVG.
pub(super) const SHADE_ALPHA: f64 = 0.22;
pub(super) const WIDTH: u32 = 1000;
pub(super) const HEIGHT: u32 = 460;
pub(super) const LEGEND_WIDTH: u32 = 220;
/// Beyond this many points the latency chart thins `ok` points (never `fail` or `info`).
pub(super) const MAX_POINTS: usize = 20_000;
pub(super) const FONT: &str = "sans-serif";

impl Run {
    /// The legend's fault entries: window kinds shaded, instant kinds as lines.
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

pub(super) fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub(super) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub(super) fn draw_err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(format!("drawing a chart: {e}"))
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
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
pub(super) fn draw_markers<DB, X, Y>(
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
pub(super) fn draw_legend_marker<DB: DrawingBackend>(
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

pub(super) enum Swatch {
    Marker(Shape, RGBColor),
    Line(RGBColor),
    Shade(RGBColor),
    VLine(RGBColor),
}

pub(super) struct LegendEntry {
    label: String,
    swatch: Swatch,
}

pub(super) fn draw_legend<DB: DrawingBackend>(
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
pub(super) fn draw_faults<DB, Y>(
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

pub(super) fn latency_svg(run: &Run) -> io::Result<String> {
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

pub(super) fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

pub(super) fn rate_svg(run: &Run) -> io::Result<String> {
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
