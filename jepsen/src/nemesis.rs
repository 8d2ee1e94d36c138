//! The nemesis: faults applied on a schedule while the workloads run — kill -9 and restart,
//! SIGSTOP/SIGCONT, crash points armed inside members built with failpoints, power loss
//! (kill -9 and the loss of every write not yet fsynced), partitions,
//! one-way blackholes, delay and loss on peer links, and compaction — each recorded in the history as process `"nemesis"` (`start-X` / `stop-X`
//! windows, or one instant op), and all healed before the run's final reads.
//!
//! It decides what to break and when; how a link is broken is `proxy`'s business, how a
//! process is, `cluster`'s.

use crate::cluster::{client_options, Cluster};
use crate::history::{Op, OpType, Process, Recorder};
use crate::proxy::LinkFault;
use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;
use setpoint_client::proto::etcdserverpb::{CompactionRequest, DefragmentRequest};
use setpoint_client::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
    Blackhole,
    Delay,
    Drop,
    Compact,
    Defrag,
    /// A member dies at a chosen crash point (log append, apply, snapshot, compaction, ...):
    /// needs a binary built with failpoints.
    Crash,
    /// Power loss: kill -9 and every write not yet fsynced is lost (data directories on
    /// lazyfs mounts; needs root and /dev/fuse).
    LoseUnsynced,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Partition,
        Fault::Blackhole,
        Fault::Delay,
        Fault::Drop,
        Fault::Compact,
        Fault::Defrag,
        Fault::Crash,
        Fault::LoseUnsynced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Blackhole => "blackhole",
            Fault::Delay => "delay",
            Fault::Drop => "drop",
            Fault::Compact => "compact",
            Fault::Defrag => "defrag",
            Fault::Crash => "crash",
            Fault::LoseUnsynced => "lose-unsynced",
        }
    }

    /// Needs processes this run owns (everything but compaction and defragmentation).
    pub fn needs_processes(self) -> bool {
        !matches!(self, Fault::Compact | Fault::Defrag)
    }
}

/// Parses `kill,pause,partition,...`, `all` or `none`.
pub fn parse_faults(text: &str) -> Result<Vec<Fault>> {
    let mut out = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "none" => {}
            "all" => out.extend(Fault::ALL),
            w => match Fault::ALL.iter().find(|f| f.name() == w) {
                Some(f) => out.push(*f),
                None => bail!(
                    "unknown nemesis {w:?}; known: all, none, {}",
                    Fault::ALL.map(|f| f.name()).join(", ")
                ),
            },
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(*f));
    Ok(out)
}

/// The schedule's timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Quiet time between faults: uniformly in this range.
    pub quiet: (Duration, Duration),
    /// How long a fault window stays open.
    pub hold: (Duration, Duration),
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            quiet: (Duration::from_secs(3), Duration::from_secs(8)),
            hold: (Duration::from_secs(4), Duration::from_secs(12)),
        }
    }
}

/// What the nemesis needs besides the cluster.
pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub recorder: Arc<Recorder>,
    pub faults: Vec<Fault>,
    pub timing: Timing,
    pub rng: StdRng,
    /// The highest revision that may be compacted away without losing history a checker
    /// still needs.
    pub safe_compact: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The crash points the members serve (empty: the binary has none).
    pub failpoints: Vec<String>,
}

fn nemesis_op(kind: OpType, f: &str, value: serde_json::Value) -> Op {
    Op {
        index: 0,
        time: 0,
        process: Process::NEMESIS,
        kind,
        f: f.to_string(),
        value,
        error: None,
        member: None,
        revision: None,
    }
}

/// Starts member `t` again; a failure is logged (the final reads will show a member down).
fn restart(cluster: &Cluster, t: usize) {
    if let Err(e) = cluster.restart(t) {
        tracing::warn!("restart of member {t} failed: {e:#}");
    }
}

fn between(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    rng.gen_range(lo..hi)
}

impl Nemesis {
    /// Applies faults until `deadline` (or until `running` says the workloads stopped), then
    /// heals everything. Returns the number of faults
    /// applied (an instant one the cluster refused, e.g. an unsupported defrag, not counted).
    pub async fn run(mut self, deadline: Instant, running: impl Fn() -> bool) -> usize {
        let mut count = 0;
        if self.faults.is_empty() {
            return 0;
        }
        loop {
            let quiet = between(&mut self.rng, self.timing.quiet);
            if Instant::now() + quiet >= deadline || !running() {
                break;
            }
            tokio::time::sleep(quiet).await;
            let Some(fault) = self.faults.choose(&mut self.rng).copied() else {
                break;
            };
            let hold = between(&mut self.rng, self.timing.hold)
                .min(deadline.saturating_duration_since(Instant::now()));
            if self.apply(fault, hold).await {
                count += 1;
            }
        }
        self.heal_all().await;
        count
    }

