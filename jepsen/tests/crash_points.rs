//! Crash points: three members of the failpoints build, each crash fault arming a random
//! point (log append and fsync, apply, snapshot, purge, compaction, leader send) in the
//! leader, one member, a majority or all; members that die there are restarted. Every
//! checker must say valid, and points must really have fired. A binary without failpoints
//! must be refused when `crash` is named.

mod common;

use common::{explain, jepsen, setpoint_bin, setpoint_failpoints_bin};

#[test]
fn setpoint_survives_its_crash_points() {
    let dir = common::RunDir::new();
    let bin = setpoint_failpoints_bin();
    let (out, results) = jepsen(
        dir.path(),
        &[
            "--binary",
            bin.to_str().expect("utf-8 path"),
            "--time-limit",
            "40",
            "--workload",
            "all",
            "--nemesis",
            "crash,compact",
            "--nemesis-quiet",
            "1s",
            "2s",
            "--nemesis-hold",
            "2s",
            "4s",
            "--concurrency",
            "4",
            "--member-flag=--snapshot-count=100",
            "--seed",
            "11",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(results["valid"], serde_json::json!(true), "{why}");
    let fired = results["crash_points"]["fired"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let crashes: u64 = fired.values().filter_map(|v| v.as_u64()).sum();
    assert!(crashes >= 3, "too few crashes: {why}");
    assert!(
        fired.len() >= 2,
        "too few distinct crash points fired: {why}"
    );
    let faults = std::fs::read_to_string(dir.path().join("faults.json")).expect("faults.json");
    assert!(
        faults.contains("\"fired\""),
        "crash outcomes missing: {faults}"
    );
}

#[test]
fn crash_without_failpoints_is_refused() {
    let dir = common::RunDir::new();
    let bin = setpoint_bin();
    let (out, results) = jepsen(
        dir.path(),
        &[
            "--binary",
            bin.to_str().expect("utf-8 path"),
            "--nodes",
            "1",
            "--time-limit",
            "5",
            "--nemesis",
            "crash",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(2), "{why}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a binary built with failpoints"),
        "{why}"
    );
}
