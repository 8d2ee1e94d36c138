//! The compare command's load matrix and how one load is run against one
//! cluster: every load but `check-perf-l` is this very `setpoint-bench`
//! binary run as a subprocess with `--json FILE --no-progress`, its JSON
//! result read back; `check-perf-l` is `etcdctl check perf --load=l`, its
//! PASS/FAIL lines parsed. Each load names the metrics the table shows and
//! the goal for each (a ratio Setpoint / etcd). Starting clusters,
//! medians and the table are elsewhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;

/// What "better" means for a metric.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    Higher,
    Lower,
    /// A pass (1) or fail (0): shown as passes out of runs, no ratio.
    Pass,
}

/// One number a load yields, as a table row.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Key in a run's values and the row's name, e.g. `p50_ms`.
    pub key: &'static str,
    pub better: Better,
    /// The goal for Setpoint / etcd: at least this ratio when higher is
    /// better, at most when lower is.
    pub goal: Option<f64>,
}

/// How a load is run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `setpoint-bench` with `--endpoints` plus `global`, then `args`;
    /// `prepare` (if any) is a `setpoint-bench` run before it, unmeasured.
    Bench {
        global: Vec<String>,
        args: Vec<String>,
        prepare: Option<Vec<String>>,
    },
    /// `etcdctl check perf --load=<load>`.
    CheckPerf { load: String },
}

/// One load of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub name: &'static str,
    /// One line for the report.
    pub about: String,
    pub kind: Kind,
    pub metrics: Vec<Metric>,
}

/// A load left out of the run: its name and why.
pub type Skipped = (String, String);

/// Every load's name, in run order.
pub const NAMES: [&str; 5] = [
    "put-seq-1c",
    "put-1000c",
    "range-l-100c",
    "watch-1000w",
    "check-perf-l",
];

/// `n` times `scale`, rounded, at least 1.
pub fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn metric(key: &'static str, better: Better, goal: Option<f64>) -> Metric {
    Metric { key, better, goal }
}

/// The loads named in `only` (all when empty) at `scale`, and the ones left
/// out with the reason (check perf runs 60 s whatever the scale, so it is
/// skipped below scale 1).
pub fn select(only: &[String], scale: f64) -> anyhow::Result<(Vec<Load>, Vec<Skipped>)> {
    for name in only {
        if !NAMES.contains(&name.as_str()) {
            bail!(
                "--loads: unknown load {name:?} (known: {})",
                NAMES.join(",")
            );
        }
    }
    let mut loads = Vec::new();
    let mut skipped = Vec::new();
    for name in NAMES {
        if !only.is_empty() && !only.iter().any(|n| n == name) {
            continue;
        }
        if name == "check-perf-l" && scale < 1.0 {
            skipped.push((
                name.to_string(),
                format!("skipped: --scale {scale} < 1 (etcdctl check perf always runs 60 s)"),
            ));
            continue;
        }
        loads.push(load(name, scale)?);
    }
    Ok((loads, skipped))
}