    /// Applies one fault; false if the cluster refused it.
    async fn apply(&mut self, fault: Fault, hold: Duration) -> bool {
        match fault {
            Fault::Kill | Fault::Pause | Fault::LoseUnsynced => {
                let (mode, targets) = self.targets().await;
                let value = json!({"mode": mode, "targets": targets});
                let mut lost = Vec::new();
                self.window_start(fault, value.clone(), |c| {
                    for &t in &targets {
                        match fault {
                            Fault::Pause => c.signal_pause(t, true),
                            Fault::LoseUnsynced => lost.push(match c.lose_unsynced(t) {
                                Ok(l) => json!({"member": t, "files": l.files, "bytes": l.bytes}),
                                Err(e) => json!({"member": t, "error": format!("{e:#}")}),
                            }),
                            _ => c.kill(t),
                        }
                    }
                });
                tokio::time::sleep(hold).await;
                let mut stop = value;
                if fault == Fault::LoseUnsynced {
                    stop["lost"] = json!(lost);
                }
                self.window_stop(fault, stop, |c| {
                    for &t in &targets {
                        if fault == Fault::Pause {
                            c.signal_pause(t, false);
                        } else {
                            restart(c, t);
                        }
                    }
                });
            }
            Fault::Partition | Fault::Blackhole | Fault::Delay | Fault::Drop => {
                let (mode, cuts) = self.link_faults(fault).await;
                let shown: Vec<_> = cuts.iter().map(|(a, b, _)| [a, b]).collect();
                let detail = cuts.first().map(|c| c.2).unwrap_or_default();
                let value = json!({"mode": mode, "links": shown, "fault": detail});
                self.window_start(fault, value.clone(), |c| {
                    for &(a, b, f) in &cuts {
                        c.links().set(a, b, f);
                    }
                });
                tokio::time::sleep(hold).await;
                self.window_stop(fault, value, |c| c.links().heal());
            }
            Fault::Compact => return self.compact().await,
            Fault::Defrag => return self.defrag().await,
            Fault::Crash => return self.crash(hold).await,
        }
        true
    }

    /// Arms a random crash point (term `panic`) in the leader, one member, a majority or
    /// all (and compacts, if a compaction point was chosen); after `hold`, members that died
    /// there are restarted and points not reached are disarmed. The `stop-crash` value says
    /// which fired. False if none could be armed.
    async fn crash(&mut self, hold: Duration) -> bool {
        let (mode, targets) = self.targets().await;
        let mut armed = Vec::new();
        let mut refused = Vec::new();
        for t in targets {
            let Some(point) = self.failpoints.choose(&mut self.rng).cloned() else {
                break;
            };
            let Some(addr) = self.cluster.failpoint_addr(t) else {
                continue;
            };
            match crate::failpoints::arm(&addr, &point, "panic").await {
                Ok(()) => armed.push((t, point, addr)),
                Err(e) => {
                    refused.push(json!({"member": t, "point": point, "error": e.to_string()}))
                }
            }
        }
        let shown = |list: &[(usize, String, String)]| {
            list.iter()
                .map(|(t, p, _)| json!({"member": t, "point": p}))
                .collect::<Vec<_>>()
        };
        let value = json!({"mode": mode, "points": shown(&armed), "refused": refused});
        let f = "start-crash";
        self.recorder
            .record(nemesis_op(OpType::Invoke, f, value.clone()));
        if armed.is_empty() {
            let mut op = nemesis_op(OpType::Fail, f, value);
            op.error = Some("no crash point could be armed".into());
            self.recorder.record(op);
            return false;
        }
        self.recorder
            .record(nemesis_op(OpType::Info, f, value.clone()));
        // Compaction points are reached only when something compacts: make it happen.
        let hold_end = Instant::now() + hold;
        if armed.iter().any(|(_, p, _)| p.starts_with("compact")) {
            self.compact().await;
        }
        tokio::time::sleep_until(hold_end.into()).await;
        let (mut fired, mut missed, mut stuck) = (Vec::new(), Vec::new(), Vec::new());
        let mut other = Vec::new();
        for (t, point, addr) in armed {
            // Disarm, then look: a point that fires while being disarmed still kills the
            // member, which the look (after its abort has had time) sees.
            let disarmed = self.cluster.is_running_or_crashed(t)
                && crate::failpoints::disarm(&addr, &point).await.is_ok();
            // Members run with RUST_BACKTRACE=0, so one that fired aborts within
            // milliseconds; 300 ms tells. One whose control stopped answering is dying or
            // stuck: it gets up to 3 s to be gone before it counts as stuck.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while !disarmed
                && self.cluster.is_running_or_crashed(t)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !self.cluster.is_running_or_crashed(t) {
                // It died; at this point only if its log ends with that point's panic.
                if self.cluster.log_tail(t).contains(&fired_message(&point)) {
                    fired.push((t, point, addr));
                } else {
                    self.cluster.record_unexpected_exit(
                        t,
                        format!("died while armed at {point}, but not of that point's panic"),
                    );
                    other.push((t, point, addr));
                }
            } else if disarmed {
                missed.push((t, point, addr));
            } else {
                // Alive but its control does not answer: end it like a kill (an exit in
                // the meantime is the armed point's, not unexpected).
                self.cluster.kill_armed(t);
                stuck.push((t, point, addr));
            }
        }
        let mut stop = value;
        stop["fired"] = json!(shown(&fired));
        stop["not_reached"] = json!(shown(&missed));
        stop["killed_unanswering"] = json!(shown(&stuck));
        stop["died_otherwise"] = json!(shown(&other));
        fired.extend(stuck);
        fired.extend(other);
        self.window_stop(Fault::Crash, stop, |c| {
            for (t, _, _) in &fired {
                restart(c, *t);
            }
        });
        true
    }

