//! Network faults on peer links without Docker or netem: every member's peer port is fronted
//! by a TCP proxy.
//!
//! Member `i` listens for peers on a real port `R_i` but advertises (in `--initial-cluster`) a
//! proxy port `P_i`; the proxy for member `i` accepts on `P_i` and forwards to `R_i`. Every peer
//! connection between two members therefore passes through exactly one proxy, the listener's,
//! whichever of the two dialed.
//!
//! Faults are per directed member pair `(from, to)`: the bytes member `from`'s process writes
//! towards member `to`'s process. On a connection dialed by `d` to listener `l` (through `l`'s
//! proxy), dialer→listener bytes travel link `(d, l)` and listener→dialer bytes link `(l, d)`.
//!
//! The proxy only sees `127.0.0.1:<ephemeral>`, so it finds the dialing process through Linux
//! `/proc`: the socket in `/proc/net/tcp{,6}` whose local address is the accepted connection's
//! peer and whose remote address is the proxy's address gives an inode, and the member whose
//! `/proc/<pid>/fd` links to `socket:[inode]` is the dialer. Connections from anything else
//! (a test, `etcdctl`) are never faulted.
//!
//! Faults never corrupt a byte stream (these carry HTTP/2 and HTTP/1.1): a blocked direction
//! stops reading its source (so TCP backpressure stalls the sender) and holds what it already
//! read; a delayed chunk is delivered late; a "dropped" chunk is delivered even later, as TCP
//! would after a retransmission timeout. A connection blocked for longer than
//! [`Links::block_limit`] is closed on both sides, so members redial, as TCP would time out.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, warn};

/// How long a connection may stay blocked (in either direction) before the proxy closes it.
pub const DEFAULT_BLOCK_LIMIT: Duration = Duration::from_secs(10);
/// The extra hold of a "dropped" chunk: TCP cannot lose bytes, it retransmits them after an RTO.
pub const RETRANSMIT_DELAY: Duration = Duration::from_millis(200);
/// Read buffer per direction.
const CHUNK: usize = 64 * 1024;
/// Bytes read but not yet written, per direction; beyond it the reader stops (backpressure).
const MAX_IN_FLIGHT: usize = 4 * 1024 * 1024;
/// Looks at `/proc` this many times before calling a connection unidentified.
const IDENTIFY_ATTEMPTS: usize = 10;
const IDENTIFY_RETRY: Duration = Duration::from_millis(20);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What is wrong with one directed link. The default is a healthy link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LinkFault {
    /// Nothing is forwarded; the sender is stalled by TCP backpressure.
    pub blocked: bool,
    /// Each chunk is delivered no earlier than this after it was read.
    pub delay: Duration,
    /// Probability (0..=1) that a chunk is "lost" and so delivered [`RETRANSMIT_DELAY`] late.
    pub drop: f64,
}

