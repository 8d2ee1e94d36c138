//! The register workload: reads, writes and compare-and-set (a txn comparing the value) on a
//! few keys at a time, each written value unique; checked for linearizability per key.
//! Keys rotate every [`KEY_EPOCH`] so each key's history stays small enough to search.
//!
//! Reads are linearizable unless the run asks for serializable ones (which a partitioned
//! minority answers from its own, possibly stale, state — the checker must catch that).

use super::{ops, parse_i64, AckedWrite, Ctx, Outcome, Proc};
use crate::checker::linearizable::{Call, RegisterOp};
use crate::history::{pairs, Op, OpType, Process};
use rand::Rng;
use serde_json::json;
use setpoint_client::proto::etcdserverpb::{PutRequest, RangeRequest, TxnRequest};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a set of keys is in use before the next set takes over.
pub const KEY_EPOCH: Duration = Duration::from_secs(20);
/// Keys in use at a time.
pub const KEYS_AT_ONCE: u64 = 3;
pub const PREFIX: &str = "jr/";

fn key_name(id: u64) -> String {
    format!("{PREFIX}{id}")
}

/// Runs one register process until the run's deadline.
pub async fn process(ctx: &Ctx, mut proc: Proc, start: Instant) {
    let mut rng = ctx.rng(proc.number);
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    while ctx.running() {
        let epoch = start.elapsed().as_secs() / KEY_EPOCH.as_secs();
        let key = key_name(epoch * KEYS_AT_ONCE + rng.gen_range(0..KEYS_AT_ONCE));
        let kb = key.clone().into_bytes();
        let serializable = ctx.serializable_reads;
        match rng.gen_range(0..4) {
            0 | 1 => {
                let outcome = proc
                    .invoke(ctx, "read", json!([key, null]), |c| async move {
                        let req = RangeRequest {
                            key: kb,
                            serializable,
                            ..Default::default()
                        };
                        match c.range(req).await {
                            Ok(r) => {
                                let v = r.kvs.first().and_then(|kv| parse_i64(&kv.value));
                                let rev = r.header.map(|h| h.revision).unwrap_or(0);
                                Outcome::ok(json!([key, v]), rev)
                            }
                            Err(e) => Outcome::from_error(json!([key, null]), &e, true),
                        }
                    })
                    .await;
                if let Some(v) = outcome.value[1].as_i64() {
                    last_seen.insert(outcome.value[0].as_str().unwrap_or("").to_string(), v);
                }
            }
            2 => {
                let v = ctx.unique();
                let value = json!([key, v]);
                let acked = proc
                    .invoke(ctx, "write", value.clone(), |c| async move {
                        let req = PutRequest {
                            key: kb,
                            value: v.to_string().into_bytes(),
                            ..Default::default()
                        };
                        match c.put(req).await {
                            Ok(r) => Outcome::ok(value, r.header.map(|h| h.revision).unwrap_or(0)),
                            Err(e) => Outcome::from_error(value, &e, false),
                        }
                    })
                    .await;
                written(ctx, &acked, key, v, &mut last_seen);
            }
            _ => {
                let from = last_seen.get(&key).copied().unwrap_or(0);
                let to = ctx.unique();
                let value = json!([key, [from, to]]);
                let acked = proc
                    .invoke(ctx, "cas", value.clone(), |c| async move {
                        let req = TxnRequest {
                            compare: vec![ops::value_is(&kb, from.to_string().as_bytes())],
                            success: vec![ops::put(&kb, to.to_string().as_bytes())],
                            failure: vec![],
                        };
                        match c.txn(req).await {
                            Ok(r) => {
                                let rev = r.header.map(|h| h.revision).unwrap_or(0);
                                if r.succeeded {
                                    Outcome::ok(value, rev)
                                } else {
                                    Outcome::fail(value, "compare failed")
                                }
                            }
                            Err(e) => Outcome::from_error(value, &e, false),
                        }
                    })
                    .await;
                written(ctx, &acked, key, to, &mut last_seen);
            }
        }
        ctx.think(&mut rng).await;
    }
}

