//! `setpoint-bench compare`: the real etcd and Setpoint side by side on
//! this machine. For each round and each member count, each system in turn
//! (etcd first in odd rounds, Setpoint first in even ones) gets a fresh
//! cluster with the same flags on the same filesystem, every load of the
//! matrix runs against it, and it is stopped and its data deleted. Then the
//! medians per system, their ratio Setpoint / etcd and the goals
//! are printed and written to `report.md`, every raw measurement to
//! `results.json`. This file holds the flags and the orchestration; the
//! members are in `cluster`, the loads in `loads`, the summary in `table`,
//! the machine description in `machine`.

mod cluster;
mod loads;
mod machine;
mod table;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use cluster::{Cluster, ClusterSpec};
use loads::{Load, Measured, Runner};

/// Flags of `compare`.
#[derive(Args, Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CompareArgs {
    /// The Setpoint server [default: `setpoint` beside this executable].
    #[arg(long, value_name = "PATH")]
    setpoint: Option<PathBuf>,
    /// The etcd server.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// etcdctl, for `check-perf-l`.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/etcdctl")]
    etcdctl: PathBuf,
    /// Cluster sizes to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<usize>,
    /// Rounds; each runs both systems at every size, in alternating order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the members' data directories go (one filesystem for both
    /// systems) [default: a fresh directory under /var/tmp, removed at the
    /// end].
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Where report.md, results.json, the loads' outputs and the members'
    /// logs go.
    #[arg(long, value_name = "DIR", default_value = "setpoint-compare")]
    out: PathBuf,
    /// Multiplies every load's operation count (below 1, check-perf-l is
    /// skipped: it always runs 60 s).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Only these loads, comma-separated (put-seq-1c, put-1000c,
    /// range-l-100c, watch-1000w, check-perf-l).
    #[arg(long, value_delimiter = ',')]
    loads: Vec<String>,
    /// Both systems' --heartbeat-interval, in ms.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Both systems' --election-timeout, in ms.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Seconds a load may run before it is killed and counted as failed.
    #[arg(long, default_value_t = 600)]
    load_timeout: u64,
}

/// The two systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Etcd,
    Setpoint,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Etcd => "etcd",
            System::Setpoint => "setpoint",
        })
    }
}

/// One load run against one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub members: usize,
    pub system: System,
    pub load: String,
    /// Why the run yielded no measurement.
    pub error: Option<String>,
    pub measured: Option<Measured>,
}

/// The data root, removed on drop when this run created it.
struct DataRoot {
    path: PathBuf,
    created: bool,
}

impl DataRoot {
    fn new(given: Option<&Path>) -> anyhow::Result<DataRoot> {
        let (path, created) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let p = PathBuf::from(format!(
                    "/var/tmp/setpoint-compare-{}-{stamp}",
                    std::process::id()
                ));
                (p, true)
            }
        };
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(DataRoot { path, created })
    }
}

impl Drop for DataRoot {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs the comparison. On Ctrl-C the running cluster and load are
/// killed and the data deleted before exiting.
pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = compare(args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: no report written"),
    }
}

