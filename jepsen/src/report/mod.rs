//! The run's report for a human: a latency scatter and a throughput chart (SVG, with the
//! nemesis's fault windows shaded behind the data) and one self-contained HTML page holding
//! both, the checkers' verdicts, the faults applied, and per-operation counts and latencies.
//!
//! It only draws what the history and the checkers' results already say; it decides nothing
//! about validity and never reads the cluster.

use crate::history::{self, Op, OpType};
use plotters::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

mod charts;
mod faults;
mod html;

use charts::{latency_svg, rate_svg, secs};
pub use faults::{fault_windows, FaultWindow};
use faults::{instant_faults, run_end, NemesisEvent};
use html::html;

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