    fn window_start(&self, fault: Fault, value: serde_json::Value, act: impl FnOnce(&Cluster)) {
        let f = format!("start-{}", fault.name());
        self.recorder
            .record(nemesis_op(OpType::Invoke, &f, value.clone()));
        act(&self.cluster);
        self.recorder.record(nemesis_op(OpType::Info, &f, value));
    }

    fn window_stop(&self, fault: Fault, value: serde_json::Value, act: impl FnOnce(&Cluster)) {
        let f = format!("stop-{}", fault.name());
        self.recorder
            .record(nemesis_op(OpType::Invoke, &f, value.clone()));
        act(&self.cluster);
        self.recorder.record(nemesis_op(OpType::Info, &f, value));
    }

    /// Which members a process fault hits: the leader, one at random, a majority, or all.
    async fn targets(&mut self) -> (&'static str, Vec<usize>) {
        let n = self.cluster.size();
        let mut all: Vec<usize> = (0..n).collect();
        all.shuffle(&mut self.rng);
        match self.rng.gen_range(0..4) {
            0 => {
                if let Some(l) = self.cluster.leader().await {
                    return ("leader", vec![l]);
                }
                ("one", all[..1].to_vec())
            }
            1 => ("one", all[..1].to_vec()),
            2 => ("majority", all[..n / 2 + 1].to_vec()),
            _ => ("all", all),
        }
    }

    /// The directed links a network fault changes, and how.
    async fn link_faults(
        &mut self,
        fault: Fault,
    ) -> (&'static str, Vec<(usize, usize, LinkFault)>) {
        let n = self.cluster.size();
        let blocked = LinkFault {
            blocked: true,
            ..LinkFault::default()
        };
        let both = |a: usize, b: usize, out: &mut Vec<(usize, usize, LinkFault)>| {
            out.push((a, b, blocked));
            out.push((b, a, blocked));
        };
        let mut cuts = Vec::new();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let mode = match fault {
            Fault::Partition => match self.rng.gen_range(0..4) {
                0 | 1 => {
                    let (mode, lone) = match self.rng.gen_range(0..2) {
                        0 => match self.cluster.leader().await {
                            Some(l) => ("isolate-leader", l),
                            None => ("isolate-one", order[0]),
                        },
                        _ => ("isolate-one", order[0]),
                    };
                    for o in (0..n).filter(|&o| o != lone) {
                        both(lone, o, &mut cuts);
                    }
                    mode
                }
                2 => {
                    let (minority, majority) = order.split_at(n / 2);
                    for &a in minority {
                        for &b in majority {
                            both(a, b, &mut cuts);
                        }
                    }
                    "halves"
                }
                _ => {
                    // A ring: each member keeps only its ring neighbours, so with 3 or 5
                    // members every one sees a majority, but not the same one. (Three
                    // members: one pair is cut and the third bridges it.)
                    if n == 3 {
                        both(order[0], order[1], &mut cuts);
                    } else {
                        for i in 0..n {
                            for j in (i + 1)..n {
                                if (j - i).min(n - (j - i)) > 1 {
                                    both(order[i], order[j], &mut cuts);
                                }
                            }
                        }
                    }
                    "ring"
                }
            },
            Fault::Blackhole => {
                let from = match self.rng.gen_range(0..2) {
                    0 => self.cluster.leader().await.unwrap_or(order[0]),
                    _ => order[0],
                };
                for o in (0..n).filter(|&o| o != from) {
                    cuts.push((from, o, blocked));
                }
                "outbound-of-one"
            }
            Fault::Delay | Fault::Drop => {
                let f = if fault == Fault::Delay {
                    LinkFault {
                        delay: Duration::from_millis(self.rng.gen_range(20..200)),
                        ..LinkFault::default()
                    }
                } else {
                    LinkFault {
                        drop: self.rng.gen_range(0.05..0.3),
                        ..LinkFault::default()
                    }
                };
                for a in 0..n {
                    for b in (0..n).filter(|&b| b != a) {
                        cuts.push((a, b, f));
                    }
                }
                "all-links"
            }
            _ => "none",
        };
        (mode, cuts)
    }

