//! Runs the real `setpoint-bench` binary against a real single-member
//! `setpoint` server (the one cargo built beside this test; build it with
//! `cargo build --release -p setpoint-server`), and once against the real
//! etcd when it is installed: each load's text report, `--json` result and
//! `--svg` chart, `--target-leader`, and the exit status when every
//! operation fails. Totals are small so the whole file runs in seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// The real etcd, when installed (Debian etcd-server).
fn etcd_bin() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    setpoint_testkit::free_port().expect("a free port")
}

/// One member on free ports in a temporary directory; killed on drop.
struct Server {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(binary)
            .args(["--name", "m0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m0={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn server");
        let server = Server {
            child,
            endpoint: format!("127.0.0.1:{client}"),
            dir,
        };
        server.wait_ready();
        server
    }

    fn setpoint() -> Server {
        Server::start(&setpoint_bin())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits (bounded) until a linearizable range succeeds.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.bench(&["range", "readiness", "--total", "1"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in 30 s: {}\n--- server log ---\n{}",
                explain(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs setpoint-bench against this server.
    fn bench(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_setpoint-bench"))
            .args(["--endpoints", &self.endpoint, "--no-progress"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run setpoint-bench")
    }

    /// A file in this server's temporary directory.
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).expect("the --json file was written");
    serde_json::from_str(&text).expect("the --json file is valid JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The agreed schema, for a load that ran `total` ops without errors.
fn check_result(doc: &Value, load: &str, total: u64) {
    let mut keys: Vec<&str> = doc
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = vec![
        "errors",
        "first_error",
        "histogram",
        "latency_ms",
        "load",
        "params",
        "requests_per_sec",
        "took_s",
        "total",
    ];
    if load.starts_with("watch") {
        want.extend(["events", "events_per_sec"]);
        want.sort_unstable();
    }
    assert_eq!(keys, want, "{doc:#}");
    assert_eq!(doc["load"], load);
    assert_eq!(doc["total"], total, "{doc:#}");
    assert_eq!(doc["errors"], 0, "{doc:#}");
    assert!(doc["first_error"].is_null(), "{doc:#}");
    assert!(f(&doc["took_s"]) > 0.0);
    let rps = f(&doc["requests_per_sec"]);
    assert!(
        (rps - total as f64 / f(&doc["took_s"])).abs() < 1e-6 * rps.max(1.0),
        "requests_per_sec is successes / took_s: {doc:#}"
    );
    let lat = &doc["latency_ms"];
    let (min, p50, p90, p99, p999, max) = (
        f(&lat["min"]),
        f(&lat["p50"]),
        f(&lat["p90"]),
        f(&lat["p99"]),
        f(&lat["p99.9"]),
        f(&lat["max"]),
    );
    assert!(
        0.0 < min && min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "latencies out of order: {lat}"
    );
    assert!(f(&lat["mean"]) >= min && f(&lat["mean"]) <= max);
    assert!(f(&lat["stddev"]) >= 0.0);
    let hist = doc["histogram"].as_array().expect("histogram array");
    assert_eq!(hist.len(), 11, "{doc:#}");
    let bounds: Vec<f64> = hist.iter().map(|b| f(&b[0])).collect();
    assert!(bounds.windows(2).all(|w| w[0] <= w[1]), "{bounds:?}");
    let counted: u64 = hist.iter().map(|b| b[1].as_u64().expect("count")).sum();
    let samples = doc["events"].as_u64().unwrap_or(total);
    assert_eq!(counted, samples, "the histogram holds every sample");
}

#[test]
fn put_writes_json_svg_and_etcds_text_report() {
    let s = Server::setpoint();
    let (json, svg) = (s.path("put.json"), s.path("put.svg"));
    let out = s.bench(&[
        "--clients",
        "4",
        "--conns",
        "2",
        "--json",
        &json,
        "--svg",
        &svg,
        "put",
        "--total",
        "300",
        "--key-space-size",
        "50",
        "--val-size",
        "64",
    ]);
    assert!(out.status.success(), "{}", explain(&out));
    let text = stdout(&out);
    for part in [
        "Summary:",
        "Requests/sec:",
        "Response time histogram",
        "Latency distribution:",
        "99.9% in ",
    ] {
        assert!(text.contains(part), "no {part:?} in\n{text}");
    }
    let doc = read_json(&json);
    check_result(&doc, "put", 300);
    let p = &doc["params"];
    assert_eq!(p["clients"], 4);
    assert_eq!(p["conns"], 2);
    assert_eq!(p["val-size"], 64);
    assert_eq!(p["key-space-size"], 50);
    assert_eq!(p["rate"], 0);
    let chart = std::fs::read_to_string(&svg).expect("the --svg file was written");
    assert!(
        chart.starts_with("<svg"),
        "{}",
        &chart[..chart.len().min(200)]
    );
    assert!(chart.contains("over the run") && chart.contains("histogram"));
}

#[test]
fn put_rate_paces_the_load() {
    let s = Server::setpoint();
    let json = s.path("rate.json");
    let out = s.bench(&["--json", &json, "put", "--total", "50", "--rate", "100"]);
    assert!(out.status.success(), "{}", explain(&out));
    let doc = read_json(&json);
    check_result(&doc, "put", 50);
    // Op 49 may not start before 0.49 s.
    assert!(f(&doc["took_s"]) >= 0.49, "{doc:#}");
}

#[test]
fn range_and_txn_put_report_like_put() {
    let s = Server::setpoint();
    let txn = s.path("txn.json");
    let out = s.bench(&[
        "--clients",
        "2",
        "--json",
        &txn,
        "txn-put",
        "--total",
        "100",
        "--txn-ops",
        "4",
        "--key-space-size",
        "40",
    ]);
    assert!(out.status.success(), "{}", explain(&out));
    check_result(&read_json(&txn), "txn-put", 100);
    assert_eq!(read_json(&txn)["params"]["txn-ops"], 4);

    for consistency in ["l", "s"] {
        let json = s.path(&format!("range-{consistency}.json"));
        // txn-put wrote keys 00000000..00000039: range over all of them.
        let out = s.bench(&[
            "--json",
            &json,
            "range",
            "0",
            "1",
            "--total",
            "100",
            "--consistency",
            consistency,
            "--limit",
            "10",
        ]);
        assert!(out.status.success(), "{}", explain(&out));
        assert!(stdout(&out).contains("Latency distribution"));
        let doc = read_json(&json);
        check_result(&doc, "range", 100);
        assert_eq!(doc["params"]["consistency"], consistency);
        assert_eq!(doc["params"]["end"], "1");
    }
    let out = s.bench(&["range", "0", "--count-only", "--total", "20"]);
    assert!(out.status.success(), "{}", explain(&out));
    let bad = s.bench(&["range", "k", "--consistency", "x", "--total", "1"]);
    assert!(!bad.status.success(), "{}", explain(&bad));
    let bad = s.bench(&["txn-put", "--txn-ops", "3", "--key-space-size", "2"]);
    assert!(!bad.status.success(), "{}", explain(&bad));
}

#[test]
fn target_leader_finds_the_single_member() {
    let s = Server::setpoint();
    let json = s.path("leader.json");
    let out = s.bench(&["--target-leader", "--json", &json, "put", "--total", "20"]);
    assert!(out.status.success(), "{}", explain(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leader"), "{}", explain(&out));
    let doc = read_json(&json);
    check_result(&doc, "put", 20);
    assert_eq!(doc["params"]["target-leader"], true);

    // An endpoint where nothing listens cannot be the leader.
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_setpoint-bench"))
        .args(["--endpoints", &nobody, "--target-leader", "--no-progress"])
        .args(["put", "--total", "1"])
        .output()
        .expect("run setpoint-bench");
    assert!(!out.status.success(), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no endpoint is the leader"),
        "{}",
        explain(&out)
    );
}

#[test]
fn lease_keepalive_fails_with_unimplemented_against_setpoint() {
    let s = Server::setpoint();
    let json = s.path("lease.json");
    let svg = s.path("lease.svg");
    let out = s.bench(&[
        "--clients",
        "2",
        "--json",
        &json,
        "--svg",
        &svg,
        "lease-keepalive",
        "--total",
        "50",
    ]);
    assert!(!out.status.success(), "{}", explain(&out));
    let text = stdout(&out);
    assert!(text.contains("Unimplemented"), "{}", explain(&out));
    assert!(text.contains("every one of the 50"), "{}", explain(&out));
    let doc = read_json(&json);
    assert_eq!(doc["total"], 50);
    assert_eq!(doc["errors"], 50);
    assert_eq!(
        doc["requests_per_sec"], 0.0,
        "failures are not throughput: {doc:#}"
    );
    assert!(
        doc["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("Unimplemented")),
        "{doc:#}"
    );
    assert_eq!(doc["histogram"].as_array().map(Vec::len), Some(0));
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.starts_with("<svg"));
}

#[test]
fn watch_loads_write_events_and_delivery_latency() {
    let s = Server::setpoint();
    let json = s.path("watch.json");
    let svg = s.path("watch.svg");
    let out = s.bench(&[
        "--json",
        &json,
        "--svg",
        &svg,
        "watch",
        "--watchers",
        "20",
        "--streams",
        "2",
        "--put-total",
        "30",
    ]);
    assert!(out.status.success(), "{}", explain(&out));
    let doc = read_json(&json);
    check_result(&doc, "watch", 30);
    assert_eq!(doc["events"], 600, "20 watchers x 30 puts");
    assert!(f(&doc["events_per_sec"]) > 0.0);
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.starts_with("<svg") && chart.contains("delivery latency"));

    let json = s.path("watch-latency.json");
    let out = s.bench(&[
        "--json",
        &json,
        "watch-latency",
        "--put-total",
        "20",
        "--put-rate",
        "200",
        "--watchers",
        "3",
    ]);
    assert!(out.status.success(), "{}", explain(&out));
    assert!(stdout(&out).contains("Latency distribution"));
    let doc = read_json(&json);
    check_result(&doc, "watch-latency", 20);
    assert_eq!(doc["events"], 60);
}

#[test]
fn lease_keepalive_works_against_etcd() {
    let Some(etcd) = etcd_bin() else {
        eprintln!("etcd is not installed: skipped");
        return;
    };
    let s = Server::start(&etcd);
    let json = s.path("lease.json");
    let out = s.bench(&[
        "--clients",
        "2",
        "--json",
        &json,
        "lease-keepalive",
        "--total",
        "100",
    ]);
    assert!(out.status.success(), "{}", explain(&out));
    assert!(stdout(&out).contains("Leases: 2 of 2 granted"));
    check_result(&read_json(&json), "lease-keepalive", 100);
}
