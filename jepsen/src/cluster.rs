//! The cluster under test: N members of any etcd-flag-compatible binary (Setpoint or the
//! real etcd) on 127.0.0.1, each member's peer port fronted by a fault proxy, with the
//! process-level faults the nemesis needs — kill -9, restart, SIGSTOP and SIGCONT — and a
//! single-endpoint client per member. Or, attached to endpoints someone else runs: then
//! there are no processes to fault.
//!
//! It does not choose faults (that is `nemesis`) nor run operations (the workloads).

use crate::lazyfs::{LazyFs, Loss};
use crate::proxy::{self, Links, Pids, Proxy};
use anyhow::{bail, Context, Result};
use setpoint_client::{Client, ConnectOptions, StatusTarget};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the members are started.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub binary: PathBuf,
    pub nodes: usize,
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// Extra flags for every member.
    pub extra: Vec<String>,
    /// Put each member's data directory on a `LazyFs` mount, so a fault can drop what the
    /// member had not fsynced.
    pub lazyfs: bool,
}

/// One member's process and addresses.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    proxy_port: u16,
    /// Where a failpoints build serves its crash-point control (`GOFAIL_HTTP`).
    failpoint_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// The mount under `data_dir`, when the spec asks for one (unmounted on drop, after the
    /// process is gone: `Cluster`'s `Drop` kills first).
    disk: Option<LazyFs>,
}

/// The members, their proxies and the link faults.
pub struct Cluster {
    spec: Option<ClusterSpec>,
    endpoints: Vec<String>,
    members: Mutex<Vec<Member>>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
    links: Arc<Links>,
    _proxies: Vec<Proxy>,
    initial_cluster: String,
    /// Members that exited without the harness causing it: (member, exit status).
    unexpected_exits: Mutex<Vec<(usize, String)>>,
}

/// A port for a member or proxy (see `setpoint_testkit::free_port`).
fn free_port() -> Result<u16> {
    setpoint_testkit::free_port()
        .with_context(|| format!("no free port in {:?}", setpoint_testkit::PORTS))
}

/// The options every workload client uses: one endpoint, no retries of anything that may
/// have been sent, so each outcome is the server's.
pub fn client_options(request_timeout: Duration) -> ConnectOptions {
    ConnectOptions {
        request_timeout,
        connect_timeout: Duration::from_secs(1),
        max_attempts: Some(1),
        retry_budget: Duration::ZERO,
        keepalive_interval: Duration::from_secs(2),
        keepalive_timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    }
}

