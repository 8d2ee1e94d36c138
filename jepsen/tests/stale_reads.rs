//! The checkers can fail end to end: register reads with `serializable` consistency are
//! answered by a partitioned member from its own stale state, and the run must be reported
//! non-linearizable, with the stale read shown, and exit 1.

mod common;

use common::{explain, jepsen, setpoint_bin};

#[test]
fn serializable_reads_from_a_partitioned_minority_are_not_linearizable() {
    let dir = common::RunDir::new();
    let bin = setpoint_bin();
    let (out, results) = jepsen(
        dir.path(),
        &[
            "--binary",
            bin.to_str().expect("utf-8 path"),
            "--time-limit",
            "30",
            "--workload",
            "register",
            "--nemesis",
            "partition",
            "--nemesis-quiet",
            "1s",
            "2s",
            "--nemesis-hold",
            "5s",
            "7s",
            "--read-consistency",
            "serializable",
            "--seed",
            "7",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(1), "{why}");
    let register = &results["checkers"]["register"];
    assert_eq!(register["valid"], serde_json::json!(false), "{why}");
    // Some key's counterexample is a read that saw something other than the register's
    // value at the end of the longest linearizable prefix: the stale read.
    let keys = register["keys"].as_array().expect("per-key reports");
    let stale = keys.iter().find(|k| {
        let cx = &k["counterexample"];
        cx["op"]["op"]["f"] == "read" && cx["op"]["op"]["value"] != cx["value"]
    });
    assert!(stale.is_some(), "no stale read shown: {why}");
}
