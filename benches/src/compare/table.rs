//! The compare command's summary: per (members, load, metric) the medians
//! of each system over the rounds, the ratio Setpoint / etcd, the goal and
//! whether it is met; rendered as an aligned text table (stdout) and as the
//! Markdown report. Raw measurements and how they were taken are not here
//! (`results.json` has them; `loads` takes them).

use serde::Serialize;

use super::loads::{Better, Load, Metric};
use super::{Run, System};

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub members: usize,
    pub load: String,
    pub metric: Metric,
    /// Per round, `None` where the run failed.
    pub etcd: Vec<Option<f64>>,
    pub setpoint: Vec<Option<f64>>,
    pub etcd_median: Option<f64>,
    pub setpoint_median: Option<f64>,
    /// Setpoint's median / etcd's.
    pub ratio: Option<f64>,
    /// Whether the ratio meets the goal (None: no goal, or no ratio).
    pub met: Option<bool>,
}

/// The median of the values present.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Whether `ratio` meets `goal` for a metric where `better` is better.
pub fn meets(better: Better, ratio: f64, goal: f64) -> bool {
    match better {
        Better::Higher => ratio >= goal,
        Better::Lower => ratio <= goal,
        Better::Pass => ratio >= goal,
    }
}

/// The rows, in member-count, load and metric order.
pub fn rows(loads: &[Load], members: &[usize], rounds: usize, runs: &[Run]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in members {
        for load in loads {
            for metric in &load.metrics {
                let per_round = |system: System| -> Vec<Option<f64>> {
                    (1..=rounds)
                        .map(|round| {
                            runs.iter()
                                .find(|r| {
                                    r.round == round
                                        && r.members == n
                                        && r.system == system
                                        && r.load == load.name
                                })
                                .and_then(|r| r.measured.as_ref())
                                .and_then(|m| m.values.get(metric.key))
                                .and_then(|v| v.as_f64())
                        })
                        .collect()
                };
                let etcd = per_round(System::Etcd);
                let setpoint = per_round(System::Setpoint);
                let (etcd_median, setpoint_median) = (median(&etcd), median(&setpoint));
                let ratio = match (etcd_median, setpoint_median, metric.better) {
                    (_, _, Better::Pass) => None,
                    (Some(e), Some(s), _) if e > 0.0 => Some(s / e),
                    _ => None,
                };
                let met = match (ratio, metric.goal) {
                    (Some(r), Some(g)) => Some(meets(metric.better, r, g)),
                    _ => None,
                };
                rows.push(Row {
                    members: n,
                    load: load.name.to_string(),
                    metric: metric.clone(),
                    etcd,
                    setpoint,
                    etcd_median,
                    setpoint_median,
                    ratio,
                    met,
                });
            }
        }
    }
    rows
}

/// A metric's name in the table.
pub fn label(key: &str) -> &str {
    match key {
        "p50_ms" => "p50 ms",
        "p99_ms" => "p99 ms",
        "requests_per_sec" => "req/s",
        "events_per_sec" => "events/s",
        "throughput_writes_per_sec" => "writes/s",
        "slowest_s" => "slowest s",
        "stddev_s" => "stddev s",
        "pass" => "PASS",
        other => other,
    }
}

/// A number with about four significant digits, thousands separated.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn value(better: Better, median: Option<f64>, per_round: &[Option<f64>]) -> String {
    if better == Better::Pass {
        let passes = per_round.iter().flatten().filter(|v| **v > 0.5).count();
        let ran = per_round.iter().flatten().count();
        return if ran == 0 {
            "failed".into()
        } else {
            format!("{passes}/{ran} PASS")
        };
    }
    median.map(num).unwrap_or_else(|| "failed".into())
}

fn rounds_text(better: Better, per_round: &[Option<f64>]) -> String {
    per_round
        .iter()
        .map(|v| match (v, better) {
            (None, _) => "fail".to_string(),
            (Some(v), Better::Pass) => if *v > 0.5 { "PASS" } else { "FAIL" }.to_string(),
            (Some(v), _) => num(*v),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The row's cells: members, load, metric, etcd, Setpoint, ratio, goal,
/// met, per-round values.
fn cells(row: &Row) -> [String; 9] {
    let m = &row.metric;
    let goal = match (m.goal, m.better) {
        (Some(g), Better::Lower) => format!("≤ {g}×"),
        (Some(g), _) => format!("≥ {g}×"),
        (None, _) => String::new(),
    };
    let met = match row.met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    };
    [
        row.members.to_string(),
        row.load.clone(),
        label(m.key).to_string(),
        value(m.better, row.etcd_median, &row.etcd),
        value(m.better, row.setpoint_median, &row.setpoint),
        row.ratio.map(|r| format!("{r:.2}×")).unwrap_or_default(),
        goal,
        met.to_string(),
        format!(
            "etcd {} / Setpoint {}",
            rounds_text(m.better, &row.etcd),
            rounds_text(m.better, &row.setpoint)
        ),
    ]
}

const HEADS: [&str; 9] = [
    "members",
    "load",
    "metric",
    "etcd",
    "Setpoint",
    "ratio",
    "goal",
    "met",
    "per round",
];

/// The aligned text table.
pub fn text(rows: &[Row]) -> String {
    let all: Vec<[String; 9]> = rows.iter().map(cells).collect();
    let mut width = HEADS.map(|h| h.chars().count());
    for c in &all {
        for (w, cell) in width.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |c: &[String]| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in c.iter().zip(width).enumerate() {
            let pad = w - cell.chars().count();
            // Names left, numbers right; the last column unpadded.
            if i == 8 {
                out.push_str(cell);
            } else if i <= 2 || i == 7 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
                out.push_str("  ");
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADS.map(String::from));
    for c in &all {
        out.push_str(&line(c));
    }
    out
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| members | load | metric | etcd | Setpoint | ratio | goal | met | per round |\n\
         |--:|---|---|--:|--:|--:|--:|:-:|---|\n",
    );
    for row in rows {
        let mut c = cells(row);
        if c[7] == "NO" {
            c[7] = "**NO**".into();
        }
        c[8] = format!("<sub>{}</sub>", c[8]);
        out.push_str(&format!("| {} |\n", c.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(4.0), Some(1.0)]), Some(2.5));
        assert_eq!(median(&[None]), None);
    }

    #[test]
    fn goals() {
        assert!(meets(Better::Lower, 0.6, 0.7));
        assert!(!meets(Better::Lower, 0.8, 0.7));
        assert!(meets(Better::Higher, 2.1, 2.0));
        assert!(!meets(Better::Higher, 1.9, 2.0));
    }

    #[test]
    fn numbers() {
        assert_eq!(num(1234567.8), "1,234,568");
        assert_eq!(num(999.94), "999.9");
        assert_eq!(num(12.345), "12.35");
        assert_eq!(num(0.8341), "0.834");
    }
}
