//! The `txn-put` load, as etcd's `benchmark txn-put`: transactions without
//! conditions whose success branch is `--txn-ops` puts, to consecutive keys
//! of the key space (txn i writes keys i*ops .. i*ops+ops-1, mod the key
//! space), timed per transaction.

use std::sync::Arc;

use anyhow::ensure;
use clap::Args;
use serde::Serialize;
use setpoint_client::proto::etcdserverpb::request_op::Request;
use setpoint_client::proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use setpoint_client::Client;

use crate::load::{self, BoxFut};
use crate::outcome::Outcome;
use crate::put::key_for;
use crate::report;
use crate::setup::Setup;

#[derive(Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TxnPutArgs {
    /// Total number of txns.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Distinct keys the puts go to (at least --txn-ops: a txn may not put
    /// one key twice).
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Puts per txn.
    #[arg(long, default_value_t = 1)]
    txn_ops: u64,
    /// Txns per second overall; 0 means as fast as the clients go.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// The txn number `i`: `ops` puts, no compares.
fn txn_for(i: u64, args: &TxnPutArgs, value: &[u8]) -> TxnRequest {
    let success = (0..args.txn_ops)
        .map(|j| RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key_for(
                    i.wrapping_mul(args.txn_ops).wrapping_add(j),
                    args.key_size,
                    args.key_space_size,
                    true,
                ),
                value: value.to_vec(),
                ..Default::default()
            })),
        })
        .collect();
    TxnRequest {
        success,
        ..Default::default()
    }
}

pub async fn run(setup: &Setup, args: TxnPutArgs) -> anyhow::Result<()> {
    ensure!(args.key_space_size > 0, "--key-space-size must be positive");
    ensure!(args.txn_ops > 0, "--txn-ops must be positive");
    ensure!(
        args.txn_ops <= args.key_space_size,
        "--txn-ops ({}) must not exceed --key-space-size ({}): a txn may not put one key twice",
        args.txn_ops,
        args.key_space_size
    );
    let params = setup.params(&args);
    let (total, rate) = (args.total, args.rate);
    let value = vec![b'v'; args.val_size];
    let args = Arc::new(args);
    let op = Arc::new(move |c: Client, _w: usize, i: u64| {
        let req = txn_for(i, &args, &value);
        Box::pin(async move { c.txn(req).await.map(|_| ()).map_err(|e| e.to_string()) }) as BoxFut
    });
    let result = load::run(setup, "txn-put", total, rate, op).await?;
    let out = Outcome {
        load: "txn-put",
        params,
        result,
        events: None,
    };
    report::requests(&out);
    out.publish(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txns_put_distinct_consecutive_keys() {
        let args = TxnPutArgs {
            total: 10,
            key_size: 4,
            val_size: 2,
            key_space_size: 5,
            txn_ops: 3,
            rate: 0,
        };
        let keys = |i| -> Vec<Vec<u8>> {
            txn_for(i, &args, b"vv")
                .success
                .into_iter()
                .filter_map(|op| match op.request {
                    Some(Request::RequestPut(p)) => Some(p.key),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(keys(0), [b"0000", b"0001", b"0002"]);
        assert_eq!(keys(1), [b"0003", b"0004", b"0000"]);
        assert!(txn_for(0, &args, b"vv").compare.is_empty());
    }
}