fn load(name: &'static str, scale: f64) -> anyhow::Result<Load> {
    use Better::*;
    Ok(match name {
        "put-seq-1c" => {
            let total = scaled(2_000, scale);
            Load {
                name,
                about: format!(
                    "put, 1 conn, 1 client, to the leader, sequential 8-byte keys, 8-byte values, {total} puts"
                ),
                kind: Kind::Bench {
                    global: strings(&["--conns", "1", "--clients", "1", "--target-leader"]),
                    args: vec![
                        "put".into(),
                        "--total".into(),
                        total.to_string(),
                        "--key-size".into(),
                        "8".into(),
                        "--val-size".into(),
                        "8".into(),
                        "--key-space-size".into(),
                        "100000".into(),
                        "--sequential-keys".into(),
                    ],
                    prepare: None,
                },
                metrics: vec![
                    metric("p50_ms", Lower, Some(0.7)),
                    metric("requests_per_sec", Higher, None),
                ],
            }
        }
        "put-1000c" => {
            let total = scaled(100_000, scale);
            let clients = total.min(1_000);
            let conns = clients.min(100);
            Load {
                name,
                about: format!(
                    "put, {conns} conns, {clients} clients, to the leader, random 8-byte keys of 100,000, 256-byte values, {total} puts"
                ),
                kind: Kind::Bench {
                    global: vec![
                        "--conns".into(),
                        conns.to_string(),
                        "--clients".into(),
                        clients.to_string(),
                        "--target-leader".into(),
                    ],
                    args: vec![
                        "put".into(),
                        "--total".into(),
                        total.to_string(),
                        "--key-size".into(),
                        "8".into(),
                        "--val-size".into(),
                        "256".into(),
                        "--key-space-size".into(),
                        "100000".into(),
                    ],
                    prepare: None,
                },
                metrics: vec![
                    metric("requests_per_sec", Higher, Some(2.0)),
                    metric("p99_ms", Lower, Some(1.0)),
                ],
            }
        }
        "range-l-100c" => {
            let total = scaled(20_000, scale);
            let clients = total.min(100);
            Load {
                name,
                about: format!(
                    "linearizable range of one 8-byte key, {clients} conns, {clients} clients, every member, {total} ranges"
                ),
                kind: Kind::Bench {
                    global: vec![
                        "--conns".into(),
                        clients.to_string(),
                        "--clients".into(),
                        clients.to_string(),
                    ],
                    args: vec![
                        "range".into(),
                        "00000000".into(),
                        "--total".into(),
                        total.to_string(),
                        "--consistency".into(),
                        "l".into(),
                    ],
                    // Writes the key "00000000" (key 0 of a 1-key space).
                    prepare: Some(strings(&[
                        "--conns",
                        "1",
                        "--clients",
                        "1",
                        "put",
                        "--total",
                        "1",
                        "--key-size",
                        "8",
                        "--val-size",
                        "8",
                    ])),
                },
                metrics: vec![
                    metric("requests_per_sec", Higher, Some(1.5)),
                    metric("p99_ms", Lower, None),
                ],
            }
        }
        "watch-1000w" => {
            let puts = scaled(1_000, scale);
            Load {
                name,
                about: format!(
                    "1000 watchers of one key on 10 streams, {puts} puts by 10 clients, 10 conns, every member"
                ),
                kind: Kind::Bench {
                    global: strings(&["--conns", "10", "--clients", "10"]),
                    args: vec![
                        "watch".into(),
                        "--watchers".into(),
                        "1000".into(),
                        "--streams".into(),
                        "10".into(),
                        "--watched-key-total".into(),
                        "1".into(),
                        "--put-total".into(),
                        puts.to_string(),
                    ],
                    prepare: None,
                },
                metrics: vec![
                    metric("events_per_sec", Higher, Some(1.0)),
                    metric("p99_ms", Lower, None),
                ],
            }
        }
        "check-perf-l" => Load {
            name,
            about: "etcdctl check perf --load=l (60 s), every member".into(),
            kind: Kind::CheckPerf { load: "l".into() },
            metrics: vec![
                metric("pass", Pass, None),
                metric("throughput_writes_per_sec", Higher, None),
                metric("slowest_s", Lower, None),
                metric("stddev_s", Lower, None),
            ],
        },
        other => bail!("unknown load {other:?}"),
    })
}

/// What running a load needs besides the cluster.
pub struct Runner {
    /// This `setpoint-bench` binary.
    pub bench: PathBuf,
    pub etcdctl: PathBuf,
    /// Longest a load may take before it is killed and counted as failed.
    pub timeout: Duration,
}

/// One load's run against one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// The metrics' values by key (missing when the run failed).
    pub values: serde_json::Map<String, Value>,
    /// Operations that failed inside a run that finished.
    pub errors: u64,
    pub first_error: Option<String>,
    /// The load's own JSON result, or check perf's parsed lines.
    pub raw: Value,
    pub took_s: f64,
}

impl Runner {
    /// Runs `load` against `endpoints`; its output goes to `<stem>.txt`,
    /// its JSON result to `<stem>.json`.
    pub async fn run(
        &self,
        load: &Load,
        endpoints: &[String],
        stem: &Path,
    ) -> anyhow::Result<Measured> {
        let started = Instant::now();
        let text = stem.with_extension("txt");
        let mut m = match &load.kind {
            Kind::Bench {
                global,
                args,
                prepare,
            } => {
                if let Some(prepare) = prepare {
                    let mut cmd = self.bench_command(endpoints, &[], prepare);
                    self.finish(&mut cmd, &stem.with_extension("prepare.txt"))
                        .await
                        .context("prepare")?;
                }
                let json = stem.with_extension("json");
                let mut cmd = self.bench_command(endpoints, global, args);
                cmd.arg("--json").arg(&json);
                self.finish(&mut cmd, &text).await?;
                let doc: Value = serde_json::from_str(
                    &std::fs::read_to_string(&json)
                        .with_context(|| format!("read {}", json.display()))?,
                )
                .with_context(|| format!("parse {}", json.display()))?;
                from_bench_json(load, doc)?
            }
            Kind::CheckPerf { load: size } => {
                let mut cmd = Command::new(&self.etcdctl);
                cmd.env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={}", endpoints.join(",")))
                    .args(["check", "perf"])
                    .arg(format!("--load={size}"));
                // check perf exits 1 on FAIL: still a measurement.
                let out = self.output(&mut cmd, &text).await?;
                from_check_perf(&out)?
            }
        };
        m.took_s = started.elapsed().as_secs_f64();
        Ok(m)
    }

    fn bench_command(&self, endpoints: &[String], global: &[String], args: &[String]) -> Command {
        let mut cmd = Command::new(&self.bench);
        cmd.arg("--endpoints")
            .arg(endpoints.join(","))
            .args(global)
            .arg("--no-progress")
            .args(args);
        cmd
    }

    /// Runs `cmd` with output to `log`; fails unless it exits 0.
    async fn finish(&self, cmd: &mut Command, log: &Path) -> anyhow::Result<()> {
        let (status, text) = self.run_logged(cmd, log).await?;
        if !status.success() {
            bail!("{status}; see {}:\n{}", log.display(), tail(&text, 10));
        }
        Ok(())
    }

