//! etcd's plain-HTTP endpoints (`/health`, `/version`, `/metrics`) on the client port beside
//! gRPC, and on the metrics port: the same requests against the real etcd and Setpoint must
//! get the same status, headers that matter and body (version numbers aside).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{etcd_bin, etcdctl, free_port, setpoint_bin, Cluster};

/// One HTTP request with curl: its status line, the headers a client acts on, and the body.
fn fetch(method: &str, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "-m", "10", "-X", method, url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("(no answer)").to_string();
    let mut kept: Vec<String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, _)| {
            [
                "content-type",
                "x-content-type-options",
                "allow",
                "content-length",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    kept.sort();
    format!("{status}\n{}\n\n{body}", kept.join("\n"))
}

/// Version numbers (and the body length that depends on them) normalized away.
fn without_versions(text: &str) -> String {
    let re = regex::Regex::new(r#""3\.\d+\.\d+""#).expect("regex");
    let text = re.replace_all(text, "\"3.x\"").to_string();
    let len = regex::Regex::new(r"content-length: \d+").expect("regex");
    if text.contains("\"3.x\"") {
        len.replace_all(&text, "content-length: N").to_string()
    } else {
        text
    }
}

/// One member with a metrics port; the client and metrics base URLs.
fn one_member(binary: &Path) -> (Cluster, String, String) {
    let metrics = format!("http://127.0.0.1:{}", free_port());
    let cluster = Cluster::start(binary, 1, &["--listen-metrics-urls", metrics.as_str()]);
    let client = cluster.members[0].client_url();
    (cluster, client, metrics)
}

/// The same requests to one member of `binary`.
fn transcript(binary: &Path) -> String {
    let (_cluster, client, metrics) = one_member(binary);
    let mut out = String::new();
    for (method, base, path) in [
        ("GET", &client, "/health"),
        ("GET", &client, "/health?serializable=true"),
        ("GET", &client, "/health?exclude=NOSPACE"),
        ("POST", &client, "/health"),
        ("GET", &client, "/version"),
        ("PUT", &client, "/version"),
        ("GET", &client, "/no-such-path"),
        ("GET", &metrics, "/health"),
        ("GET", &metrics, "/version"),
    ] {
        let which = if base == &client { "client" } else { "metrics" };
        out += &format!(
            "$ {method} {which}{path}\n{}\n",
            fetch(method, &format!("{base}{path}"))
        );
    }
    without_versions(&out)
}

#[test]
fn health_version_and_errors_are_answered_as_etcd_answers_them() {
    let etcd = etcd_bin()
        .expect("the real etcd is needed for this comparison: install Debian's etcd-server");
    let ours = transcript(&setpoint_bin());
    let theirs = transcript(&etcd);
    assert_eq!(
        ours, theirs,
        "\n--- Setpoint ---\n{ours}\n--- etcd ---\n{theirs}"
    );
    // Sanity: real answers were compared, not two failures to connect.
    assert!(ours.contains(r#"{"health":"true"}"#), "{ours}");
    assert!(ours.contains("404 Not Found"), "{ours}");
}

/// Waits (bounded) until `url` gives any HTTP answer; returns it.
fn first_answer(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = fetch("GET", url);
        if got.starts_with("HTTP/") || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A member that knows no leader (the only one of three started) is unhealthy, as etcd's is
/// on its metrics port (etcd does not serve its client port before it has joined its
/// cluster; Setpoint's gives the same answer there), and each failed check is counted.
#[test]
fn a_member_without_a_leader_is_unhealthy_as_on_etcd() {
    let etcd = etcd_bin()
        .expect("the real etcd is needed for this comparison: install Debian's etcd-server");
    let mut answers = Vec::new();
    for (binary, ours) in [(setpoint_bin(), true), (etcd, false)] {
        let metrics_port = free_port();
        let mut cluster = Cluster::new(&binary, 3, &[]);
        let m = &mut cluster.members[0];
        m.extra.push("--listen-metrics-urls".into());
        m.extra.push(format!("http://127.0.0.1:{metrics_port}"));
        m.start();
        let on_metrics = first_answer(&format!("http://127.0.0.1:{metrics_port}/health"));
        if ours {
            let client = format!("{}/health", cluster.members[0].client_url());
            assert_eq!(first_answer(&client), on_metrics);
            // A serializable check (a liveness probe's) reads locally and needs no leader, as
            // on etcd 3.5 (3.4, the one installed here, fails it).
            let local = fetch("GET", &format!("{client}?serializable=true"));
            assert!(local.starts_with("HTTP/1.1 200 OK"), "{local}");
            assert!(local.ends_with(r#"{"health":"true"}"#), "{local}");
            // (etcd 3.4 counts only a failed read, not a missing leader.)
            let failures = common::metric(metrics_port, "etcd_server_health_failures");
            assert!(failures >= 2, "{failures} failed checks counted");
        }
        answers.push(on_metrics);
    }
    assert_eq!(answers[0], answers[1], "Setpoint, then etcd");
    assert!(
        answers[0].contains("503 Service Unavailable"),
        "{}",
        answers[0]
    );
    assert!(
        answers[0].contains(r#"{"health":"false"}"#),
        "{}",
        answers[0]
    );
}

/// `etcdctl check datascale` reads the process's resident memory off the client port's
/// `/metrics`, between writes made over gRPC on the same port.
#[test]
fn etcdctl_check_datascale_passes() {
    let (cluster, client, _) = one_member(&setpoint_bin());
    let metrics = fetch("GET", &format!("{client}/metrics"));
    assert!(
        metrics.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nprocess_resident_memory_bytes "),
        "{metrics}"
    );
    let out = etcdctl(
        &cluster.members[0].endpoint(),
        &["check", "datascale", "--load=s"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS: Approximate system memory used"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
