//! Runs `setpoint-bench compare` end to end at a tiny scale: one round, one
//! member, the real etcd (Debian etcd-server, which scripts/setup.sh
//! installs) against the `setpoint` server cargo built beside this test
//! (build it with `cargo build --release -p setpoint-server`). Checks the
//! exit status, that report.md has both systems' numbers for every load and
//! that results.json parses and holds every run. It does not judge the
//! numbers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

/// The `setpoint` binary in the same target directory as this test.
fn setpoint_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/setpoint
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("setpoint");
    assert!(
        bin.exists(),
        "{} is missing: build the server first (cargo build --release -p setpoint-server)",
        bin.display()
    );
    bin
}

const LOADS: [&str; 4] = ["put-seq-1c", "put-1000c", "range-l-100c", "watch-1000w"];

#[test]
fn compare_tiny_run() {
    let etcd = Path::new("/usr/bin/etcd");
    assert!(
        etcd.exists(),
        "/usr/bin/etcd is not installed (apt-get install etcd-server; scripts/setup.sh does)"
    );
    let out = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_setpoint-bench"))
        .args([
            "compare",
            "--rounds",
            "1",
            "--members",
            "1",
            "--scale",
            "0.01",
        ])
        .arg("--setpoint")
        .arg(setpoint_bin())
        .arg("--etcd")
        .arg(etcd)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run setpoint-bench compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "compare failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("compare took {:.1} s", started.elapsed().as_secs_f64());

    let report = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");
    for load in LOADS {
        let rows: Vec<&str> = report
            .lines()
            .filter(|l| l.starts_with("| 1 | ") && l.contains(&format!("| {load} |")))
            .collect();
        assert!(!rows.is_empty(), "no row for {load} in:\n{report}");
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // "", members, load, metric, etcd, Setpoint, ratio, ...
            for (i, who) in [(4, "etcd"), (5, "Setpoint")] {
                let v = cells[i].replace(',', "");
                assert!(
                    v.parse::<f64>().is_ok(),
                    "{who}'s number for {load} is {:?}: {row}",
                    cells[i]
                );
            }
            assert!(cells[6].ends_with('×'), "no ratio: {row}");
        }
    }
    assert!(
        report.contains("check-perf-l") && report.contains("skipped"),
        "check-perf-l is not reported as skipped:\n{report}"
    );
    // The table is printed too.
    assert!(
        stdout.contains("put-1000c"),
        "no table on stdout:\n{stdout}"
    );

    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("results.json")).expect("results.json"),
    )
    .expect("results.json parses");
    let runs = results["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2 * LOADS.len(), "one run per system and load");
    for run in runs {
        assert!(run["error"].is_null(), "a failed run: {run}");
        assert!(
            run["measured"]["raw"]["latency_ms"]["p50"].is_number(),
            "no raw result: {run}"
        );
    }
    assert!(results["machine"]["cpu"].is_string());
    // The data root was a fresh directory under /var/tmp, deleted at the end.
    let args = &results["args"];
    assert!(args["data-root"].is_null());
}
