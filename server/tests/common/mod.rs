//! Test harness: real `setpoint` (or `etcd`) processes on 127.0.0.1 with free ports and
//! temporary data directories, and the real `etcdctl` to drive them.
//!
//! Every wait here is bounded; a process is killed when its handle drops.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now, below the ephemeral range (`setpoint_testkit::free_port`).
pub fn free_port() -> u16 {
    setpoint_testkit::free_port().expect("a free port")
}

pub fn setpoint_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_setpoint"))
}

/// The real etcd, when installed (Debian etcd-server).
pub fn etcd_bin() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// One member: its flags, its process while running.
pub struct Member {
    pub name: String,
    pub binary: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub initial_cluster: String,
    pub extra: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "member {} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open member log");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.binary)
            .args(["--name", &self.name])
            .args(["--data-dir", &self.data_dir.to_string_lossy()])
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "test-cluster"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn member");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N members of one binary, bootstrapped together.
pub struct Cluster {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(binary: &Path, n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| Member {
                name: format!("m{i}"),
                binary: binary.to_path_buf(),
                client_port: *c,
                peer_port: *p,
                data_dir: dir.path().join(format!("m{i}.data")),
                initial_cluster: initial_cluster.clone(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
                log: dir.path().join(format!("m{i}.log")),
            })
            .collect();
        Cluster { members, dir }
    }

    /// Starts every member and waits until each answers a linearizable read.
    pub fn start(binary: &Path, n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster::new(binary, n, extra);
        for m in &mut c.members {
            m.start();
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits (bounded) until member `i` serves a linearizable get.
    pub fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ep = self.members[i].endpoint();
        loop {
            let out = etcdctl(&ep, &["get", "setpoint-test-readiness"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "member {} not ready in 30s: {}\n--- log ---\n{}",
                    i,
                    String::from_utf8_lossy(&out.stderr),
                    self.members[i].log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the member that says it leads, asked through `endpoint status`.
    pub fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if !m.is_running() {
                continue;
            }
            let out = etcdctl(&m.endpoint(), &["endpoint", "status", "-w", "json"]);
            if !out.status.success() {
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let v: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let st = &v[0]["Status"];
            let leader = st["leader"].as_u64();
            let me = st["header"]["member_id"].as_u64();
            if leader.is_some() && leader == me {
                return Some(i);
            }
        }
        None
    }

    /// Waits (bounded) for some member to lead.
    pub fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader within 30s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One metric's value from a member's `/metrics` text exposition on `port`.
pub fn metric(port: u16, name: &str) -> i64 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

/// Runs the real etcdctl (API v3) against `endpoints` with a bounded timeout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl (install Debian's etcd-client)")
}

/// etcdctl with `input` on its standard input (txn scripts, values too long for argv).
pub fn etcdctl_input(endpoints: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl (install Debian's etcd-client)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write etcdctl stdin");
    }
    child.wait_with_output().expect("etcdctl output")
}

/// etcdctl's stdout, or its stderr when it failed (what a user sees).
pub fn etcdctl_text(endpoints: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    let mut s = String::from_utf8_lossy(&out.stdout).to_string();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Removes what legitimately differs between two servers and two runs.
pub fn normalize(text: &str) -> String {
    let rules = [
        (r#""cluster_id":\d+"#, r#""cluster_id":ID"#),
        (r#""member_id":\d+"#, r#""member_id":ID"#),
        (r#""raft_term":\d+"#, r#""raft_term":T"#),
        (r"\b[0-9a-f]{14,16}\b", "HEXID"),
        (r"127\.0\.0\.1:\d+", "ADDR"),
        (r"client-[0-9a-f-]{36}", "client-UUID"),
        (r"\{\d{4}/\d\d/\d\d [^}]*\}", "{LOGLINE}"),
        (
            r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)?",
            "TIME",
        ),
    ];
    let mut s = text.to_string();
    for (pat, rep) in rules {
        s = regex::Regex::new(pat)
            .expect("regex")
            .replace_all(&s, rep)
            .to_string();
    }
    s
}

/// Fails with the differing lines and both transcripts unless they are equal.
pub fn assert_same_transcript(ours: &str, theirs: &str) {
    if ours == theirs {
        return;
    }
    let diff: Vec<String> = ours
        .lines()
        .zip(theirs.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("line {i}:\n  setpoint: {a}\n  etcd:     {b}"))
        .collect();
    panic!(
        "transcripts differ\n{}\n=== setpoint ===\n{}\n=== etcd ===\n{}",
        diff.join("\n"),
        ours,
        theirs
    );
}