    /// Runs `cmd` with output to `log`; returns the output whatever the
    /// exit status (but fails on a signal or the timeout).
    async fn output(&self, cmd: &mut Command, log: &Path) -> anyhow::Result<String> {
        let (status, text) = self.run_logged(cmd, log).await?;
        if status.code().is_none() {
            bail!("{status}; see {}", log.display());
        }
        Ok(text)
    }

    async fn run_logged(
        &self,
        cmd: &mut Command,
        log: &Path,
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        // SAFETY: prctl(2) only, between fork and exec: the load dies with
        // the thread that started it (the main thread, see `cluster`).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().context("start the load")?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(out) => out.context("wait for the load")?,
            // Dropping the future drops the child: kill_on_drop kills it.
            Err(_) => bail!("did not finish within {:?}", self.timeout),
        };
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.is_empty() {
            text.push_str("\n--- stderr ---\n");
            text.push_str(&err);
        }
        std::fs::write(log, &text).with_context(|| format!("write {}", log.display()))?;
        Ok((out.status, text))
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The metrics of a `setpoint-bench --json` result.
fn from_bench_json(load: &Load, doc: Value) -> anyhow::Result<Measured> {
    let mut values = serde_json::Map::new();
    for m in &load.metrics {
        let v = match m.key {
            "requests_per_sec" => doc.get("requests_per_sec"),
            "events_per_sec" => doc.get("events_per_sec"),
            "p50_ms" => doc.pointer("/latency_ms/p50"),
            "p99_ms" => doc.pointer("/latency_ms/p99"),
            other => bail!("no metric {other} in a bench result"),
        };
        let v = v
            .and_then(Value::as_f64)
            .with_context(|| format!("{} result without {}", load.name, m.key))?;
        values.insert(m.key.into(), v.into());
    }
    Ok(Measured {
        values,
        errors: doc.get("errors").and_then(Value::as_u64).unwrap_or(0),
        first_error: doc
            .get("first_error")
            .and_then(Value::as_str)
            .map(String::from),
        raw: doc,
        took_s: 0.0,
    })
}

/// The metrics of `etcdctl check perf`'s output, e.g.
/// `PASS: Throughput is 150 writes/s`, `FAIL: Slowest request took too
/// long: 0.6s`, `PASS: Stddev is 0.0123s`, then `PASS` or `FAIL` alone.
pub fn from_check_perf(out: &str) -> anyhow::Result<Measured> {
    let mut values = serde_json::Map::new();
    let mut lines = Vec::new();
    let mut verdict = None;
    for line in out.lines().map(str::trim) {
        let key = if line.contains("Throughput") {
            "throughput_writes_per_sec"
        } else if line.contains("Slowest request") {
            "slowest_s"
        } else if line.contains("Stddev") {
            "stddev_s"
        } else {
            if line == "PASS" || line == "FAIL" {
                verdict = Some(line == "PASS");
            }
            continue;
        };
        lines.push(Value::from(line));
        if let Some(v) = last_number(line) {
            values.insert(key.into(), v.into());
        }
    }
    let Some(pass) = verdict else {
        bail!(
            "no PASS or FAIL in etcdctl check perf's output:\n{}",
            tail(out, 10)
        );
    };
    values.insert("pass".into(), if pass { 1.0 } else { 0.0 }.into());
    Ok(Measured {
        raw: serde_json::json!({ "pass": pass, "lines": lines }),
        values,
        errors: 0,
        first_error: None,
        took_s: 0.0,
    })
}

/// The last decimal number in `line` (`0.087155s` → 0.087155).
fn last_number(line: &str) -> Option<f64> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .rev()
        .filter(|s| s.chars().any(|c| c.is_ascii_digit()))
        .find_map(|s| s.trim_matches('.').parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_perf() {
        let out = " 60 / 60 Boooooo 100.00% 1m0s\nPASS: Throughput is 7989 writes/s\n\
                   FAIL: Slowest request took too long: 0.612345s\nPASS: Stddev is 0.031234s\nFAIL\n";
        let m = from_check_perf(out).expect("parsed");
        assert_eq!(m.values["throughput_writes_per_sec"], 7989.0);
        assert_eq!(m.values["slowest_s"], 0.612345);
        assert_eq!(m.values["stddev_s"], 0.031234);
        assert_eq!(m.values["pass"], 0.0);
        assert!(from_check_perf("nothing").is_err());
    }

    #[test]
    fn scales_and_selects() {
        assert_eq!(scaled(2_000, 0.01), 20);
        assert_eq!(scaled(10, 0.0001), 1);
        let (loads, skipped) = select(&[], 0.5).expect("select");
        assert_eq!(loads.len(), 4);
        assert_eq!(skipped.len(), 1);
        let (loads, _) = select(&["put-1000c".into()], 0.01).expect("select");
        assert_eq!(loads.len(), 1);
        assert!(select(&["nope".into()], 1.0).is_err());
    }
}
