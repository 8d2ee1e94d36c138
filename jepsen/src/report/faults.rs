//! The nemesis's side of a history, as the report draws it: fault windows (a `start-KIND`
//! to its `stop-KIND`, or to the run's end) and instant faults (compaction, the final heal).
//! It reads only nemesis ops; it says nothing about whether a fault worked.

use crate::history::{Op, OpType, Process};
use serde_json::Value;

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
pub(super) struct NemesisEvent {
    pub(super) f: String,
    /// The completion's time if there was one, else the invocation's.
    pub(super) time: u64,
    /// The completion's type, or `Invoke` if none was recorded.
    pub(super) kind: OpType,
    pub(super) value: Value,
    pub(super) error: Option<String>,
}

/// The last finite timestamp in the history: the run's end, to which anything unfinished or
/// never closed is clamped.
pub(super) fn run_end(history: &[Op]) -> u64 {
    history
        .iter()
        .map(|o| o.time)
        .filter(|&t| t != u64::MAX)
        .max()
        .unwrap_or(0)
}

pub(super) fn nemesis_events(history: &[Op]) -> Vec<NemesisEvent> {
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
pub(super) fn instant_faults(history: &[Op]) -> Vec<NemesisEvent> {
    nemesis_events(history)
        .into_iter()
        .filter(|e| !e.f.starts_with("start-") && !e.f.starts_with("stop-"))
        .collect()
}
