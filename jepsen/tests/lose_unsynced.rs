//! Power loss: members' data directories on lazyfs mounts; the fault kill -9's the leader,
//! one member, a majority or all, and throws away every write they had not fsynced. Setpoint
//! must lose nothing it acknowledged — and the same run with `--unsafe-no-fsync` must be
//! caught losing acknowledged writes, which shows the fault really takes data away.

mod common;

use common::{explain, jepsen, setpoint_bin};

fn power_loss_run(
    dir: &std::path::Path,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let bin = setpoint_bin();
    let mut args = vec![
        "--binary",
        bin.to_str().expect("utf-8 path"),
        "--workload",
        "all",
        "--nemesis-quiet",
        "1s",
        "3s",
        "--nemesis-hold",
        "2s",
        "4s",
        "--concurrency",
        "4",
        "--seed",
        "5",
    ];
    args.extend_from_slice(extra);
    jepsen(dir, &args)
}

#[test]
fn setpoint_loses_nothing_acknowledged_at_power_loss() {
    let dir = common::RunDir::new();
    let (out, results) = power_loss_run(
        dir.path(),
        &[
            "--time-limit",
            "40",
            "--nemesis",
            "lose-unsynced,kill",
            "--member-flag=--snapshot-count=200",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(results["valid"], serde_json::json!(true), "{why}");
    assert!(
        results["lost_unsynced"]["faults"].as_u64().unwrap_or(0) >= 3,
        "too few power losses: {why}"
    );
    assert!(
        results["lost_unsynced"]["bytes"].as_u64().unwrap_or(0) > 0,
        "no unsynced data was lost: {why}"
    );
}

#[test]
fn without_fsync_a_power_loss_loses_acknowledged_writes() {
    let dir = common::RunDir::new();
    let (out, results) = power_loss_run(
        dir.path(),
        &[
            "--time-limit",
            "30",
            "--nemesis",
            "lose-unsynced",
            "--member-flag=--unsafe-no-fsync",
        ],
    );
    let why = explain(&out, &results);
    assert_eq!(out.status.code(), Some(1), "{why}");
    assert_eq!(results["valid"], serde_json::json!(false), "{why}");
    assert_eq!(
        results["checkers"]["revisions"]["valid"],
        serde_json::json!(false),
        "{why}"
    );
    assert!(
        results["checkers"]["set"]["lost"].as_u64().unwrap_or(0) > 0,
        "no acknowledged add reported lost: {why}"
    );
}