    async fn compact(&self) -> bool {
        let revision = (self.safe_compact)();
        let value = json!({ "revision": revision });
        self.recorder
            .record(nemesis_op(OpType::Invoke, "compact", value.clone()));
        if revision <= 1 {
            let mut op = nemesis_op(OpType::Fail, "compact", value);
            op.error = Some("nothing to compact yet".into());
            self.recorder.record(op);
            return false;
        }
        let endpoints: Vec<String> = (0..self.cluster.size())
            .map(|i| self.cluster.endpoint(i).to_string())
            .collect();
        let result = match Client::connect(endpoints, client_options(Duration::from_secs(5))).await
        {
            Ok(c) => c
                .compact(CompactionRequest {
                    revision,
                    physical: false,
                })
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.record_instant("compact", value, result)
    }

    /// Defragments one member's backend (etcd rewrites its bbolt file; a member that does not
    /// support it answers Unimplemented, recorded as a failed fault).
    async fn defrag(&mut self) -> bool {
        let member = self.rng.gen_range(0..self.cluster.size());
        let value = json!({ "member": member });
        self.recorder
            .record(nemesis_op(OpType::Invoke, "defrag", value.clone()));
        let result = match self.cluster.client(member, Duration::from_secs(10)).await {
            Ok(c) => c
                .maintenance_client()
                .defragment(DefragmentRequest {})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.record_instant("defrag", value, result)
    }

    /// Records how an instant fault ended; true when it was applied.
    fn record_instant<T>(
        &self,
        f: &str,
        value: serde_json::Value,
        result: Result<T, String>,
    ) -> bool {
        let ok = result.is_ok();
        let mut op = nemesis_op(if ok { OpType::Ok } else { OpType::Fail }, f, value);
        op.error = result.err();
        self.recorder.record(op);
        ok
    }

    /// Ends every fault: links healed, paused members continued, killed ones restarted.
    async fn heal_all(&self) {
        let value = json!({"mode": "final"});
        self.recorder
            .record(nemesis_op(OpType::Invoke, "heal", value.clone()));
        self.cluster.links().heal();
        for i in 0..self.cluster.size() {
            self.cluster.signal_pause(i, false);
            if !self.cluster.is_running(i) {
                restart(&self.cluster, i);
            }
        }
        self.recorder
            .record(nemesis_op(OpType::Info, "heal", value));
    }
}

/// What a member's log shows when crash point `point` fired (the `fail` crate's panic).
fn fired_message(point: &str) -> String {
    format!("failpoint {point} panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message the server's `fail` points panic with, as its panic hook prints it.
    #[test]
    fn a_fired_point_is_told_by_its_panic_message() {
        let log = "thread 'tokio-runtime-worker' panicked at fail-0.5.1/src/lib.rs:488:25:\n\
                   failpoint raftBeforeSave panic\n";
        assert!(log.contains(&fired_message("raftBeforeSave")));
        assert!(!log.contains(&fired_message("raftAfterSave")));
    }

    #[test]
    fn fault_lists_parse() {
        assert_eq!(parse_faults("none").expect("none"), vec![]);
        assert_eq!(
            parse_faults("kill,partition").expect("two"),
            vec![Fault::Kill, Fault::Partition]
        );
        assert_eq!(parse_faults("all").expect("all").len(), Fault::ALL.len());
        assert!(parse_faults("kill,meteor").is_err());
        assert_eq!(
            parse_faults("crash,all").expect("crash and all").len(),
            Fault::ALL.len()
        );
    }
}
