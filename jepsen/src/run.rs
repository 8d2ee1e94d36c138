//! One test run from start to verdict: start (or attach to) the cluster, follow every
//! member's history, run the chosen workloads' client processes and the nemesis until the
//! time limit, heal, take the final reads, run every checker, and write the run directory —
//! `history.jsonl`, `results.json`, `report.html` and the members' logs.
//!
//! It wires the parts together; it decides nothing about validity itself.

use crate::checker;
use crate::checker::watch::Observation;
use crate::cluster::{lock, Cluster, ClusterSpec};
use crate::history::{Op, OpType, Recorder};
use crate::nemesis::{Fault, Nemesis, Timing};
use crate::truth::{self, Follower};
use crate::workload::{self, Ctx, Proc};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Register,
    Append,
    Watch,
    Set,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Register,
        Workload::Append,
        Workload::Watch,
        Workload::Set,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Append => "append",
            Workload::Watch => "watch",
            Workload::Set => "set",
        }
    }
}

/// Parses `register,append,...` or `all`.
pub fn parse_workloads(text: &str) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    for w in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match w {
            "all" => out.extend(Workload::ALL),
            w => match Workload::ALL.iter().find(|x| x.name() == w) {
                Some(x) => out.push(*x),
                None => bail!("unknown workload {w:?}; known: all, register, append, watch, set"),
            },
        }
    }
    out.dedup();
    if out.is_empty() {
        bail!("no workload given");
    }
    Ok(out)
}

/// Everything a run is told.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Start members of this binary; `None` attaches to `endpoints`.
    pub binary: Option<PathBuf>,
    pub endpoints: Vec<String>,
    pub nodes: usize,
    pub time_limit: Duration,
    pub workloads: Vec<Workload>,
    pub faults: Vec<Fault>,
    /// `crash` was named (not only implied by `all`): a binary without failpoints is an error.
    pub crash_required: bool,
    /// Likewise `lose-unsynced`: a machine without FUSE is an error.
    pub lose_unsynced_required: bool,
    pub serializable_reads: bool,
    pub seed: u64,
    pub out: PathBuf,
    /// Client processes per workload.
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub think: Duration,
    pub max_ops: u64,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub timing: Timing,
    pub member_flags: Vec<String>,
}

/// The run's verdict: `results.json`'s content.
pub struct Verdict {
    pub results: Value,
}

impl Verdict {
    /// `true`, `false` or `"unknown"`.
    pub fn valid(&self) -> &Value {
        &self.results["valid"]
    }
}

/// Combines checker verdicts: any false is false, else any non-true is unknown.
pub fn combine<'a>(verdicts: impl Iterator<Item = &'a Value>) -> Value {
    let mut all_true = true;
    for v in verdicts {
        if v == &Value::Bool(false) {
            return Value::Bool(false);
        }
        if v != &Value::Bool(true) {
            all_true = false;
        }
    }
    if all_true {
        Value::Bool(true)
    } else {
        Value::String("unknown".into())
    }
}

