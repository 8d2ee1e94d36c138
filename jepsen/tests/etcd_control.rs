//! The control: the same harness against the real etcd (Debian etcd-server) under faults
//! must find nothing — a verifier that flags etcd is a broken verifier.

mod common;

use common::{etcd_bin, explain, jepsen};

#[test]
fn etcd_under_faults_is_valid() {
    let Some(etcd) = etcd_bin() else {
        panic!("etcd is not installed (Debian etcd-server); scripts/setup.sh installs it");
    };
    let dir = common::RunDir::new();
    let (out, results) = jepsen(
        dir.path(),
        &[
            "--binary",
            etcd.to_str().expect("utf-8 path"),
            "--time-limit",
            "30",
            "--workload",
            "all",
            "--nemesis",
            "kill,pause,partition,compact",
            "--nemesis-quiet",
            "1s",
            "3s",
            "--nemesis-hold",
            "2s",
            "5s",
            "--concurrency",
            "3",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(results["valid"], serde_json::json!(true), "{why}");
}
