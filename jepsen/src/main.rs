//! `setpoint-jepsen`: runs a Jepsen-style test against a cluster of Setpoint (or etcd, or
//! anything that takes etcd's flags) and says whether what the clients saw was allowed.
//! Exit status: 0 every checker says valid, 1 one says invalid, 2 the run itself failed or
//! a checker could not decide.

use clap::{Parser, Subcommand};
use setpoint_jepsen::nemesis::{parse_faults, Timing};
use setpoint_jepsen::run::{parse_workloads, run, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "setpoint-jepsen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start (or attach to) a cluster, run workloads under faults, check the history.
    Test(TestArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    /// The member binary to start (setpoint, or etcd as a control).
    #[arg(
        long,
        conflicts_with = "endpoints",
        required_unless_present = "endpoints"
    )]
    binary: Option<PathBuf>,
    /// Attach to these client endpoints instead (no process faults).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds of workload (faults stop and heal at the end).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// register, append, watch, set, or all (comma-separated).
    #[arg(long, default_value = "all")]
    workload: String,
    /// kill, pause, partition, blackhole, delay, drop, compact, defrag, crash (needs a
    /// binary built with failpoints), lose-unsynced (needs root and /dev/fuse); all (each of
    /// those two only where it can be had); none.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Register reads: linearizable (default) or serializable.
    #[arg(long, default_value = "linearizable", value_parser = ["linearizable", "serializable"])]
    read_consistency: String,
    /// Random seed (printed; replays the same choices).
    #[arg(long)]
    seed: Option<u64>,
    /// The run directory.
    #[arg(long)]
    out: PathBuf,
    /// Client processes per workload.
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    /// Stop after this many operations.
    #[arg(long, default_value_t = 1_000_000)]
    max_ops: u64,
    /// Per-request timeout; an unanswered request is recorded as `info`.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Mean pause between one process's operations.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    think: Duration,
    /// Quiet time between faults, min and max.
    #[arg(long, num_args = 2, default_values = ["3s", "8s"], value_parser = humantime::parse_duration)]
    nemesis_quiet: Vec<Duration>,
    /// How long a fault lasts, min and max.
    #[arg(long, num_args = 2, default_values = ["4s", "12s"], value_parser = humantime::parse_duration)]
    nemesis_hold: Vec<Duration>,
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// An extra flag for every member (repeatable), e.g. --member-flag=--snapshot-count=50.
    #[arg(long, allow_hyphen_values = true)]
    member_flag: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Command::Test(args) = cli.command;
    // A panic is the run failing (exit 2), not a verdict.
    match std::panic::catch_unwind(|| test(args)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("setpoint-jepsen: the run failed: {e:#}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("setpoint-jepsen: the run failed: a panic (see above)");
            ExitCode::from(2)
        }
    }
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    if a.endpoints.is_empty() && a.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    println!("seed: {seed} (replay with --seed {seed})");
    let opts = RunOptions {
        binary: a.binary,
        nodes: if a.endpoints.is_empty() {
            a.nodes
        } else {
            a.endpoints.len()
        },
        endpoints: a.endpoints,
        time_limit: Duration::from_secs(a.time_limit),
        workloads: parse_workloads(&a.workload)?,
        faults: parse_faults(&a.nemesis)?,
        crash_required: a.nemesis.split(',').any(|w| w.trim() == "crash"),
        lose_unsynced_required: a.nemesis.split(',').any(|w| w.trim() == "lose-unsynced"),
        serializable_reads: a.read_consistency == "serializable",
        seed,
        out: a.out.clone(),
        concurrency: a.concurrency.max(1),
        request_timeout: a.request_timeout,
        think: a.think,
        max_ops: a.max_ops,
        heartbeat_ms: a.heartbeat_interval,
        election_ms: a.election_timeout,
        timing: Timing {
            quiet: (a.nemesis_quiet[0], a.nemesis_quiet[1]),
            hold: (a.nemesis_hold[0], a.nemesis_hold[1]),
        },
        member_flags: a.member_flag,
    };
    let rt = tokio::runtime::Runtime::new()?;
    // On SIGINT or SIGTERM the run is dropped, and with it the cluster: members are killed and
    // lazyfs mounts removed (dying without that left dead FUSE mounts behind).
    let verdict = rt.block_on(async {
        tokio::select! {
            verdict = run(opts) => verdict,
            signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}; cluster torn down")),
        }
    })?;
    let r = &verdict.results;
    if let Some(checkers) = r["checkers"].as_object() {
        for (name, c) in checkers {
            println!("{name:>10}: valid = {}", c["valid"]);
        }
    }
    println!(
        "ops: {}, faults: {}, valid: {} — {}",
        r["ops"],
        r["faults"],
        r["valid"],
        a.out.join("report.html").display()
    );
    Ok(match verdict.valid() {
        serde_json::Value::Bool(true) => ExitCode::SUCCESS,
        serde_json::Value::Bool(false) => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}

/// Resolves with the signal's name when SIGINT or SIGTERM arrives.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default (die at once) stays; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
