//! Stateless checks of client requests, before anything is proposed: etcd's answers for an
//! empty key, conflicting flags, too many txn operations, and a key written twice in a txn.
//!
//! What needs the store (revisions, key existence, leases) is checked in `apply`, where the
//! state is; nothing here reads state.

use setpoint_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::error::{Error, Result};

pub fn range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd's txn checks: op count (the largest of compares, success and failure, per level),
/// every op's own checks, then put/delete overlaps in each branch.
pub fn txn(r: &TxnRequest, max_ops: usize) -> Result<()> {
    check_txn_ops(r, max_ops)?;
    Intervals::of(&r.success)?;
    Intervals::of(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_ops: usize) -> Result<()> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<()> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => range(r),
        Some(request_op::Request::RequestPut(p)) => put(p),
        Some(request_op::Request::RequestDeleteRange(d)) => delete_range(d),
        Some(request_op::Request::RequestTxn(t)) => check_txn_ops(t, max_ops),
        None => Err(Error::KeyNotFound),
    }
}

/// Keys put and ranges deleted by one branch (and the branches nested in it).
#[derive(Default)]
struct Intervals {
    puts: Vec<Vec<u8>>,
    /// (key, range_end) as the request gave them.
    dels: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Intervals {
    fn deletes(&self, key: &[u8]) -> bool {
        self.dels.iter().any(|(start, end)| {
            if end.is_empty() {
                key == start.as_slice()
            } else if end.as_slice() == b"\0" {
                key >= start.as_slice()
            } else {
                key >= start.as_slice() && key < end.as_slice()
            }
        })
    }

    fn of(ops: &[RequestOp]) -> Result<Intervals> {
        let mut this = Intervals::default();
        for op in ops {
            if let Some(request_op::Request::RequestDeleteRange(d)) = &op.request {
                this.dels.push((d.key.clone(), d.range_end.clone()));
            }
        }
        let mut nested_dels = Vec::new();
        for op in ops {
            let Some(request_op::Request::RequestTxn(t)) = &op.request else {
                continue;
            };
            let then = Intervals::of(&t.success)?;
            let otherwise = Intervals::of(&t.failure)?;
            for k in &then.puts {
                if this.puts.contains(k) || this.deletes(k) {
                    return Err(Error::DuplicateKey);
                }
                this.puts.push(k.clone());
            }
            for k in &otherwise.puts {
                // A key in both branches of one txn is fine: only one branch runs.
                if (this.puts.contains(k) && !then.puts.contains(k)) || this.deletes(k) {
                    return Err(Error::DuplicateKey);
                }
                if !this.puts.contains(k) {
                    this.puts.push(k.clone());
                }
            }
            nested_dels.extend(then.dels);
            nested_dels.extend(otherwise.dels);
        }
        this.dels.extend(nested_dels);
        for op in ops {
            if let Some(request_op::Request::RequestPut(p)) = &op.request {
                if this.puts.contains(&p.key) || this.deletes(&p.key) {
                    return Err(Error::DuplicateKey);
                }
                this.puts.push(p.key.clone());
            }
        }
        Ok(this)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    fn check(success: Vec<RequestOp>) -> Result<()> {
        txn(
            &TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            },
            128,
        )
    }

    #[test]
    fn duplicate_puts_and_put_inside_deleted_range_are_rejected() {
        assert_eq!(
            check(vec![put_op("a"), put_op("a")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check(vec![del_op("a", "c"), put_op("b")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check(vec![del_op("a", ""), put_op("a")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(check(vec![del_op("a", "c"), put_op("c")]), Ok(()));
        assert_eq!(check(vec![put_op("a"), put_op("b")]), Ok(()));
        // then/else of one nested txn may both put the same key
        assert_eq!(
            check(vec![txn_op(vec![put_op("x")], vec![put_op("x")])]),
            Ok(())
        );
    }

    #[test]
    fn op_limits_and_empty_keys() {
        let many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(check(many), Err(Error::TooManyOps));
        assert_eq!(check(vec![put_op("")]), Err(Error::EmptyKey));
        assert_eq!(
            check(vec![RequestOp { request: None }]),
            Err(Error::KeyNotFound)
        );
        assert_eq!(
            put(&PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
            Err(Error::ValueProvided)
        );
    }
}
