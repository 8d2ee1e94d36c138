//! CI's smoke run: three real Setpoint members under every kind of fault for a short time,
//! all workloads; every checker must say valid, and the run directory must hold the history,
//! the verdict and the report.

mod common;

use common::{explain, jepsen, setpoint_bin};

#[test]
fn setpoint_under_all_faults_is_valid() {
    let dir = common::RunDir::new();
    let bin = setpoint_bin();
    let (out, results) = jepsen(
        dir.path(),
        &[
            "--binary",
            bin.to_str().expect("utf-8 path"),
            "--nodes",
            "3",
            "--time-limit",
            "40",
            "--workload",
            "all",
            "--nemesis",
            "all",
            "--nemesis-quiet",
            "1s",
            "3s",
            "--nemesis-hold",
            "2s",
            "5s",
            "--concurrency",
            "4",
            "--member-flag=--snapshot-count=200",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(results["valid"], serde_json::json!(true), "{why}");
    for name in ["register", "append", "watch", "set", "revisions"] {
        assert_eq!(
            results["checkers"][name]["valid"],
            serde_json::json!(true),
            "{name}: {why}"
        );
    }
    assert!(
        results["ops"].as_u64().unwrap_or(0) > 500,
        "too few operations: {why}"
    );
    assert!(
        results["faults"].as_u64().unwrap_or(0) >= 5,
        "too few faults: {why}"
    );
    assert!(
        results["checkers"]["watch"]["events_checked"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "no watch events checked: {why}"
    );
    for file in [
        "history.jsonl",
        "results.json",
        "report.html",
        "latency.svg",
        "rate.svg",
    ] {
        assert!(dir.path().join(file).exists(), "{file} missing: {why}");
    }
    let history = std::fs::read_to_string(dir.path().join("history.jsonl")).expect("history");
    assert!(
        history.contains(r#""process":"nemesis""#),
        "no faults recorded"
    );
}
