//! Requests etcdctl cannot make (nested txns, every sort target, min/max revision filters,
//! reads inside a txn after its own write, duplicate-key and op-limit errors) sent with our
//! client to the real etcd and to Setpoint: the responses must be equal, headers' ids and
//! terms aside.

mod common;

use common::{etcd_bin, setpoint_bin, Cluster};
use setpoint_client::proto::etcdserverpb::{
    compare, range_request, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, ResponseHeader, TxnRequest,
};
use setpoint_client::{Client, ConnectOptions};

fn put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            prev_kv: true,
            ..Default::default()
        })),
    }
}

fn get(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

fn del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                prev_kv: true,
            },
        )),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn cmp_version(k: &str, result: compare::CompareResult, v: i64) -> Compare {
    Compare {
        result: result as i32,
        target: compare::CompareTarget::Version as i32,
        key: k.into(),
        target_union: Some(compare::TargetUnion::Version(v)),
        range_end: vec![],
    }
}

fn cmp_value(k: &str, end: &str, result: compare::CompareResult, v: &str) -> Compare {
    Compare {
        result: result as i32,
        target: compare::CompareTarget::Value as i32,
        key: k.into(),
        target_union: Some(compare::TargetUnion::Value(v.into())),
        range_end: end.into(),
    }
}

fn scrub(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

/// Runs the script and renders every answer (or error code and message) as text.
async fn script(endpoint: String) -> Vec<String> {
    use compare::CompareResult::*;
    let c = Client::connect(vec![endpoint], ConnectOptions::default())
        .await
        .expect("connect");
    let mut out = Vec::new();
    macro_rules! record {
        ($e:expr) => {
            match $e {
                Ok(mut r) => {
                    scrub(&mut r.header);
                    out.push(format!("{:?}", r));
                }
                Err(e) => out.push(format!(
                    "error {:?}: {}",
                    e.code(),
                    e.message().unwrap_or_default()
                )),
            }
        };
    }
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("b", "4"), ("d", "0")] {
        record!(
            c.put(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })
            .await
        );
    }
    // Every sort target, both orders; filters; limit with sort.
    for target in [
        range_request::SortTarget::Key,
        range_request::SortTarget::Version,
        range_request::SortTarget::Create,
        range_request::SortTarget::Mod,
        range_request::SortTarget::Value,
    ] {
        for order in [
            range_request::SortOrder::None,
            range_request::SortOrder::Ascend,
            range_request::SortOrder::Descend,
        ] {
            record!(
                c.range(RangeRequest {
                    key: b"a".to_vec(),
                    range_end: b"z".to_vec(),
                    sort_target: target as i32,
                    sort_order: order as i32,
                    limit: 3,
                    ..Default::default()
                })
                .await
            );
        }
    }
    record!(
        c.range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"\0".to_vec(),
            min_mod_revision: 3,
            max_create_revision: 5,
            ..Default::default()
        })
        .await
    );
    record!(
        c.range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
    );
    // Txns: read own write, nested txns on both branches, compares over ranges.
    record!(
        c.txn(txn(
            vec![cmp_version("b", Equal, 2)],
            vec![put("e", "5"), get("e", ""), del("d", "")],
            vec![]
        ))
        .await
    );
    record!(
        c.txn(txn(
            vec![cmp_value("a", "c", Greater, "0")],
            vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(txn(
                    vec![cmp_version("zz", Equal, 0)],
                    vec![put("f", "6"), get("a", "z")],
                    vec![put("g", "7")],
                ))),
            }],
            vec![put("h", "8")],
        ))
        .await
    );
    record!(
        c.txn(txn(
            vec![cmp_value("nokey", "", Equal, "")],
            vec![put("x", "1")],
            vec![get("a", "")]
        ))
        .await
    );
    // Errors.
    record!(
        c.txn(txn(vec![], vec![put("k", "1"), put("k", "2")], vec![]))
            .await
    );
    record!(
        c.txn(txn(vec![], vec![del("a", "m"), put("b", "2")], vec![]))
            .await
    );
    record!(
        c.txn(txn(
            vec![],
            (0..129).map(|i| put(&format!("k{i}"), "v")).collect(),
            vec![]
        ))
        .await
    );
    record!(
        c.txn(txn(vec![], vec![RequestOp { request: None }], vec![]))
            .await
    );
    record!(c.txn(txn(vec![], vec![get("a", "")], vec![])).await);
    record!(
        c.put(PutRequest {
            key: b"a".to_vec(),
            lease: 12345,
            ..Default::default()
        })
        .await
    );
    record!(
        c.put(PutRequest {
            key: b"nokey".to_vec(),
            ignore_lease: true,
            ..Default::default()
        })
        .await
    );
    record!(
        c.put(PutRequest {
            key: b"a".to_vec(),
            ignore_value: true,
            prev_kv: true,
            ..Default::default()
        })
        .await
    );
    record!(
        c.delete_range(DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"\0".to_vec(),
            prev_kv: true,
        })
        .await
    );
    record!(
        c.range(RangeRequest {
            key: b"a".to_vec(),
            revision: 3,
            range_end: b"\0".to_vec(),
            ..Default::default()
        })
        .await
    );
    out
}

fn run_against(binary: &std::path::Path) -> Vec<String> {
    let cluster = Cluster::start(binary, 1, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(script(format!("http://{}", cluster.members[0].endpoint())))
}

#[test]
fn client_requests_get_the_same_answers_as_from_etcd() {
    let etcd = etcd_bin().expect("the real etcd is needed: install Debian's etcd-server");
    let theirs = run_against(&etcd);
    let ours = run_against(&setpoint_bin());
    assert_eq!(ours.len(), theirs.len());
    let mut diffs = Vec::new();
    for (i, (a, b)) in ours.iter().zip(theirs.iter()).enumerate() {
        if a != b {
            diffs.push(format!("step {i}:\n  setpoint: {a}\n  etcd:     {b}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(ours.iter().any(|s| s.contains("duplicate key")), "{ours:?}");
    assert!(
        ours.iter().any(|s| s.contains("succeeded: true")),
        "{ours:?}"
    );
    assert!(
        ours.iter()
            .any(|s| s.contains("required revision has been compacted") || s.contains("kvs: [")),
        "{ours:?}"
    );
    assert!(
        !ours
            .iter()
            .any(|s| s.contains("Unavailable") || s.contains("transport")),
        "{ours:?}"
    );
    for line in &ours {
        println!("{line}");
    }
}