impl Cluster {
    /// Starts `spec.nodes` members behind fault proxies and waits until each serves a read.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster> {
        std::fs::create_dir_all(&spec.dir)?;
        let n = spec.nodes;
        let links = Links::new(n);
        let pids: Arc<Mutex<Vec<Option<u32>>>> = Arc::new(Mutex::new(vec![None; n]));
        let pid_source = pids.clone();
        let pid_fn: Pids = Arc::new(move || {
            lock(&pid_source)
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.map(|p| (i, p)))
                .collect()
        });
        let mut members = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..n {
            let client_port = free_port()?;
            let peer_port = free_port()?;
            let target: SocketAddr = format!("127.0.0.1:{peer_port}").parse()?;
            let listen: SocketAddr = "127.0.0.1:0".parse()?;
            let proxy = proxy::start(listen, target, i, links.clone(), pid_fn.clone())
                .await
                .context("start a peer proxy")?;
            members.push(Member {
                name: format!("n{i}"),
                client_port,
                peer_port,
                proxy_port: proxy.local_addr().port(),
                failpoint_port: free_port()?,
                data_dir: spec.dir.join(format!("n{i}.data")),
                log: spec.dir.join(format!("n{i}.log")),
                child: None,
                paused: false,
                disk: None,
            });
            if spec.lazyfs {
                let m = members.last_mut().context("member just added")?;
                let backing = spec.dir.join(format!("n{i}.disk"));
                std::fs::create_dir_all(&backing)?;
                std::fs::create_dir_all(&m.data_dir)?;
                m.disk = Some(
                    LazyFs::mount(&backing, &m.data_dir)
                        .with_context(|| format!("mount a lazyfs at {}", m.data_dir.display()))?,
                );
            }
            proxies.push(proxy);
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect::<Vec<_>>()
            .join(",");
        let endpoints = members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        let cluster = Cluster {
            spec: Some(spec),
            endpoints,
            members: Mutex::new(members),
            pids,
            links,
            _proxies: proxies,
            initial_cluster,
            unexpected_exits: Mutex::new(Vec::new()),
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_ready(i, Duration::from_secs(60)).await?;
        }
        Ok(cluster)
    }

    /// A cluster someone else runs: no processes, no faults.
    pub fn attach(endpoints: Vec<String>) -> Cluster {
        let n = endpoints.len();
        Cluster {
            spec: None,
            endpoints,
            members: Mutex::new(Vec::new()),
            pids: Arc::new(Mutex::new(vec![None; n])),
            links: Links::new(n),
            _proxies: Vec::new(),
            initial_cluster: String::new(),
            unexpected_exits: Mutex::new(Vec::new()),
        }
    }

    pub fn size(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether this run owns the processes (and so may fault them).
    pub fn owned(&self) -> bool {
        self.spec.is_some()
    }

    pub fn endpoint(&self, i: usize) -> &str {
        &self.endpoints[i]
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    /// A client that speaks only to member `i`.
    pub async fn client(&self, i: usize, request_timeout: Duration) -> Result<Client> {
        Ok(Client::connect(
            vec![self.endpoints[i].clone()],
            client_options(request_timeout),
        )
        .await?)
    }

    fn spawn(&self, i: usize) -> Result<()> {
        let Some(spec) = &self.spec else {
            bail!("attached cluster: no processes to start");
        };
        let mut members = lock(&self.members);
        let m = &mut members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .with_context(|| format!("open {}", m.log.display()))?;
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let mut command = Command::new(&spec.binary);
        // SAFETY: prctl(2) only, between fork and exec: a member dies with the harness (even
        // on SIGKILL or Ctrl-C of the harness), so no run leaves processes behind.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args(["--name", &m.name])
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                m.proxy_port
            ))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-token=setpoint-jepsen")
            .arg("--initial-cluster-state=new")
            .arg(format!("--heartbeat-interval={}", spec.heartbeat_ms))
            .arg(format!("--election-timeout={}", spec.election_ms))
            .args(&spec.extra)
            .env("GOFAIL_HTTP", format!("127.0.0.1:{}", m.failpoint_port))
            // A crash point's abort must be quick (printing a symbolized backtrace of this
            // binary takes seconds, and the crash fault tells a fired point by the exit);
            // a real panic still prints its message and location.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", spec.binary.display()))?;
        lock(&self.pids)[i] = Some(child.id());
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// kill -9 of member `i` (a no-op when it is down; one that had already exited by itself
    /// is recorded as an unexpected exit).
    pub fn kill(&self, i: usize) {
        self.kill_as(i, false)
    }

    /// Like [`Cluster::kill`], for a member armed to die at a crash point: an exit found
    /// here is expected and not recorded.
    pub fn kill_armed(&self, i: usize) {
        self.kill_as(i, true)
    }

    fn kill_as(&self, i: usize, armed: bool) {
        // One that already exited is reaped (and recorded unless armed) by `reap`.
        if !self.reap(i, armed) {
            return;
        }
        let mut members = lock(&self.members);
        let Some(m) = members.get_mut(i) else { return };
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        m.paused = false;
        lock(&self.pids)[i] = None;
    }

    /// Power loss of member `i`: kill -9, then every write it had not fsynced is undone on
    /// its lazyfs mount. Errors when the cluster has no mounts.
    pub fn lose_unsynced(&self, i: usize) -> Result<Loss> {
        self.kill(i);
        let members = lock(&self.members);
        let disk = members
            .get(i)
            .and_then(|m| m.disk.as_ref())
            .context("the members' data is not on lazyfs mounts")?;
        Ok(disk.lose_unsynced()?)
    }

    /// Starts member `i` again on its data (a no-op when it runs).
    pub fn restart(&self, i: usize) -> Result<()> {
        self.spawn(i)
    }

    /// SIGSTOP (`pause`) or SIGCONT of member `i`.
    pub fn signal_pause(&self, i: usize, pause: bool) {
        let mut members = lock(&self.members);
        let Some(m) = members.get_mut(i) else { return };
        if let Some(c) = &m.child {
            let sig = if pause { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) with a pid we started and still own (not yet waited for).
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
            m.paused = pause;
        }
    }

    /// Whether member `i` runs. A process that exited on its own is reaped here, counts as
    /// down and is recorded as an unexpected exit (see [`Cluster::unexpected_exits`]).
    pub fn is_running(&self, i: usize) -> bool {
        self.reap(i, false)
    }

    /// Like [`Cluster::is_running`], for a member armed to die at a crash point: its exit is
    /// expected and not recorded.
    pub fn is_running_or_crashed(&self, i: usize) -> bool {
        self.reap(i, true)
    }

    fn reap(&self, i: usize, expected: bool) -> bool {
        let mut members = lock(&self.members);
        let Some(m) = members.get_mut(i) else {
            return !self.owned();
        };
        let status = match &mut m.child {
            Some(c) => match c.try_wait() {
                Ok(None) => return true,
                Ok(Some(status)) => status.to_string(),
                Err(e) => format!("unknown ({e})"),
            },
            None => return false,
        };
        m.child = None;
        m.paused = false;
        lock(&self.pids)[i] = None;
        if !expected {
            lock(&self.unexpected_exits).push((i, status));
        }
        false
    }

    /// Members that exited without the harness killing them or arming a crash point: a
    /// server crash (or a member that could not start), which a verdict must not pass over.
    pub fn unexpected_exits(&self) -> Vec<(usize, String)> {
        lock(&self.unexpected_exits).clone()
    }

    /// The crash-point control address of member `i` (meaningful for failpoints builds).
    pub fn failpoint_addr(&self, i: usize) -> Option<String> {
        lock(&self.members)
            .get(i)
            .map(|m| format!("127.0.0.1:{}", m.failpoint_port))
    }

    /// Waits (bounded) until member `i` answers a linearizable read.
    pub async fn wait_ready(&self, i: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let client = self.client(i, Duration::from_secs(2)).await?;
        loop {
            if client.get("setpoint-jepsen-ready").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "member {i} did not serve a read within {limit:?}; its log: {}",
                    self.log_path(i)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log_path(&self, i: usize) -> Option<PathBuf> {
        lock(&self.members).get(i).map(|m| m.log.clone())
    }

    /// The last 8 KiB of member `i`'s log (empty when there is none).
    pub fn log_tail(&self, i: usize) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let Some(path) = self.log_path(i) else {
            return String::new();
        };
        let mut tail = Vec::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            let len = f.metadata().map_or(0, |m| m.len());
            if f.seek(SeekFrom::Start(len.saturating_sub(8192))).is_ok() {
                let _ = f.read_to_end(&mut tail);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// Records that member `i` ended in a way no fault explains.
    pub fn record_unexpected_exit(&self, i: usize, what: String) {
        lock(&self.unexpected_exits).push((i, what));
    }

    /// The member that says it leads, if one does (asked of every member).
    pub async fn leader(&self) -> Option<usize> {
        let client = Client::connect(
            self.endpoints.clone(),
            client_options(Duration::from_millis(500)),
        )
        .await
        .ok()?;
        let answers = client.status(StatusTarget::All).await.ok()?;
        for a in answers {
            if let Ok(st) = a.result {
                let me = st.header.as_ref().map(|h| h.member_id);
                if st.leader != 0 && Some(st.leader) == me {
                    return Some(a.index);
                }
            }
        }
        None
    }

    /// Stops every member (SIGCONT first so paused ones can die).
    pub fn shutdown(&self) {
        let n = lock(&self.members).len();
        for i in 0..n {
            self.signal_pause(i, false);
            self.kill(i);
        }
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.spec.as_ref().map(|s| s.dir.as_path())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Locks ignoring poison: a panicked client task must not take the cluster down with it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