impl LinkFault {
    /// Whether this is the healthy default.
    pub fn is_healthy(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// The faults of all `n * n` directed member pairs, shared by every proxy of a cluster.
/// Changes reach the proxies' pumps immediately.
pub struct Links {
    n: usize,
    /// Row-major by `(from, to)`.
    cells: Vec<watch::Sender<LinkFault>>,
    block_limit: Mutex<Duration>,
    /// Connections whose dialing member could not be found.
    unidentified: std::sync::atomic::AtomicU64,
    /// Of those, the ones closed because a link of their member was blocked.
    unidentified_closed: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Links {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Links")
            .field("n", &self.n)
            .field("faulty", &self.faulty())
            .field("block_limit", &self.block_limit())
            .finish()
    }
}

impl Links {
    /// Healthy links among `n` members, with the [`DEFAULT_BLOCK_LIMIT`].
    pub fn new(n: usize) -> Arc<Links> {
        Links::with_block_limit(n, DEFAULT_BLOCK_LIMIT)
    }

    /// Healthy links among `n` members; connections blocked longer than `limit` are closed.
    pub fn with_block_limit(n: usize, limit: Duration) -> Arc<Links> {
        Arc::new(Links {
            n,
            cells: (0..n * n)
                .map(|_| watch::Sender::new(LinkFault::default()))
                .collect(),
            block_limit: Mutex::new(limit),
            unidentified: std::sync::atomic::AtomicU64::new(0),
            unidentified_closed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The number of members.
    pub fn n(&self) -> usize {
        self.n
    }

    fn index(&self, from: usize, to: usize) -> usize {
        assert!(
            from < self.n && to < self.n,
            "link ({from}, {to}) out of range for {} members",
            self.n
        );
        from * self.n + to
    }

    /// Sets the fault on the bytes member `from` sends to member `to`. Panics if either is not
    /// a member index.
    pub fn set(&self, from: usize, to: usize, fault: LinkFault) {
        self.cells[self.index(from, to)].send_if_modified(|f| replace(f, fault));
    }

    /// The fault on the bytes member `from` sends to member `to`.
    pub fn get(&self, from: usize, to: usize) -> LinkFault {
        *self.cells[self.index(from, to)].borrow()
    }

    /// Every link back to healthy.
    /// How many peer connections' dialer was not identified: they cannot be faulted per
    /// link, so they pass while no link of their member is blocked and are closed (counted
    /// in [`Links::unidentified_closed`]) as soon as one is.
    pub fn unidentified(&self) -> u64 {
        self.unidentified.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Unidentified connections closed because a link of their member was blocked.
    pub fn unidentified_closed(&self) -> u64 {
        self.unidentified_closed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether any link from or to `member` is blocked.
    fn member_blocked(&self, member: usize) -> bool {
        (0..self.n)
            .filter(|&o| o != member)
            .any(|o| self.get(member, o).blocked || self.get(o, member).blocked)
    }

    /// Returns once a link from or to `member` is blocked (at once if one is).
    async fn until_member_blocked(&self, member: usize) {
        let mut cells: Vec<_> = (0..self.n)
            .filter(|&o| o != member)
            .flat_map(|o| [self.watch(member, o), self.watch(o, member)])
            .collect();
        while !self.member_blocked(member) {
            if cells.is_empty() {
                return std::future::pending().await;
            }
            let changes = cells.iter_mut().map(|c| Box::pin(c.changed()));
            let (changed, _, _) = futures::future::select_all(changes).await;
            if changed.is_err() {
                return std::future::pending().await;
            }
        }
    }

    pub fn heal(&self) {
        for cell in &self.cells {
            cell.send_if_modified(|f| replace(f, LinkFault::default()));
        }
    }

    /// The links that are not healthy, as `(from, to, fault)`.
    pub fn faulty(&self) -> Vec<(usize, usize, LinkFault)> {
        (0..self.n)
            .flat_map(|from| (0..self.n).map(move |to| (from, to)))
            .map(|(from, to)| (from, to, self.get(from, to)))
            .filter(|(_, _, f)| !f.is_healthy())
            .collect()
    }

    /// How long a connection may stay blocked before it is closed.
    pub fn block_limit(&self) -> Duration {
        *self
            .block_limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes [`Links::block_limit`]; connections already blocked see it at their next change.
    pub fn set_block_limit(&self, limit: Duration) {
        *self
            .block_limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = limit;
    }

    fn watch(&self, from: usize, to: usize) -> watch::Receiver<LinkFault> {
        self.cells[self.index(from, to)].subscribe()
    }
}

/// Stores `new` in `slot`, saying whether that changed it (so unchanged sets wake nobody).
fn replace(slot: &mut LinkFault, new: LinkFault) -> bool {
    if *slot == new {
        false
    } else {
        *slot = new;
        true
    }
}

/// `(member index, pid)` of the live members; asked anew for every connection, since members
/// restart with new pids.
pub type Pids = Arc<dyn Fn() -> Vec<(usize, u32)> + Send + Sync>;

/// A running proxy. Dropping it (or [`Proxy::stop`]) stops accepting and closes its
/// connections.
#[derive(Debug)]
pub struct Proxy {
    local: SocketAddr,
    target: SocketAddr,
    owner: usize,
    task: AbortHandle,
}

impl Proxy {
    /// The address the proxy accepts on (the port members advertise).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address it forwards to (the owner's real peer port).
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The member whose peer port this proxy fronts.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// Stops accepting and closes every connection. Idempotent.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a proxy for member `owner` accepting on `listen` (port 0 picks one) and forwarding to
/// `target`, faulting connections from members (found through `pids`) according to `links`.
pub async fn start(
    listen: SocketAddr,
    target: SocketAddr,
    owner: usize,
    links: Arc<Links>,
    pids: Pids,
) -> io::Result<Proxy> {
    if owner >= links.n() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("proxy owner {owner} out of range for {} members", links.n()),
        ));
    }
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, target, owner, links, pids)).abort_handle();
    debug!(owner, %local, %target, "peer proxy started");
    Ok(Proxy {
        local,
        target,
        owner,
        task,
    })
}

/// Accepts until aborted; aborting drops the listener and, with the `JoinSet`, every connection.
async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    owner: usize,
    links: Arc<Links>,
    pids: Pids,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    conns.spawn(serve(client, peer, target, owner, links.clone(), pids.clone()));
                }
                Err(e) => {
                    warn!(owner, error = %e, "peer proxy accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One proxied connection, from accept to close.
async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    target: SocketAddr,
    owner: usize,
    links: Arc<Links>,
    pids: Pids,
) {
    let local = match client.local_addr() {
        Ok(a) => a,
        Err(e) => {
            debug!(owner, error = %e, "accepted peer connection already gone");
            return;
        }
    };
    let identify = tokio::task::spawn_blocking(move || identify(peer, local, &pids));
    let (server, dialer) = tokio::join!(TcpStream::connect(target), identify);
    let dialer = dialer.ok().flatten().filter(|&d| d < links.n());
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            debug!(owner, ?dialer, %target, error = %e, "peer proxy cannot reach its target");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    debug!(owner, ?dialer, %peer, "peer connection");
    let (up, down) = match dialer {
        Some(d) => (
            Link(Some(links.watch(d, owner))),
            Link(Some(links.watch(owner, d))),
        ),
        None => {
            links
                .unidentified
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (Link(None), Link(None))
        }
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let unknown = dialer.is_none();
    let guard_links = links.clone();
    let guard = async move {
        if unknown {
            guard_links.until_member_blocked(owner).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let watchdog = watchdog(up.clone(), down.clone(), links.clone());
    let pumps = async {
        tokio::try_join!(
            pump(client_read, server_write, up),
            pump(server_read, client_write, down)
        )
    };
    tokio::select! {
        done = pumps => match done {
            Ok((sent, received)) => {
                debug!(owner, ?dialer, sent, received, "peer connection closed");
            }
            Err(e) => debug!(owner, ?dialer, error = %e, "peer connection failed"),
        },
        () = watchdog => {
            debug!(owner, ?dialer, "peer connection blocked too long; closing it");
        }
        () = guard => {
            links
                .unidentified_closed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(owner, "unidentified peer connection closed: a link of its member is blocked");
        }
    }
}

/// One direction's view of its link; `None` for unidentified connections, never faulted.
#[derive(Clone)]
struct Link(Option<watch::Receiver<LinkFault>>);

impl Link {
    fn current(&mut self) -> LinkFault {
        match &mut self.0 {
            Some(rx) => *rx.borrow_and_update(),
            None => LinkFault::default(),
        }
    }

    async fn until_unblocked(&mut self) {
        if let Some(rx) = &mut self.0 {
            // An error means the Links are gone: nothing can block any more.
            let _ = rx.wait_for(|f| !f.blocked).await;
        }
    }

    async fn until_blocked(&mut self) {
        if let Some(rx) = &mut self.0 {
            if rx.wait_for(|f| f.blocked).await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }

    async fn changed(&mut self) {
        if let Some(rx) = &mut self.0 {
            if rx.changed().await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

/// Completes when the connection has been blocked, in either direction, for longer than the
/// block limit without a break.
async fn watchdog(mut up: Link, mut down: Link, links: Arc<Links>) {
    if up.0.is_none() && down.0.is_none() {
        return std::future::pending().await;
    }
    let mut since: Option<Instant> = None;
    loop {
        if up.current().blocked || down.current().blocked {
            let deadline = *since.get_or_insert_with(Instant::now) + links.block_limit();
            tokio::select! {
                () = sleep_until(deadline) => {
                    if up.current().blocked || down.current().blocked {
                        return;
                    }
                }
                () = up.changed() => {}
                () = down.changed() => {}
            }
        } else {
            since = None;
            tokio::select! {
                () = up.changed() => {}
                () = down.changed() => {}
            }
        }
    }
}

/// A chunk read and not yet written, with when it may be written and its share of the
/// in-flight budget.
struct Chunk {
    due: Instant,
    data: Vec<u8>,
    _budget: OwnedSemaphorePermit,
}

/// Forwards `src` to `dst` under `link` until `src` ends (then shuts `dst`'s write side) or
/// either fails. Returns the bytes forwarded.
async fn pump(mut src: OwnedReadHalf, mut dst: OwnedWriteHalf, link: Link) -> io::Result<u64> {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let ((), sent) = tokio::try_join!(
        read_side(&mut src, tx, link.clone(), budget),
        write_side(&mut dst, rx, link)
    )?;
    Ok(sent)
}

async fn read_side(
    src: &mut OwnedReadHalf,
    tx: mpsc::UnboundedSender<Chunk>,
    mut link: Link,
    budget: Arc<Semaphore>,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Blocked: read nothing, so the sender's TCP window fills up and it stalls.
        link.until_unblocked().await;
        let n = tokio::select! {
            biased;
            // A block arriving while waiting for data abandons the (cancel-safe) read.
            () = link.until_blocked() => continue,
            read = src.read(&mut buf) => read?,
        };
        if n == 0 {
            return Ok(());
        }
        let read_at = Instant::now();
        let fault = link.current();
        let mut due = read_at + fault.delay;
        if fault.drop > 0.0 && rand::random::<f64>() < fault.drop {
            due += RETRANSMIT_DELAY;
        }
        let permit = budget
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .map_err(|_| io::Error::other("proxy budget closed"))?;
        let chunk = Chunk {
            due,
            data: buf[..n].to_vec(),
            _budget: permit,
        };
        if tx.send(chunk).is_err() {
            // The writer is gone, which only happens when it failed.
            return Ok(());
        }
    }
}

async fn write_side(
    dst: &mut OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    mut link: Link,
) -> io::Result<u64> {
    let mut sent = 0u64;
    while let Some(chunk) = rx.recv().await {
        // In order: a late chunk holds back the ones behind it, as TCP does.
        sleep_until(chunk.due).await;
        // A chunk read just before a block waits for the unblock.
        link.until_unblocked().await;
        dst.write_all(&chunk.data).await?;
        sent += chunk.data.len() as u64;
    }
    // The source ended: pass the EOF on; the other direction carries on until it ends too.
    let _ = dst.shutdown().await;
    Ok(sent)
}

/// Which member dialed the connection whose dialer-side address is `peer` and which reached
/// the proxy at `local`, if any. Blocking: reads `/proc`.
fn identify(peer: SocketAddr, local: SocketAddr, pids: &Pids) -> Option<usize> {
    for attempt in 0..IDENTIFY_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(IDENTIFY_RETRY);
        }
        let members = pids();
        if members.is_empty() {
            return None;
        }
        let Some(inode) = socket_inode(peer, local) else {
            continue;
        };
        if let Some(member) = owner_of(inode, &members) {
            return Some(member);
        }
    }
    None
}

/// The inode of the TCP socket with local address `local` and remote address `remote`.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|text| find_inode(&text, local, remote))
}

/// Looks up a socket in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
fn find_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (local, remote) = (canonical(local), canonical(remote));
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let mut fields = line.split_whitespace();
        let _slot = fields.next()?;
        if parse_proc_addr(fields.next()?)? != local || parse_proc_addr(fields.next()?)? != remote {
            return None;
        }
        let inode: u64 = fields.nth(6)?.parse().ok()?;
        (inode != 0).then_some(inode)
    })
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6): the address is printed as
/// 32-bit words in host byte order, the port as a plain number. IPv4-mapped IPv6 addresses
/// come back as IPv4.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    if !ip.is_ascii() {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0).ok()?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i).ok()?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The member among `members` whose process has a descriptor for socket `inode`.
fn owner_of(inode: u64, members: &[(usize, u32)]) -> Option<usize> {
    let want = format!("socket:[{inode}]");
    let want = OsStr::new(&want);
    members.iter().find_map(|&(member, pid)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want))
            .then_some(member)
    })
}

#[cfg(test)]
mod tests;
