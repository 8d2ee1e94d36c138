//! etcd's KV write operations as one write transaction: Put, DeleteRange and Txn (with
//! compares and nested txns), executed against an `mvcc::WriteTxn`.
//!
//! Everything here is deterministic: same store, same request, same result on every member.
//! A request that fails its checks changes nothing (checks run before the first write, as
//! etcd's `checkRequests` does). Request validation that needs no state (empty key, op count,
//! duplicate keys) belongs to the API layer, not here.

use setpoint_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use setpoint_proto::mvccpb::KeyValue;

use crate::error::{Error, Result};
use crate::mvcc::WriteTxn;
use crate::storage::Engine;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The revision a read inside this txn sees: the next one once the txn has written.
fn view_revision<E: Engine>(txn: &WriteTxn<'_, E>, begin: i64) -> i64 {
    if txn.changes().is_empty() {
        begin
    } else {
        begin + 1
    }
}

fn check_put<E: Engine>(txn: &WriteTxn<'_, E>, req: &PutRequest) -> Result<()> {
    if req.lease != 0 {
        // Leases are not built yet: no lease exists, as etcd answers for an unknown one.
        return Err(Error::LeaseNotFound);
    }
    if (req.ignore_value || req.ignore_lease) && !txn.exists(&req.key)? {
        return Err(Error::KeyNotFound);
    }
    Ok(())
}

pub fn put<E: Engine>(
    txn: &mut WriteTxn<'_, E>,
    req: &PutRequest,
    begin: i64,
) -> Result<PutResponse> {
    check_put(txn, req)?;
    let prev_kv = txn.put_with(
        &req.key,
        &req.value,
        req.lease,
        req.ignore_value,
        req.ignore_lease,
        req.prev_kv,
    )?;
    Ok(PutResponse {
        header: header(begin + 1),
        prev_kv,
    })
}

pub fn delete_range<E: Engine>(
    txn: &mut WriteTxn<'_, E>,
    req: &DeleteRangeRequest,
    begin: i64,
) -> Result<DeleteRangeResponse> {
    let deleted = txn.delete_range_with(&req.key, &req.range_end, req.prev_kv)?;
    let n = deleted.len() as i64;
    Ok(DeleteRangeResponse {
        header: header(if n > 0 { begin + 1 } else { begin }),
        deleted: n,
        prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
    })
}

fn range<E: Engine>(
    txn: &WriteTxn<'_, E>,
    req: &RangeRequest,
    begin: i64,
) -> Result<RangeResponse> {
    let out = txn.range(req)?;
    Ok(RangeResponse {
        header: header(view_revision(txn, begin)),
        kvs: out.kvs,
        more: out.more,
        count: out.count,
    })
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ordering = match c.target() {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Create => {
            let want = match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => v,
                _ => 0,
            };
            kv.create_revision.cmp(&want)
        }
        CompareTarget::Mod => {
            let want = match c.target_union {
                Some(TargetUnion::ModRevision(v)) => v,
                _ => 0,
            };
            kv.mod_revision.cmp(&want)
        }
        CompareTarget::Version => {
            let want = match c.target_union {
                Some(TargetUnion::Version(v)) => v,
                _ => 0,
            };
            kv.version.cmp(&want)
        }
        CompareTarget::Lease => {
            let want = match c.target_union {
                Some(TargetUnion::Lease(v)) => v,
                _ => 0,
            };
            kv.lease.cmp(&want)
        }
    };
    match c.result() {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// A compare holds when it holds for every key in its range; over no key, it is judged
/// against an empty key-value (and a VALUE compare fails), as etcd does.
fn compare_holds<E: Engine>(txn: &WriteTxn<'_, E>, c: &Compare) -> Result<bool> {
    let found = txn.range(&RangeRequest {
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        ..Default::default()
    })?;
    if found.kvs.is_empty() {
        if c.target() == compare::CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(found.kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// The branch every (nested) txn takes, decided on the state before any write, in the order
/// the txns are met depth-first — etcd's "txn path".
fn txn_path<E: Engine>(
    txn: &WriteTxn<'_, E>,
    req: &TxnRequest,
    path: &mut Vec<bool>,
) -> Result<()> {
    let mut ok = true;
    for c in &req.compare {
        if !compare_holds(txn, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    let ops = if ok { &req.success } else { &req.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            txn_path(txn, inner, path)?;
        }
    }
    Ok(())
}

/// Checks every op on the chosen path before anything is written.
fn check_path<E: Engine>(
    txn: &WriteTxn<'_, E>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<()> {
    let ok = path.get(*at).copied().unwrap_or(false);
    *at += 1;
    let ops = if ok { &req.success } else { &req.failure };
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => check_put(txn, p)?,
            Some(request_op::Request::RequestRange(r)) => {
                if r.revision != 0 {
                    // Surfaces Compacted / FutureRevision before the txn writes anything.
                    txn.range(&RangeRequest {
                        key: r.key.clone(),
                        range_end: r.range_end.clone(),
                        revision: r.revision,
                        count_only: true,
                        ..Default::default()
                    })?;
                }
            }
            Some(request_op::Request::RequestTxn(inner)) => check_path(txn, inner, path, at)?,
            Some(request_op::Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

fn run_path<E: Engine>(
    txn: &mut WriteTxn<'_, E>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    begin: i64,
    top: bool,
) -> Result<TxnResponse> {
    let ok = path.get(*at).copied().unwrap_or(false);
    *at += 1;
    let ops = if ok { &req.success } else { &req.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                Some(response_op::Response::ResponseRange(range(txn, r, begin)?))
            }
            Some(request_op::Request::RequestPut(p)) => {
                Some(response_op::Response::ResponsePut(put(txn, p, begin)?))
            }
            Some(request_op::Request::RequestDeleteRange(d)) => Some(
                response_op::Response::ResponseDeleteRange(delete_range(txn, d, begin)?),
            ),
            Some(request_op::Request::RequestTxn(inner)) => Some(
                response_op::Response::ResponseTxn(run_path(txn, inner, path, at, begin, false)?),
            ),
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        // Nested txns carry an empty header, as etcd's do; the top one gets its revision.
        header: if top {
            header(view_revision(txn, begin))
        } else {
            Some(ResponseHeader::default())
        },
        succeeded: ok,
        responses,
    })
}

pub fn txn<E: Engine>(
    txn: &mut WriteTxn<'_, E>,
    req: &TxnRequest,
    begin: i64,
) -> Result<TxnResponse> {
    let mut path = Vec::new();
    txn_path(txn, req, &mut path)?;
    check_path(txn, req, &path, &mut 0)?;
    run_path(txn, req, &path, &mut 0, begin, true)
}
