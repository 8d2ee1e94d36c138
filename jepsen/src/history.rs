//! The recorded history of a run, in Jepsen's shape: every operation a client process
//! started (`invoke`) and how it ended (`ok`, `fail` — certainly not applied — or `info` —
//! outcome unknown), and every fault the nemesis applied, as JSON lines.
//!
//! This module only records and reads; what an operation means is its workload's business,
//! whether it was allowed is a checker's.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Who performed an operation: a client process (a number, renumbered after an `info`, as
/// Jepsen does) or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Nemesis(NemesisTag),
}

/// Serializes as the string `"nemesis"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisTag {
    Nemesis,
}

impl Process {
    pub const NEMESIS: Process = Process::Nemesis(NemesisTag::Nemesis);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The operation's name: `read`, `write`, `cas`, `txn`, `add`, `watch`, or a fault.
    pub f: String,
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Index of the member the client spoke to (or the fault's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<usize>,
    /// The response header's revision, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

/// Pairs every client `invoke` with the next completion of the same process. An invocation
/// with no completion (the run ended first) is paired with a synthetic `info` at the end of
/// time, so checkers see it as possibly applied.
pub fn pairs(history: &[Op]) -> Vec<(Op, Op)> {
    use std::collections::HashMap;
    let mut open: HashMap<Process, usize> = HashMap::new();
    let mut out: Vec<(usize, Op, Op)> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        if op.process == Process::NEMESIS {
            continue;
        }
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process, i);
            }
            _ => {
                if let Some(inv) = open.remove(&op.process) {
                    out.push((inv, history[inv].clone(), op.clone()));
                }
            }
        }
    }
    for (_, inv) in open {
        let op = &history[inv];
        let mut info = op.clone();
        info.kind = OpType::Info;
        info.time = u64::MAX;
        info.error = Some("run ended before the operation completed".into());
        out.push((inv, op.clone(), info));
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, a, b)| (a, b)).collect()
}

/// The history as it is being recorded: appended to by every client and the nemesis, written
/// to a JSON-lines file as it grows, so a crashed run still leaves what it did.
pub struct Recorder {
    start: Instant,
    next: AtomicU64,
    inner: Mutex<RecorderInner>,
}

struct RecorderInner {
    ops: Vec<Op>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    pub fn new(file: Option<std::fs::File>) -> Recorder {
        Recorder {
            start: Instant::now(),
            next: AtomicU64::new(0),
            inner: Mutex::new(RecorderInner {
                ops: Vec::new(),
                file: file.map(std::io::BufWriter::new),
            }),
        }
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn started(&self) -> Instant {
        self.start
    }

    /// Appends `op`, giving it its index and time; returns the stored copy.
    pub fn record(&self, mut op: Op) -> Op {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        op.index = self.next.fetch_add(1, Ordering::SeqCst);
        op.time = self.now();
        if let Some(f) = inner.file.as_mut() {
            if let Ok(line) = serde_json::to_string(&op) {
                let _ = writeln!(f, "{line}");
            }
        }
        inner.ops.push(op.clone());
        op
    }

    /// Flushes the file and returns everything recorded so far.
    pub fn snapshot(&self) -> Vec<Op> {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(f) = inner.file.as_mut() {
            let _ = f.flush();
        }
        inner.ops.clone()
    }
}

/// Reads a history file written by [`Recorder`].
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: Process, kind: OpType, f: &str, value: serde_json::Value) -> Op {
        Op {
            index: 0,
            time: 0,
            process,
            kind,
            f: f.into(),
            value,
            error: None,
            member: None,
            revision: None,
        }
    }

    #[test]
    fn ops_are_written_in_jepsens_shape_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let rec = Recorder::new(Some(std::fs::File::create(&path).expect("create")));
        rec.record(op(
            Process::Client(3),
            OpType::Invoke,
            "write",
            json!(["x", 1]),
        ));
        rec.record(op(Process::NEMESIS, OpType::Info, "kill", json!([0])));
        rec.record(op(Process::Client(3), OpType::Ok, "write", json!(["x", 1])));
        let mem = rec.snapshot();
        let text = std::fs::read_to_string(&path).expect("read");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["process"], json!(3));
        assert_eq!(first["type"], json!("invoke"));
        assert_eq!(first["f"], json!("write"));
        let second: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).expect("a line")).expect("json");
        assert_eq!(second["process"], json!("nemesis"));
        assert_eq!(read(&path).expect("read back"), mem);
        assert_eq!(mem.iter().map(|o| o.index).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn an_unfinished_invocation_becomes_info() {
        let h = vec![
            op(Process::Client(0), OpType::Invoke, "write", json!(["x", 1])),
            op(
                Process::Client(1),
                OpType::Invoke,
                "read",
                json!(["x", null]),
            ),
            op(Process::Client(1), OpType::Ok, "read", json!(["x", 1])),
        ];
        let p = pairs(&h);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0.f, "write");
        assert_eq!(p[0].1.kind, OpType::Info);
        assert_eq!(p[1].1.kind, OpType::Ok);
    }
}