async fn compare(args: CompareArgs) -> anyhow::Result<()> {
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(
        !args.members.is_empty() && args.members.iter().all(|&n| n >= 1),
        "--members: sizes of at least 1"
    );
    ensure!(
        args.scale.is_finite() && args.scale > 0.0,
        "--scale must be positive"
    );
    let bench = std::env::current_exe().context("find this executable")?;
    let setpoint = args
        .setpoint
        .clone()
        .unwrap_or_else(|| bench.with_file_name("setpoint"));
    for (flag, path) in [("--setpoint", &setpoint), ("--etcd", &args.etcd)] {
        ensure!(path.is_file(), "{flag}: no file {}", path.display());
    }
    let (loads, skipped) = loads::select(&args.loads, args.scale)?;
    if loads
        .iter()
        .any(|l| matches!(l.kind, loads::Kind::CheckPerf { .. }))
    {
        ensure!(
            args.etcdctl.is_file(),
            "--etcdctl: no file {} (check-perf-l needs it)",
            args.etcdctl.display()
        );
    }
    ensure!(!loads.is_empty(), "no load to run");
    let out = &args.out;
    for dir in ["logs", "runs"] {
        std::fs::create_dir_all(out.join(dir))
            .with_context(|| format!("create {}", out.join(dir).display()))?;
    }
    let data_root = DataRoot::new(args.data_root.as_deref())?;
    let machine = machine::describe(&data_root.path, &args.etcd, &setpoint);
    let started = machine::now_utc();
    let clock = Instant::now();
    eprintln!(
        "compare: etcd {} vs {}, {} round(s), members {:?}, scale {}, data in {}, output in {}",
        machine.etcd_version,
        machine.setpoint_version,
        args.rounds,
        args.members,
        args.scale,
        data_root.path.display(),
        out.display()
    );
    let runner = Runner {
        bench,
        etcdctl: args.etcdctl.clone(),
        timeout: Duration::from_secs(args.load_timeout),
    };
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        let order = if round % 2 == 1 {
            [System::Etcd, System::Setpoint]
        } else {
            [System::Setpoint, System::Etcd]
        };
        for &members in &args.members {
            for system in order {
                let binary = match system {
                    System::Etcd => args.etcd.clone(),
                    System::Setpoint => setpoint.clone(),
                };
                let name = format!("r{round}-{members}m-{system}");
                let spec = ClusterSpec {
                    binary,
                    members,
                    data_dir: data_root.path.join(&name),
                    log_dir: out.join("logs").join(&name),
                    heartbeat_ms: args.heartbeat_interval,
                    election_ms: args.election_timeout,
                };
                let ctx = Ctx {
                    round,
                    members,
                    system,
                    name: &name,
                    out,
                };
                runs.extend(one_cluster(&ctx, spec, &loads, &runner).await);
            }
        }
    }
    let rows = table::rows(&loads, &args.members, args.rounds, &runs);
    let finished = machine::now_utc();
    let failed: Vec<&Run> = runs.iter().filter(|r| r.error.is_some()).collect();
    println!();
    println!(
        "etcd {} vs {}; {} round(s), scale {}; {}, {} cores, {}, kernel {}; data on {}",
        machine.etcd_version,
        machine.setpoint_version,
        args.rounds,
        args.scale,
        machine.cpu,
        machine.cores,
        machine.ram,
        machine.kernel,
        machine.filesystem
    );
    print!("{}", table::text(&rows));
    let report = report_md(&ReportInput {
        args: &args,
        setpoint: &setpoint,
        data_root: &data_root.path,
        machine: &machine,
        started: &started,
        elapsed: clock.elapsed(),
        loads: &loads,
        skipped: &skipped,
        rows: &rows,
        runs: &runs,
    });
    let report_path = out.join("report.md");
    std::fs::write(&report_path, report)
        .with_context(|| format!("write {}", report_path.display()))?;
    let results = json!({
        "started": started,
        "finished": finished,
        "elapsed_s": clock.elapsed().as_secs_f64(),
        "args": args,
        "setpoint": setpoint,
        "machine": machine,
        "loads": loads,
        "skipped": skipped,
        "runs": runs,
        "rows": rows,
    });
    let results_path = out.join("results.json");
    std::fs::write(
        &results_path,
        serde_json::to_string_pretty(&results)? + "\n",
    )
    .with_context(|| format!("write {}", results_path.display()))?;
    eprintln!(
        "\nWrote {} and {}.",
        report_path.display(),
        results_path.display()
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} load runs failed (first: {} {} {}m round {}: {})",
            failed.len(),
            runs.len(),
            failed[0].system,
            failed[0].load,
            failed[0].members,
            failed[0].round,
            failed[0].error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// Which cluster of the plan is running.
struct Ctx<'a> {
    round: usize,
    members: usize,
    system: System,
    name: &'a str,
    out: &'a Path,
}

/// Starts one cluster, runs every load against it, stops it; a cluster
/// that does not start fails each of its loads.
async fn one_cluster(
    ctx: &Ctx<'_>,
    spec: ClusterSpec,
    loads: &[Load],
    runner: &Runner,
) -> Vec<Run> {
    let record = |load: &Load, result: anyhow::Result<Measured>| {
        let (measured, error) = match result {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Run {
            round: ctx.round,
            members: ctx.members,
            system: ctx.system,
            load: load.name.to_string(),
            error,
            measured,
        }
    };
    eprintln!(
        "[{}] starting {} member(s) of {}",
        ctx.name, ctx.members, ctx.system
    );
    let t = Instant::now();
    let cluster = match Cluster::start(spec, Duration::from_secs(60)).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[{}] the cluster did not start: {e:#}", ctx.name);
            let msg = format!("the cluster did not start: {e:#}");
            return loads
                .iter()
                .map(|l| record(l, Err(anyhow::anyhow!(msg.clone()))))
                .collect();
        }
    };
    eprintln!("[{}] ready in {:.1} s", ctx.name, t.elapsed().as_secs_f64());
    let endpoints = cluster.endpoints();
    let mut runs = Vec::new();
    for load in loads {
        let stem = ctx
            .out
            .join("runs")
            .join(format!("{}-{}", ctx.name, load.name));
        let result = runner.run(load, &endpoints, &stem).await;
        match &result {
            Ok(m) => eprintln!(
                "[{}] {}: {} ({:.1} s)",
                ctx.name,
                load.name,
                summary(load, m),
                m.took_s
            ),
            Err(e) => eprintln!("[{}] {}: FAILED: {e:#}", ctx.name, load.name),
        }
        runs.push(record(load, result));
    }
    match cluster.stop(Duration::from_secs(10)).await {
        Ok(killed) if !killed.is_empty() => eprintln!(
            "[{}] SIGTERM did not stop {} within 10 s: killed",
            ctx.name,
            killed.join(", ")
        ),
        Ok(_) => {}
        Err(e) => eprintln!("[{}] stopping: {e:#}", ctx.name),
    }
    runs
}

