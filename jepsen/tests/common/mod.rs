//! Runs the real `setpoint-jepsen` binary against real member processes and reads its
//! verdict. The `setpoint` server binary is the one cargo built next to this test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `setpoint` binary built in the same target directory as this test.
pub fn setpoint_bin() -> PathBuf {
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

/// The crash-point build of the server (`--features failpoints`), which `scripts/test.sh`
/// puts beside the plain one as `setpoint-failpoints`.
pub fn setpoint_failpoints_bin() -> PathBuf {
    let bin = setpoint_bin().with_file_name("setpoint-failpoints");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test.sh builds it (cargo build --release -p setpoint-server \
         --features failpoints, then copies target/release/setpoint to setpoint-failpoints)",
        bin.display()
    );
    bin
}

/// The real etcd, when installed (Debian etcd-server).
pub fn etcd_bin() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A run's output directory: removed when the test passes, kept (and its path printed) when
/// the test panics, so a failed run's history, members' logs and data can be read afterwards.
pub struct RunDir(Option<tempfile::TempDir>);

impl RunDir {
    pub fn new() -> Self {
        RunDir(Some(tempfile::tempdir().expect("tempdir")))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("run dir is held until drop").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.0.take() {
                eprintln!("the failed run is kept in {}", dir.keep().display());
            }
        }
    }
}

/// Runs `setpoint-jepsen test` with `args` plus `--out dir`; returns its output and
/// `results.json`.
pub fn jepsen(dir: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_setpoint-jepsen"))
        .arg("test")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run setpoint-jepsen");
    let results = std::fs::read_to_string(dir.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (out, results)
}

/// Everything worth seeing when a run's verdict is not the expected one.
pub fn explain(out: &Output, results: &serde_json::Value) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- results.json ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serde_json::to_string_pretty(results).unwrap_or_default()
    )
}