/// Runs one test. Errors mean the run itself failed (no verdict).
pub async fn run(opts: RunOptions) -> Result<Verdict> {
    if std::fs::read_dir(&opts.out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty: each run needs its own directory (members keep their data there)",
            opts.out.display()
        );
    }
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let mut faults = opts.faults.clone();
    let lazyfs = opts.binary.is_some() && faults.contains(&Fault::LoseUnsynced);
    if lazyfs {
        if let Err(why) = crate::lazyfs::available() {
            if opts.lose_unsynced_required {
                bail!("the lose-unsynced fault needs FUSE mounts: {why}");
            }
            eprintln!("note: no lose-unsynced faults: {why}");
            faults.retain(|f| *f != Fault::LoseUnsynced);
        }
    }
    let cluster = match &opts.binary {
        Some(binary) => {
            Cluster::start(ClusterSpec {
                binary: binary.clone(),
                nodes: opts.nodes,
                dir: opts.out.join("cluster"),
                heartbeat_ms: opts.heartbeat_ms,
                election_ms: opts.election_ms,
                extra: opts.member_flags.clone(),
                lazyfs: faults.contains(&Fault::LoseUnsynced),
            })
            .await?
        }
        None => {
            if faults.iter().any(|f| f.needs_processes()) {
                bail!("faults other than compact need --binary (the run must own the processes)");
            }
            Cluster::attach(opts.endpoints.clone())
        }
    };
    let cluster = Arc::new(cluster);
    let n = cluster.size();
    let failpoints = crash_points(&cluster, &mut faults, opts.crash_required).await?;
    let history_file = std::fs::File::create(opts.out.join("history.jsonl"))?;
    let recorder = Arc::new(Recorder::new(Some(history_file)));

    let followers: Vec<Arc<Follower>> = (0..n).map(|_| Arc::new(Follower::default())).collect();
    let follow_tasks: Vec<_> = followers
        .iter()
        .enumerate()
        .map(|(i, f)| tokio::spawn(truth::follow(cluster.clone(), i, f.clone())))
        .collect();

    let start = Instant::now();
    let deadline = start + opts.time_limit;
    let ctx = Arc::new(Ctx::new(
        cluster.clone(),
        recorder.clone(),
        deadline,
        opts.request_timeout,
        opts.serializable_reads,
        opts.think,
        opts.max_ops,
        opts.seed,
    ));
    let observations: Arc<Mutex<Vec<Observation>>> = Arc::new(Mutex::new(Vec::new()));

    // Every process gets a number unique in the run; after an `info` it adds `stride`.
    let stride = (opts.workloads.len() * opts.concurrency) as u64;
    let mut tasks = Vec::new();
    let mut number = 0u64;
    for &w in &opts.workloads {
        for i in 0..opts.concurrency {
            let proc = Proc::new(number, stride, (number as usize) % n);
            number += 1;
            let ctx = ctx.clone();
            let obs = observations.clone();
            let is_watcher = w == Workload::Watch && i % 2 == 1;
            tasks.push((
                is_watcher,
                tokio::spawn(async move {
                    match w {
                        Workload::Register => workload::register::process(&ctx, proc, start).await,
                        Workload::Append => workload::append::process(&ctx, proc, start).await,
                        Workload::Set => workload::set::process(&ctx, proc).await,
                        Workload::Watch if i % 2 == 0 => workload::watch::writer(&ctx, proc).await,
                        Workload::Watch => workload::watch::watcher(&ctx, proc, &obs).await,
                    }
                }),
            ));
        }
    }

    let safe = followers.clone();
    let nemesis = Nemesis {
        cluster: cluster.clone(),
        recorder: recorder.clone(),
        faults: faults.clone(),
        timing: opts.timing,
        rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
        safe_compact: Arc::new(move || truth::safe_compact(&safe)),
        failpoints,
    };
    let running = ctx.clone();
    let fault_count = nemesis.run(deadline, move || running.running()).await;
    let phase = Phase::new();
    // Writers are done once their last request ends; watchers wait for the final revision.
    let (watchers, others): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|(w, _)| *w);
    // A process that panicked lost its operations: the verdict can then only be "unknown".
    let mut crashed_processes = 0;
    for (_, t) in others {
        crashed_processes += usize::from(t.await.is_err());
    }

    // Settle: every member back and serving, in-flight proposals done, then the final state.
    if cluster.owned() {
        for i in 0..n {
            cluster.wait_ready(i, Duration::from_secs(90)).await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    phase.done("workloads stopped, members serving");
    let final_revision = final_revision(&cluster, opts.request_timeout).await?;
    ctx.final_revision
        .store(final_revision, std::sync::atomic::Ordering::SeqCst);
    for (_, t) in watchers {
        crashed_processes += usize::from(t.await.is_err());
    }
    phase.done("watchers confirmed their tails");
    let caught_up = truth::wait_for(&followers, final_revision, Duration::from_secs(60)).await;
    for t in &follow_tasks {
        t.abort();
    }
    if !caught_up {
        tracing::warn!("not every member's history reached revision {final_revision}");
    }
    let histories: Vec<Vec<_>> = followers.iter().map(|f| lock(&f.changes).clone()).collect();

    phase.done("every member's history followed to the final revision");
    let history = recorder.snapshot();
    let acked = lock(&ctx.acked).clone();
    let mut checkers = serde_json::Map::new();
    let (revisions, truth) = truth::check(&histories, final_revision, &acked);
    let mut revisions = serde_json::to_value(&revisions)?;
    // The key space at the final revision must be what the history replays to.
    match final_state(&cluster, final_revision, opts.request_timeout).await {
        Ok(state) if state == truth::replay(&truth) => {}
        Ok(state) => {
            revisions["valid"] = json!(false);
            let error = format!(
                "the key space at revision {final_revision} ({} keys) is not the history \
                 replayed ({} keys)",
                state.len(),
                truth::replay(&truth).len()
            );
            if let Some(errors) = revisions["errors"].as_array_mut() {
                errors.push(json!(error));
            }
        }
        Err(e) => revisions["final_state_error"] = json!(format!("{e:#}")),
    }
    if !caught_up && revisions["valid"] == json!(false) {
        // A follower that never reached the end proves nothing about its member.
        revisions["valid"] = json!("unknown");
        revisions["note"] = json!("not every member's history reached the final revision");
    }
    checkers.insert("revisions".into(), revisions);
    for &w in &opts.workloads {
        let report = match w {
            Workload::Register => {
                let calls = workload::register::calls(&history);
                let budget = checker::linearizable::Budget::default();
                let mut report =
                    serde_json::to_value(checker::linearizable::check(&calls, &budget))?;
                shorten_counterexamples(&mut report, &history);
                report
            }
            Workload::Append => {
                serde_json::to_value(checker::append::check(&workload::append::txns(&history)))?
            }
            Workload::Set => {
                let mut reads = Vec::new();
                for i in 0..n {
                    reads.push(workload::set::final_read(&ctx, i, Duration::from_secs(30)).await?);
                }
                let adds = workload::set::adds(&history);
                serde_json::to_value(checker::set::check(&adds, &reads))?
            }
            Workload::Watch => watch_report(&truth, &lock(&observations), &lock(&ctx.split_txns)),
        };
        phase.done(&format!("{} checked", w.name()));
        checkers.insert(w.name().into(), report);
    }
    let ops = history
        .iter()
        .filter(|o| o.kind == OpType::Invoke && o.process != crate::history::Process::NEMESIS)
        .count();
    let ok_ops = history
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.process != crate::history::Process::NEMESIS)
        .count();
    let mut valid = combine(checkers.values().map(|c| &c["valid"]));
    let losses = loss_summary(&history);
    let failed_losses = losses["errors"].as_u64().unwrap_or(0);
    // A member that died after the last heal (during the final reads and checks) is found
    // only by looking now.
    if cluster.owned() {
        for i in 0..cluster.size() {
            cluster.is_running(i);
        }
    }
    let unexpected_exits: Vec<Value> = cluster
        .unexpected_exits()
        .into_iter()
        .map(|(member, status)| json!({"member": member, "status": status}))
        .collect();
    // Nothing succeeded, some processes died, a power loss could not be applied, or a member
    // exited by itself (a server crash): a "valid" would claim what was not tested.
    if valid == json!(true)
        && (ok_ops == 0
            || crashed_processes > 0
            || failed_losses > 0
            || !unexpected_exits.is_empty())
    {
        valid = json!("unknown");
    }
    let results = json!({
        "valid": valid,
        "checkers": checkers,
        "ops": ops,
        "ok_ops": ok_ops,
        "crashed_processes": crashed_processes,
        "faults": fault_count,
        "crash_points": crash_summary(&history),
        "lost_unsynced": losses,
        "unexpected_exits": unexpected_exits,
        "unidentified_peer_connections": cluster.links().unidentified(),
        "unidentified_peer_connections_closed": cluster.links().unidentified_closed(),
        "seed": opts.seed,
        "final_revision": final_revision,
        "binary": opts.binary.as_ref().map(|b| b.display().to_string()),
        "nodes": n,
        "time_limit_s": opts.time_limit.as_secs(),
        "workloads": opts.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        "nemesis": faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "read_consistency": if opts.serializable_reads { "serializable" } else { "linearizable" },
    });
    std::fs::write(
        opts.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let windows: Vec<Value> = crate::report::fault_windows(&history)
        .into_iter()
        .map(|w| json!({"kind": w.kind, "start_ns": w.start, "end_ns": w.end, "detail": w.detail}))
        .collect();
    std::fs::write(
        opts.out.join("faults.json"),
        serde_json::to_string_pretty(&windows)?,
    )?;
    crate::report::write(&opts.out, &history, &results)?;
    phase.done("report written");
    cluster.shutdown();
    Ok(Verdict { results })
}

/// The crash points the members serve, when the run has the `crash` fault. Without any,
/// `crash` is dropped from `faults` (it came with `all`) or the run fails (it was named).
async fn crash_points(
    cluster: &Cluster,
    faults: &mut Vec<Fault>,
    required: bool,
) -> Result<Vec<String>> {
    if !faults.contains(&Fault::Crash) {
        return Ok(Vec::new());
    }
    let listed = match cluster.failpoint_addr(0) {
        Some(addr) => crate::failpoints::list(&addr).await,
        None => Err(anyhow::anyhow!("no member process")),
    };
    match listed {
        Ok(points) if !points.is_empty() => Ok(points),
        other => {
            let why = match other {
                Err(e) => format!("{e:#}"),
                Ok(_) => "it lists no failpoints".into(),
            };
            if required {
                bail!(
                    "the crash fault needs a binary built with failpoints \
                     (cargo build --release -p setpoint-server --features failpoints): {why}"
                );
            }
            eprintln!("note: no crash faults: the binary serves no failpoints ({why})");
            faults.retain(|f| *f != Fault::Crash);
            Ok(Vec::new())
        }
    }
}

/// How often each crash point fired, and how many armed points were not reached.
fn crash_summary(history: &[Op]) -> Value {
    let mut fired: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_reached = 0;
    for value in nemesis_values(history, "stop-crash") {
        for f in value["fired"].as_array().into_iter().flatten() {
            let point = f["point"].as_str().unwrap_or("?").to_string();
            *fired.entry(point).or_default() += 1;
        }
        not_reached += value["not_reached"].as_array().map_or(0, Vec::len);
    }
    json!({"fired": fired, "not_reached": not_reached})
}

/// What the power losses threw away: faults, member losses, files and bytes; `errors` counts
/// the member losses that could not be applied (they threw nothing away).
fn loss_summary(history: &[Op]) -> Value {
    let (mut faults, mut members, mut files, mut bytes, mut errors) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for value in nemesis_values(history, "stop-lose-unsynced") {
        faults += 1;
        for l in value["lost"].as_array().into_iter().flatten() {
            if l.get("error").is_some() {
                errors += 1;
                continue;
            }
            members += 1;
            files += l["files"].as_u64().unwrap_or(0);
            bytes += l["bytes"].as_u64().unwrap_or(0);
        }
    }
    json!({"faults": faults, "member_losses": members, "files": files, "bytes": bytes,
           "errors": errors})
}

/// The values of the nemesis's completed (`info`) `f` ops.
fn nemesis_values<'a>(history: &'a [Op], f: &'a str) -> impl Iterator<Item = &'a Value> {
    history
        .iter()
        .filter(move |o| {
            o.process == crate::history::Process::NEMESIS && o.f == f && o.kind == OpType::Info
        })
        .map(|o| &o.value)
}

/// The store's revision once writes have stopped, from any member that answers.
async fn final_revision(cluster: &Cluster, timeout: Duration) -> Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for i in 0..cluster.size() {
            if let Ok(c) = cluster.client(i, timeout).await {
                if let Ok(r) = c
                    .range(setpoint_client::proto::etcdserverpb::RangeRequest {
                        key: b"setpoint-jepsen-final".to_vec(),
                        ..Default::default()
                    })
                    .await
                {
                    return Ok(r.header.map(|h| h.revision).unwrap_or(0));
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no member answered a linearizable read after the run");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every key and value at `revision`, read from the first member that answers.
async fn final_state(
    cluster: &Cluster,
    revision: i64,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut last = String::new();
    for i in 0..cluster.size() {
        let client = cluster.client(i, timeout).await?;
        let req = setpoint_client::proto::etcdserverpb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        };
        match client.range(req).await {
            Ok(r) => return Ok(r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()),
            Err(e) => last = e.to_string(),
        }
    }
    bail!("no member returned the key space at revision {revision}: {last}")
}

/// Every watcher's observation against the agreed history.
fn watch_report(
    truth: &[checker::watch::Change],
    observations: &[Observation],
    split_txns: &[i64],
) -> Value {
    let mut anomalies = Vec::new();
    let mut events = 0usize;
    for (i, obs) in observations.iter().enumerate() {
        events += obs.changes.len();
        if let Err(a) = checker::watch::check(truth, obs) {
            if anomalies.len() < 10 {
                anomalies.push(json!({
                    "observation": i,
                    "keys": format!("{:?}", obs.keys),
                    "start_revision": obs.start_revision,
                    "complete_through": obs.complete_through,
                    "anomaly": format!("{a:?}"),
                }));
            } else {
                anomalies.push(Value::Null);
            }
        }
    }
    let invalid = anomalies.len();
    anomalies.retain(|a| !a.is_null());
    json!({
        "valid": invalid == 0
            && split_txns.is_empty()
            && truth_nonempty_or_no_watchers(truth, observations),
        "revisions_split_across_responses": split_txns.iter().take(10).collect::<Vec<_>>(),
        "observations": observations.len(),
        "events_checked": events,
        "invalid_observations": invalid,
        "anomalies": anomalies,
    })
}

/// A watch check over an empty history proves nothing; say so when watchers did run.
fn truth_nonempty_or_no_watchers(truth: &[checker::watch::Change], obs: &[Observation]) -> bool {
    !truth.is_empty() || obs.is_empty()
}

/// The linearizability checker names the longest linearizable prefix by operation ids; a
/// reader needs only its end — the writes just before the operation that could not be
/// placed. Keeps the last [`PREFIX_SHOWN`] of them, as history operations.
fn shorten_counterexamples(report: &mut Value, history: &[crate::history::Op]) {
    const PREFIX_SHOWN: usize = 8;
    let Some(keys) = report["keys"].as_array_mut() else {
        return;
    };
    for key in keys {
        let cx = &mut key["counterexample"];
        let Some(ids) = cx["linearized"].as_array().cloned() else {
            continue;
        };
        let tail: Vec<Value> = ids
            .iter()
            .skip(ids.len().saturating_sub(PREFIX_SHOWN))
            .filter_map(|id| id.as_u64())
            .filter_map(|id| history.iter().find(|o| o.index == id))
            .map(|o| json!({"id": o.index, "process": o.process, "f": o.f, "value": o.value, "invoke_ns": o.time}))
            .collect();
        cx["linearized_count"] = json!(ids.len());
        cx["linearized"] = Value::Array(tail);
    }
}

/// Prints how long each step after the workloads took (to stderr: progress, not results).
struct Phase(std::sync::Mutex<Instant>);

impl Phase {
    fn new() -> Phase {
        Phase(std::sync::Mutex::new(Instant::now()))
    }

    fn done(&self, what: &str) {
        let mut last = lock(&self.0);
        eprintln!("{what} ({:.1} s)", last.elapsed().as_secs_f64());
        *last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    #[test]
    fn a_power_loss_that_could_not_be_applied_is_an_error_not_a_member_loss() {
        let stop = |value: Value| Op {
            index: 0,
            time: 1,
            process: Process::NEMESIS,
            kind: OpType::Info,
            f: "stop-lose-unsynced".into(),
            value,
            error: None,
            member: None,
            revision: None,
        };
        let history = vec![stop(json!({"lost": [
            {"member": 0, "files": 2, "bytes": 100},
            {"member": 1, "error": "lazyfs is not mounted"},
        ]}))];
        let s = loss_summary(&history);
        assert_eq!(s["faults"], json!(1));
        assert_eq!(s["member_losses"], json!(1));
        assert_eq!(s["bytes"], json!(100));
        assert_eq!(s["errors"], json!(1));
    }
}