fn summary(load: &Load, m: &Measured) -> String {
    let mut parts: Vec<String> = load
        .metrics
        .iter()
        .filter_map(|metric| {
            let v = m.values.get(metric.key)?.as_f64()?;
            if metric.better == loads::Better::Pass {
                return Some(if v > 0.5 { "PASS" } else { "FAIL" }.to_string());
            }
            Some(format!("{} {}", table::label(metric.key), table::num(v)))
        })
        .collect();
    if m.errors > 0 {
        parts.push(format!("{} errors", m.errors));
    }
    parts.join(", ")
}

struct ReportInput<'a> {
    args: &'a CompareArgs,
    setpoint: &'a Path,
    data_root: &'a Path,
    machine: &'a machine::Machine,
    started: &'a str,
    elapsed: Duration,
    loads: &'a [Load],
    skipped: &'a [(String, String)],
    rows: &'a [table::Row],
    runs: &'a [Run],
}

fn report_md(r: &ReportInput<'_>) -> String {
    let a = r.args;
    let m = r.machine;
    let mut s = String::from("# Setpoint vs etcd\n\n");
    s += &format!(
        "{}, {}. {} round(s), members {}, scale {}.\n\n",
        r.started,
        duration(r.elapsed),
        a.rounds,
        a.members
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        a.scale
    );
    s += &format!("- CPU: {} ({} cores available)\n", m.cpu, m.cores);
    s += &format!("- RAM: {}\n", m.ram);
    s += &format!("- Kernel: {}\n", m.kernel);
    s += &format!(
        "- Data root: `{}`, {}\n",
        r.data_root.display(),
        m.filesystem
    );
    s += &format!("- etcd: {} (`{}`)\n", m.etcd_version, a.etcd.display());
    s += &format!(
        "- Setpoint: {} (`{}`)\n",
        m.setpoint_version,
        r.setpoint.display()
    );
    s += &format!(
        "- Both: members on 127.0.0.1, `--heartbeat-interval={} --election-timeout={}`, \
         every other setting default; a fresh cluster per system, size and round; \
         etcd first in odd rounds, Setpoint first in even ones.\n\n",
        a.heartbeat_interval, a.election_timeout
    );
    s += "## Loads\n\n";
    for load in r.loads {
        s += &format!("- `{}`: {}\n", load.name, load.about);
    }
    for (name, why) in r.skipped {
        s += &format!("- `{name}`: {why}\n");
    }
    s += "\n## Results\n\n";
    s += "Medians over the rounds; ratio = Setpoint / etcd. Goals are on the ratio: \
          at least it for throughput (higher is better), at most it for latency \
          (lower is better).\n\n";
    s += &table::markdown(r.rows);
    let notes: Vec<String> = r
        .runs
        .iter()
        .filter_map(|run| {
            let what = format!(
                "round {}, {} member(s), {}, `{}`",
                run.round, run.members, run.system, run.load
            );
            if let Some(e) = &run.error {
                return Some(format!("- {what}: failed: {}", one_line(e)));
            }
            let m = run.measured.as_ref()?;
            (m.errors > 0).then(|| {
                format!(
                    "- {what}: {} failed operations (first: {})",
                    m.errors,
                    one_line(m.first_error.as_deref().unwrap_or("?"))
                )
            })
        })
        .collect();
    if !notes.is_empty() {
        s += "\n## Failures\n\n";
        s += &notes.join("\n");
        s += "\n";
    }
    s += "\nRaw results: `results.json`; each load's output: `runs/`; members' logs: `logs/`.\n";
    s
}

/// `42 s` or `12.5 min`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.1} min", secs / 60.0)
    }
}

fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 200 {
        line.chars().take(200).collect::<String>() + "…"
    } else {
        line.to_string()
    }
}
