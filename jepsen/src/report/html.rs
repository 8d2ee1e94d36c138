//! The report's one self-contained HTML page: verdicts, faults, per-operation counts and
//! latency percentiles, the two charts inlined, and results.json in full. Formatting only.

use super::charts::{ms, secs};
use super::{Outcome, Run, Sample};
use crate::history::OpType;
use plotters::prelude::RGBColor;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub(super) fn esc(s: &str) -> String {
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

pub(super) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A validity value as (CSS class, label).
pub(super) fn verdict(v: Option<&Value>) -> (&'static str, String) {
    match v {
        Some(Value::Bool(true)) => ("valid", "valid".to_string()),
        Some(Value::Bool(false)) => ("invalid", "INVALID".to_string()),
        Some(Value::String(s)) => ("unknown", s.clone()),
        None | Some(Value::Null) => ("unknown", "unknown".to_string()),
        Some(other) => ("unknown", other.to_string()),
    }
}

pub(super) fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Nearest-rank percentile of sorted values.
pub(super) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

pub(super) fn ms_cell(v: Option<u64>) -> String {
    v.map(|ns| format!("{:.1}", ms(ns)))
        .unwrap_or_else(|| "—".to_string())
}

pub(super) const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f2f2f2}td.num{text-align:right}\
.valid{background:#d4f4d4}.invalid{background:#f8d0d0;font-weight:bold}\
.unknown{background:#fde9c0}\
pre{margin:0.3em 0;max-height:30em;overflow:auto;background:#fafafa;padding:0.5em}\
.chart svg{max-width:100%;height:auto}\
.swatch{display:inline-block;width:0.9em;height:0.9em;margin-right:0.4em;vertical-align:middle}";

pub(super) fn html(run: &Run, results: &Value, latency: &str, rate: &str) -> String {
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
