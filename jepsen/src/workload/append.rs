//! The list-append workload: transactions of 1–4 micro-operations, each reading a key's list
//! or appending a unique element to it, on a few keys at a time; checked for strict
//! serializability by the Elle-style checker.
//!
//! A transaction runs optimistically, as etcd clients do: a read-only txn fetches every
//! involved key with its mod revision, then (if it appends) one txn guarded by
//! `mod_revision == seen` on each of those keys writes the new lists. A guard that fails
//! makes the whole transaction `fail` — nothing of it happened.

use super::{ops, AckedWrite, Ctx, Outcome, Proc};
use crate::checker::append::{Mop, Outcome as TxnOutcome, Txn};
use crate::history::{pairs, Op, OpType, Process};
use rand::Rng;
use serde_json::{json, Value};
use setpoint_client::proto::etcdserverpb::{response_op, TxnRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub const KEY_EPOCH: Duration = Duration::from_secs(30);
pub const KEYS_AT_ONCE: u64 = 5;
pub const PREFIX: &str = "ja/";

fn parse_list(bytes: &[u8]) -> Vec<i64> {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn encode_list(list: &[i64]) -> Vec<u8> {
    list.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// Runs one append process until the run's deadline.
pub async fn process(ctx: &Ctx, mut proc: Proc, start: Instant) {
    let mut rng = ctx.rng(proc.number);
    while ctx.running() {
        let epoch = start.elapsed().as_secs() / KEY_EPOCH.as_secs();
        let n = rng.gen_range(1..=4);
        let mut mops = Vec::new();
        for _ in 0..n {
            let key = format!(
                "{PREFIX}{}",
                epoch * KEYS_AT_ONCE + rng.gen_range(0..KEYS_AT_ONCE)
            );
            if rng.gen_bool(0.5) {
                mops.push(json!(["r", key, null]));
            } else {
                mops.push(json!(["append", key, ctx.unique()]));
            }
        }
        let invoke = Value::Array(mops.clone());
        let mut written = Vec::new();
        let acked = proc
            .invoke(ctx, "txn", invoke, |c| run_txn(c, mops, &mut written))
            .await;
        if acked.kind == OpType::Ok {
            for (key, list) in written {
                ctx.ack(AckedWrite {
                    revision: acked.revision.unwrap_or(0),
                    key: key.into_bytes(),
                    value: Some(encode_list(&list)),
                });
            }
        }
        ctx.think(&mut rng).await;
    }
}

/// Runs one transaction; on success `written` gets the new list of every appended key.
async fn run_txn(
    c: setpoint_client::Client,
    mops: Vec<Value>,
    written: &mut Vec<(String, Vec<i64>)>,
) -> Outcome {
    let invoke = Value::Array(mops.clone());
    let keys: Vec<String> = {
        let mut k: Vec<String> = mops
            .iter()
            .filter_map(|m| m[1].as_str().map(str::to_string))
            .collect();
        k.sort();
        k.dedup();
        k
    };
    // Phase 1: read every key with its mod revision.
    let read = TxnRequest {
        compare: vec![],
        success: keys.iter().map(|k| ops::range(k.as_bytes())).collect(),
        failure: vec![],
    };
    let resp = match c.txn(read).await {
        Ok(r) => r,
        Err(e) => return Outcome::from_error(invoke, &e, true),
    };
    let mut state: BTreeMap<String, (Vec<i64>, i64)> = BTreeMap::new();
    for (k, r) in keys.iter().zip(resp.responses.iter()) {
        let (list, rev) = match &r.response {
            Some(response_op::Response::ResponseRange(rr)) => match rr.kvs.first() {
                Some(kv) => (parse_list(&kv.value), kv.mod_revision),
                None => (Vec::new(), 0),
            },
            _ => (Vec::new(), 0),
        };
        state.insert(k.clone(), (list, rev));
    }
    // Apply the mops locally, filling in reads.
    let mut done = Vec::new();
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    for m in &mops {
        let key = m[1].as_str().unwrap_or("").to_string();
        let entry = state.entry(key.clone()).or_insert((Vec::new(), 0));
        if m[0] == "append" {
            if let Some(v) = m[2].as_i64() {
                entry.0.push(v);
                dirty.insert(key);
            }
            done.push(m.clone());
        } else {
            done.push(json!(["r", key, entry.0.clone()]));
        }
    }
    let done = Value::Array(done);
    let read_revision = resp.header.map(|h| h.revision).unwrap_or(0);
    if dirty.is_empty() {
        return Outcome::ok(done, read_revision);
    }
    // Phase 2: write the new lists if nothing involved changed since phase 1.
    let write = TxnRequest {
        compare: state
            .iter()
            .map(|(k, (_, rev))| ops::mod_revision_is(k.as_bytes(), *rev))
            .collect(),
        success: dirty
            .iter()
            .filter_map(|k| {
                state
                    .get(k)
                    .map(|(list, _)| ops::put(k.as_bytes(), &encode_list(list)))
            })
            .collect(),
        failure: vec![],
    };
    match c.txn(write).await {
        Ok(r) if r.succeeded => {
            for k in &dirty {
                if let Some((list, _)) = state.get(k) {
                    written.push((k.clone(), list.clone()));
                }
            }
            Outcome::ok(done, r.header.map(|h| h.revision).unwrap_or(0))
        }
        Ok(_) => Outcome::fail(invoke, "a key changed between read and write"),
        Err(e) => Outcome::from_error(invoke, &e, false),
    }
}

/// Whether `op` belongs to this workload.
pub fn owns(op: &Op) -> bool {
    op.f == "txn"
}

/// The transactions of a history as the list-append checker's input.
pub fn txns(history: &[Op]) -> Vec<Txn> {
    let mine: Vec<Op> = history.iter().filter(|o| owns(o)).cloned().collect();
    let mut out = Vec::new();
    for (inv, done) in pairs(&mine) {
        let Process::Client(process) = inv.process else {
            continue;
        };
        let source = if done.kind == OpType::Ok {
            &done.value
        } else {
            &inv.value
        };
        let mops = source
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let key = m[1].as_str().unwrap_or("").to_string();
                        if m[0] == "append" {
                            Mop::Append {
                                key,
                                value: m[2].as_i64().unwrap_or(0),
                            }
                        } else {
                            Mop::Read {
                                key,
                                values: m[2]
                                    .as_array()
                                    .map(|vs| vs.iter().filter_map(Value::as_i64).collect()),
                            }
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (outcome, complete) = match done.kind {
            OpType::Ok => (TxnOutcome::Ok, Some(done.time)),
            OpType::Fail => (TxnOutcome::Fail, Some(done.time)),
            _ => (TxnOutcome::Info, None),
        };
        out.push(Txn {
            id: inv.index as usize,
            process,
            invoke: inv.time,
            complete,
            outcome,
            mops,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, kind: OpType, value: Value, time: u64) -> Op {
        Op {
            index: time,
            time,
            process: Process::Client(process),
            kind,
            f: "txn".into(),
            value,
            error: None,
            member: Some(0),
            revision: None,
        }
    }

    #[test]
    fn lists_round_trip() {
        assert_eq!(parse_list(&encode_list(&[3, 1, 2])), vec![3, 1, 2]);
        assert_eq!(parse_list(b""), Vec::<i64>::new());
    }

    #[test]
    fn history_becomes_txns_with_reads_from_the_completion() {
        let h = vec![
            op(
                0,
                OpType::Invoke,
                json!([["append", "ja/0", 1], ["r", "ja/0", null]]),
                1,
            ),
            op(1, OpType::Invoke, json!([["append", "ja/1", 2]]), 2),
            op(
                0,
                OpType::Ok,
                json!([["append", "ja/0", 1], ["r", "ja/0", [1]]]),
                3,
            ),
            op(1, OpType::Info, json!([["append", "ja/1", 2]]), 4),
        ];
        let t = txns(&h);
        assert_eq!(t.len(), 2);
        assert!(matches!(t[0].outcome, TxnOutcome::Ok));
        assert_eq!(t[0].complete, Some(3));
        match &t[0].mops[1] {
            Mop::Read { key, values } => {
                assert_eq!(key, "ja/0");
                assert_eq!(values.as_deref(), Some(&[1][..]));
            }
            _ => panic!("expected a read"),
        }
        assert!(matches!(t[1].outcome, TxnOutcome::Info));
        assert_eq!(t[1].complete, None);
    }
}
