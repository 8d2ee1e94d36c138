//! Starting and stopping one fresh cluster of an etcd-flag-compatible binary
//! (the real etcd or Setpoint) for the compare command: N members on
//! 127.0.0.1 with free ports, the same flags for either binary, each
//! member's output in a log file, readiness meaning every member answers a
//! linearizable read. Members die with this process (PR_SET_PDEATHSIG) and
//! with the [`Cluster`] value (SIGKILL on drop); [`Cluster::stop`] is the
//! orderly end (SIGTERM, then SIGKILL) and deletes the data directories.
//! Which loads run against the cluster is not decided here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use setpoint_client::{Client, ConnectOptions};

/// How to start the members.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub binary: PathBuf,
    pub members: usize,
    /// Every member's data directory goes inside (deleted by `stop`).
    pub data_dir: PathBuf,
    /// Every member's log goes inside (kept).
    pub log_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
}

struct Member {
    name: String,
    endpoint: String,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster.
pub struct Cluster {
    spec: ClusterSpec,
    members: Vec<Member>,
}

fn free_port() -> anyhow::Result<u16> {
    setpoint_testkit::free_port()
        .with_context(|| format!("no free port in {:?}", setpoint_testkit::PORTS))
}

impl Cluster {
    /// Starts every member and waits (up to `ready_within`) until each one
    /// serves a linearizable read.
    pub async fn start(spec: ClusterSpec, ready_within: Duration) -> anyhow::Result<Cluster> {
        if spec.data_dir.exists() {
            std::fs::remove_dir_all(&spec.data_dir)
                .with_context(|| format!("remove old {}", spec.data_dir.display()))?;
        }
        std::fs::create_dir_all(&spec.data_dir)
            .with_context(|| format!("create {}", spec.data_dir.display()))?;
        std::fs::create_dir_all(&spec.log_dir)
            .with_context(|| format!("create {}", spec.log_dir.display()))?;
        let mut ports = Vec::new();
        for _ in 0..spec.members {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            spec,
            members: Vec::new(),
        };
        for (i, &(client, peer)) in ports.iter().enumerate() {
            let member = cluster.spawn(i, client, peer, &initial_cluster)?;
            cluster.members.push(member);
        }
        cluster.wait_ready(ready_within).await?;
        Ok(cluster)
    }

    fn spawn(
        &self,
        i: usize,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
    ) -> anyhow::Result<Member> {
        let spec = &self.spec;
        let name = format!("m{i}");
        let log = spec.log_dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(&spec.binary);
        // SAFETY: prctl(2) only, between fork and exec: the member gets
        // SIGKILL when the thread that started it ends (compare runs on the
        // main thread, under `#[tokio::main]`'s block_on: so when this
        // process ends, even by SIGKILL), so no run leaves servers behind.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args(["--name", &name])
            .arg(format!(
                "--data-dir={}",
                spec.data_dir.join(&name).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-token=setpoint-compare")
            .arg("--initial-cluster-state=new")
            .arg(format!("--heartbeat-interval={}", spec.heartbeat_ms))
            .arg(format!("--election-timeout={}", spec.election_ms))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("start {}", spec.binary.display()))?;
        Ok(Member {
            name,
            endpoint: format!("127.0.0.1:{client_port}"),
            log,
            child: Some(child),
        })
    }

    /// The client endpoints, `127.0.0.1:port`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        for i in 0..self.members.len() {
            let options = ConnectOptions {
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(2),
                max_attempts: Some(1),
                retry_budget: Duration::ZERO,
                ..ConnectOptions::default()
            };
            let client = Client::connect(vec![self.members[i].endpoint.clone()], options)
                .await
                .context("connect to a member")?;
            loop {
                let m = &mut self.members[i];
                if let Some(child) = &mut m.child {
                    if let Ok(Some(status)) = child.try_wait() {
                        m.child = None;
                        bail!(
                            "member {} exited ({status}) before it served a read; its log {}:\n{}",
                            m.name,
                            m.log.display(),
                            log_tail(&m.log)
                        );
                    }
                }
                if client.get("setpoint-compare-ready").await.is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "member {} did not serve a read within {limit:?}; its log {}:\n{}",
                        m.name,
                        m.log.display(),
                        log_tail(&m.log)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// SIGTERM to every member, up to `grace` for them to exit, SIGKILL to
    /// the rest; then deletes the data directories. Returns the members that
    /// had to be killed.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<Vec<String>> {
        for m in &self.members {
            if let Some(c) = &m.child {
                // SAFETY: kill(2) of a child we started and have not reaped.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + grace;
        let mut killed = Vec::new();
        for m in &mut self.members {
            let Some(mut c) = m.child.take() else {
                continue;
            };
            loop {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    killed.push(m.name.clone());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        remove_data(&self.spec.data_dir)?;
        Ok(killed)
    }
}

fn remove_data(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("delete {}", dir.display()))?;
    }
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = remove_data(&self.spec.data_dir);
    }
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