/// After a write or cas: if acknowledged, the history must hold it, and this process has seen
/// the value.
fn written(
    ctx: &Ctx,
    outcome: &Outcome,
    key: String,
    value: i64,
    last_seen: &mut HashMap<String, i64>,
) {
    if outcome.kind == OpType::Ok {
        ctx.ack(AckedWrite {
            revision: outcome.revision.unwrap_or(0),
            key: key.clone().into_bytes(),
            value: Some(value.to_string().into_bytes()),
        });
        last_seen.insert(key, value);
    }
}

/// The register operations of a history as the linearizability checker's calls: failed ones
/// dropped (they did not happen), unknown ones open-ended.
pub fn calls(history: &[Op]) -> Vec<Call> {
    let mine: Vec<Op> = history.iter().filter(|o| owns(o)).cloned().collect();
    let mut out = Vec::new();
    for (inv, done) in pairs(&mine) {
        let Process::Client(process) = inv.process else {
            continue;
        };
        let Some(key) = inv.value[0].as_str() else {
            continue;
        };
        let op = match (inv.f.as_str(), done.kind) {
            (_, OpType::Fail) => continue,
            ("read", OpType::Ok) => RegisterOp::Read(done.value[1].as_i64()),
            ("read", _) => continue,
            ("write", _) => match inv.value[1].as_i64() {
                Some(v) => RegisterOp::Write(v),
                None => continue,
            },
            ("cas", _) => match (inv.value[1][0].as_i64(), inv.value[1][1].as_i64()) {
                (Some(from), Some(to)) => RegisterOp::Cas { from, to },
                _ => continue,
            },
            _ => continue,
        };
        out.push(Call {
            id: inv.index as usize,
            process,
            key: key.to_string(),
            invoke: inv.time,
            complete: (done.kind == OpType::Ok).then_some(done.time),
            op,
        });
    }
    out
}

/// Whether `op` belongs to this workload.
pub fn owns(op: &Op) -> bool {
    matches!(op.f.as_str(), "read" | "write" | "cas")
        && op.value[0].as_str().is_some_and(|k| k.starts_with(PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, kind: OpType, f: &str, value: serde_json::Value, time: u64) -> Op {
        Op {
            index: time,
            time,
            process: Process::Client(process),
            kind,
            f: f.into(),
            value,
            error: None,
            member: Some(0),
            revision: None,
        }
    }

    #[test]
    fn history_becomes_calls_failed_dropped_unknown_open_ended() {
        let h = vec![
            op(0, OpType::Invoke, "write", json!(["jr/0", 5]), 1),
            op(1, OpType::Invoke, "read", json!(["jr/0", null]), 2),
            op(2, OpType::Invoke, "cas", json!(["jr/0", [5, 6]]), 3),
            op(3, OpType::Invoke, "cas", json!(["jr/0", [1, 7]]), 4),
            op(0, OpType::Ok, "write", json!(["jr/0", 5]), 5),
            op(1, OpType::Ok, "read", json!(["jr/0", 5]), 6),
            op(2, OpType::Info, "cas", json!(["jr/0", [5, 6]]), 7),
            op(3, OpType::Fail, "cas", json!(["jr/0", [1, 7]]), 8),
            op(4, OpType::Invoke, "add", json!(9), 9),
        ];
        let calls = calls(&h);
        assert_eq!(
            calls.len(),
            3,
            "the failed cas and the foreign op are not calls"
        );
        assert!(matches!(calls[0].op, RegisterOp::Write(5)));
        assert_eq!(calls[0].complete, Some(5));
        assert!(matches!(calls[1].op, RegisterOp::Read(Some(5))));
        assert!(matches!(calls[2].op, RegisterOp::Cas { from: 5, to: 6 }));
        assert_eq!(
            calls[2].complete, None,
            "an info cas may take effect any time"
        );
        assert_eq!(calls[2].key, "jr/0");
    }
}
