//! The set workload: unique adds (one key per element), then, after every fault is healed,
//! a full read of the set on every member. Every acknowledged add must be in every final
//! read — a cheap durability check across kills of any number of members.

use super::{parse_i64, AckedWrite, Ctx, Outcome, Proc};
use crate::checker::set::{Add, Outcome as AddOutcome};
use crate::history::{pairs, Op, OpType};
use anyhow::{bail, Result};
use serde_json::json;
use setpoint_client::prefix_range_end;
use setpoint_client::proto::etcdserverpb::{PutRequest, RangeRequest};
use std::time::{Duration, Instant};

pub const PREFIX: &str = "js/";

/// Runs one set process until the run's deadline.
pub async fn process(ctx: &Ctx, mut proc: Proc) {
    let mut rng = ctx.rng(proc.number);
    while ctx.running() {
        let v = ctx.unique();
        let key = format!("{PREFIX}{v}");
        let kb = key.clone().into_bytes();
        let acked = proc
            .invoke(ctx, "add", json!(v), |c| async move {
                let req = PutRequest {
                    key: kb,
                    value: v.to_string().into_bytes(),
                    ..Default::default()
                };
                match c.put(req).await {
                    Ok(r) => Outcome::ok(json!(v), r.header.map(|h| h.revision).unwrap_or(0)),
                    Err(e) => Outcome::from_error(json!(v), &e, false),
                }
            })
            .await;
        if acked.kind == OpType::Ok {
            ctx.ack(AckedWrite {
                revision: acked.revision.unwrap_or(0),
                key: key.into_bytes(),
                value: Some(v.to_string().into_bytes()),
            });
        }
        ctx.think(&mut rng).await;
    }
}

/// Reads the whole set on member `member` (linearizable, so served once the member has
/// caught up), retrying for up to `limit`.
pub async fn final_read(ctx: &Ctx, member: usize, limit: Duration) -> Result<Vec<i64>> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match ctx.cluster.client(member, ctx.timeout).await {
            Ok(c) => {
                let req = RangeRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_range_end(PREFIX.as_bytes()),
                    ..Default::default()
                };
                match c.range(req).await {
                    Ok(r) => {
                        let mut vals: Vec<i64> =
                            r.kvs.iter().filter_map(|kv| parse_i64(&kv.value)).collect();
                        vals.sort_unstable();
                        return Ok(vals);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("final read of the set on member {member} failed for {limit:?}: {last}")
}

pub fn owns(op: &Op) -> bool {
    op.f == "add"
}

/// The adds of a history as the set checker's input.
pub fn adds(history: &[Op]) -> Vec<Add> {
    let mine: Vec<Op> = history.iter().filter(|o| owns(o)).cloned().collect();
    pairs(&mine)
        .into_iter()
        .filter_map(|(inv, done)| {
            Some(Add {
                id: inv.index as usize,
                value: inv.value.as_i64()?,
                outcome: match done.kind {
                    OpType::Ok => AddOutcome::Ok,
                    OpType::Fail => AddOutcome::Fail,
                    _ => AddOutcome::Info,
                },
            })
        })
        .collect()
}
