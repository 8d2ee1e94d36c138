//! A FUSE pass-through file system that can forget what was never fsynced: the harness's way
//! of simulating a power loss, in the spirit of Jepsen's lazyfs.
//!
//! # What it is for
//!
//! A database process under test (a Setpoint member with RocksDB, or an etcd member with bbolt
//! and its WAL) keeps its data directory on a [`LazyFs`] mount. Every operation is done at once
//! on a real *backing* directory, so the process sees an ordinary file system. Meanwhile the
//! mount remembers, per file, what the file held at its last `fsync`/`fdatasync`. To pull the
//! plug, the harness `kill -9`s the process and calls [`LazyFs::lose_unsynced`], which puts
//! every file's *data* back to that state — exactly what a machine losing power would lose.
//! The process is then restarted on the same mount and must not have lost anything it
//! acknowledged.
//!
//! # The durability model
//!
//! * Per file (per inode, so hard links share it, and a rename keeps it) the mount keeps the
//!   length at the last sync and an undo log: the old bytes of every range below that length
//!   that a write, truncate or fallocate changed since then (only the first change of a byte
//!   is kept; bytes above the synced length are simply cut off again). `fsync` and `fdatasync`
//!   make the file's current data durable: the log is cleared.
//! * A file created through the mount and never synced comes back empty (it still exists).
//!   Files that were in the backing directory before the mount count as durable as they were.
//! * Metadata — create, mkdir, rename, unlink, link, symlink, chmod, utimes — is durable at
//!   once. That is a simplification: on ext4 a new name survives a crash only after its
//!   directory was fsynced, and this mount does not model that (`fsyncdir` is accepted and
//!   does nothing).
//! * `sync_file_range`, `sync(2)` and `syncfs(2)` never reach this server, so they do not
//!   make anything durable; that is right for `sync_file_range`, which is no durability
//!   barrier, and errs on the harsh side for the other two.
//! * `O_SYNC`/`O_DSYNC` writes are durable: the kernel follows each with an fsync request.
//! * The backing files are never really fsynced: nothing on this mount is meant to survive a
//!   real crash of the machine running the harness, and skipping it keeps the mount fast.
//!
//! # What it is not for
//!
//! * Not a faithful model of any one kernel file system: it loses *all* unsynced data, never a
//!   torn part of it, and never loses a directory entry; bugs that need a lost rename or a
//!   torn page to show up are out of its reach.
//! * Not for files written through a shared writable `mmap` (bbolt only maps its file
//!   read-only, which works), and not for users other than root (the mount is made without
//!   `allow_other`). POSIX and `flock` locks work, kept by the local kernel (`getlk`/`setlk`
//!   are left unimplemented on purpose).
//! * [`LazyFs::lose_unsynced`] must only be called while no process has files open on the
//!   mount (after the `kill -9`): an open file's page cache is not invalidated by it.
//!
//! # Caching
//!
//! Entries and attributes are answered with a time-to-live of zero and files are opened
//! without `FOPEN_KEEP_CACHE`, so every `open` drops the kernel's cached pages of the file and
//! every path walk and `stat` asks this server again: after a loss, the next open reads the
//! reverted data. Files are *not* opened with `FOPEN_DIRECT_IO`: the kernel refuses
//! `MAP_SHARED` maps of direct-I/O files (ENODEV), and bbolt maps its database file that way;
//! direct-I/O writes also skip the fsync request that follows an `O_DSYNC` write. Without the
//! FUSE writeback cache (never requested) every `write(2)` reaches this server before it
//! returns, so the undo log misses nothing written with `write`.
//!
//! The kernel is asked for FUSE protocol 7.19 (fuser's `abi-7-19` feature), the first with
//! `fallocate`; below it fuser answers fallocate requests itself with ENOSYS.
//!
//! It needs root and `/dev/fuse` (see [`available`]); the mount is made with the mount(2)
//! system call, with no `fusermount` binary and no libfuse.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption, FUSE_ROOT_ID};
use serde::Serialize;

mod fs_ops;
#[cfg(test)]
mod tests;

/// The name the mount shows as its source in `/proc/mounts`.
const FS_NAME: &str = "setpoint-lazyfs";

/// What one [`LazyFs::lose_unsynced`] threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// Files whose data changed back.
    pub files: u64,
    /// Bytes thrown away: those past each file's synced length (preallocated zeros included),
    /// plus the synced bytes that had been overwritten (or cut off) since, each counted once.
    pub bytes: u64,
}

/// Cumulative counters of one mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Bytes passed to `write` on the mount.
    pub bytes_written: u64,
    /// `fsync` and `fdatasync` calls on files (directory syncs are not counted).
    pub fsyncs: u64,
    /// Sum of [`Loss::files`] over every loss so far.
    pub lost_files: u64,
    /// Sum of [`Loss::bytes`] over every loss so far.
    pub lost_bytes: u64,
}

/// Whether FUSE mounts can be made here: root, and `/dev/fuse` readable and writable.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "lazyfs mounts need root (this process runs as uid {euid})"
        ));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(drop)
        .map_err(|e| format!("/dev/fuse cannot be opened for reading and writing: {e}"))
}

/// A mounted lazyfs. Dropping it unmounts it.
pub struct LazyFs {
    session: Option<BackgroundSession>,
    shared: Arc<Mutex<Shared>>,
    backing: PathBuf,
    mountpoint: PathBuf,
}

impl fmt::Debug for LazyFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyFs")
            .field("backing", &self.backing)
            .field("mountpoint", &self.mountpoint)
            .field("stats", &self.stats())
            .finish()
    }
}

impl LazyFs {
    /// Mounts a pass-through of `backing` (an existing directory) at `mountpoint` (an existing
    /// empty directory). A dead mount left at `mountpoint` by a crashed process is detached
    /// first; a live lazyfs mount there is an error.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<LazyFs> {
        available().map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))?;
        let backing = backing
            .canonicalize()
            .map_err(|e| context(e, format!("backing directory {}", backing.display())))?;
        let root = fs::metadata(&backing)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("backing {} is not a directory", backing.display()),
            ));
        }
        let mountpoint = prepare_mountpoint(mountpoint)?;
        if mountpoint.starts_with(&backing) || backing.starts_with(&mountpoint) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mountpoint {} and backing {} must not contain one another",
                    mountpoint.display(),
                    backing.display()
                ),
            ));
        }
        let shared = Arc::new(Mutex::new(Shared::new(key_of(&root))));
        let ops = fs_ops::Ops::new(backing.clone(), Arc::clone(&shared));
        let options = [MountOption::FSName(FS_NAME.to_owned()), MountOption::RW];
        let session = fuser::spawn_mount2(ops, &mountpoint, &options)
            .map_err(|e| context(e, format!("mounting lazyfs at {}", mountpoint.display())))?;
        Ok(LazyFs {
            session: Some(session),
            shared,
            backing,
            mountpoint,
        })
    }

    /// Reverts every file's data to its last fsync/fdatasync (files never synced become
    /// empty) and returns what was thrown away. Call it only while no process has files open
    /// on the mount (after `kill -9`). On an error the other files are still reverted and the
    /// failed ones keep their undo logs, so calling it again retries them.
    pub fn lose_unsynced(&self) -> io::Result<Loss> {
        lock(&self.shared).lose(&self.backing)
    }

    /// Cumulative counters: bytes written, fsyncs, files and bytes lost so far.
    pub fn stats(&self) -> Stats {
        lock(&self.shared).stats
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // Dropping the session's mount unmounts (umount(2)), which ends the session thread.
        let guard = unmount(session);
        if is_mounted(&self.mountpoint) {
            // Busy (a process still has something open there): detach it instead; the
            // session thread goes on serving the open files until they are closed.
            let _ = detach(&self.mountpoint);
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !guard.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if guard.is_finished() {
            let _ = guard.join();
        }
    }
}

/// Drops `session`'s mount (unmounting it) and hands back its thread.
fn unmount(session: BackgroundSession) -> JoinHandle<io::Result<()>> {
    let BackgroundSession { guard, .. } = session;
    guard
}

/// Checks the mountpoint, detaching dead FUSE mounts found on it, and returns its canonical
/// path.
fn prepare_mountpoint(mountpoint: &Path) -> io::Result<PathBuf> {
    for _ in 0..8 {
        match fs::metadata(mountpoint) {
            Ok(md) if md.is_dir() => {
                let canonical = mountpoint.canonicalize()?;
                if is_mounted(&canonical) {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{} is already a lazyfs mount (still in use, or left by another \
                             process: `umount -l` it)",
                            canonical.display()
                        ),
                    ));
                }
                return Ok(canonical);
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("mountpoint {} is not a directory", mountpoint.display()),
                ))
            }
            // A FUSE mount whose server died (a crashed harness) answers ENOTCONN.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                detach(mountpoint).map_err(|e| {
                    context(
                        e,
                        format!("detaching the dead mount at {}", mountpoint.display()),
                    )
                })?;
            }
            Err(e) => return Err(context(e, format!("mountpoint {}", mountpoint.display()))),
        }
    }
    Err(io::Error::other(format!(
        "{} still has dead mounts stacked on it",
        mountpoint.display()
    )))
}

/// Lazily unmounts whatever is mounted at `path`.
fn detach(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a lazyfs mount is listed at `path` (canonical) in this process's mount table.
fn is_mounted(path: &Path) -> bool {
    let Ok(table) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    table.lines().any(|line| {
        let mut fields = line.split(' ');
        let (Some(source), Some(target), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        source == FS_NAME && fstype.starts_with("fuse") && Path::new(&unescape(target)) == path
    })
}

/// Undoes the octal escapes (`\040` for a space, ...) of a `/proc/mounts` field.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A backing file's identity: (st_dev, st_ino).
type Key = (u64, u64);

fn key_of(md: &fs::Metadata) -> Key {
    (md.dev(), md.ino())
}

/// One inode of the mount.
struct Node {
    key: Key,
    dir: bool,
    /// Its names, relative to the backing directory (the root's is empty). Several for a
    /// file with hard links, none once unlinked.
    paths: Vec<PathBuf>,
    /// The kernel's references (lookups not yet forgotten).
    lookups: u64,
    /// Open file handles.
    opens: u64,
    /// Unsynced changes; `None` when the data is as durable as it looks.
    dirty: Option<Dirty>,
}

/// What a file held at its last sync, as far as it differs from what it holds now.
struct Dirty {
    synced_len: u64,
    /// Disjoint ranges `[start, end)` below `synced_len` whose old bytes are in `undo`.
    covered: BTreeMap<u64, u64>,
    undo: Vec<Undo>,
}

/// The old bytes at `offset`, before their first change since the last sync.
struct Undo {
    offset: u64,
    bytes: Vec<u8>,
}

/// The state shared by the FUSE session thread and the [`LazyFs`] handle.
struct Shared {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<Key, u64>,
    next_ino: u64,
    stats: Stats,
}

impl Shared {
    fn new(root: Key) -> Shared {
        let node = Node {
            key: root,
            dir: true,
            paths: vec![PathBuf::new()],
            lookups: 1,
            opens: 0,
            dirty: None,
        };
        Shared {
            nodes: HashMap::from([(FUSE_ROOT_ID, node)]),
            by_key: HashMap::from([(root, FUSE_ROOT_ID)]),
            next_ino: FUSE_ROOT_ID + 1,
            stats: Stats::default(),
        }
    }

    /// The first name of `ino`, relative to the backing directory.
    fn path(&self, ino: u64) -> Result<PathBuf, i32> {
        let node = self.nodes.get(&ino).ok_or(libc::ESTALE)?;
        node.paths.first().cloned().ok_or(libc::ENOENT)
    }

    /// Records that `rel` names the backing file `key`, and returns its inode number; a
    /// `lookup` takes a kernel reference.
    fn remember(&mut self, rel: PathBuf, key: Key, dir: bool, lookup: bool) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                if node.dir || dir != node.dir {
                    // A directory has one name; a changed kind means a reused inode number.
                    node.paths.clear();
                    node.dir = dir;
                }
                if !node.paths.contains(&rel) {
                    node.paths.push(rel);
                }
                node.lookups += u64::from(lookup);
                return ino;
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = Node {
            key,
            dir,
            paths: vec![rel],
            lookups: u64::from(lookup),
            opens: 0,
            dirty: None,
        };
        self.nodes.insert(ino, node);
        self.by_key.insert(key, ino);
        ino
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.collect(ino);
    }

    fn opened(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.opens += 1;
        }
    }

    fn closed(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.opens = node.opens.saturating_sub(1);
        }
        self.collect(ino);
    }

    /// Drops `ino` once the kernel and every handle are done with it, unless it still has
    /// data to lose.
    fn collect(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        let busy = node.lookups > 0 || node.opens > 0;
        let keep = node.dirty.is_some() && !node.paths.is_empty();
        if ino == FUSE_ROOT_ID || busy || keep {
            return;
        }
        let key = node.key;
        self.nodes.remove(&ino);
        if self.by_key.get(&key) == Some(&ino) {
            self.by_key.remove(&key);
        }
    }

    /// Records that the name `rel` of backing file `key` is gone; `last` when it was the
    /// file's last link (its data can no longer be lost, and its inode number can be reused).
    fn unlinked(&mut self, key: Key, rel: &Path, last: bool) {
        let Some(&ino) = self.by_key.get(&key) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.paths.retain(|p| p != rel);
            if last {
                node.paths.clear();
                node.dirty = None;
            }
        }
        if last {
            self.by_key.remove(&key);
        }
        self.collect(ino);
    }

    /// Records a rename of `from` (backing file `key`) to `to`, which was `replaced` — its
    /// key, and whether that was its last link — if it existed.
    fn renamed(
        &mut self,
        from: &Path,
        to: &Path,
        key: Key,
        dir: bool,
        replaced: Option<(Key, bool)>,
    ) {
        if let Some((old, last)) = replaced {
            if old == key {
                return; // two links to one file: rename(2) does nothing
            }
            self.unlinked(old, to, last);
        }
        if dir {
            for node in self.nodes.values_mut() {
                for p in &mut node.paths {
                    if let Ok(rest) = p.strip_prefix(from) {
                        let moved = if rest.as_os_str().is_empty() {
                            to.to_path_buf()
                        } else {
                            to.join(rest)
                        };
                        *p = moved;
                    }
                }
            }
        } else if let Some(node) = self.by_key.get(&key).and_then(|i| self.nodes.get_mut(i)) {
            node.paths.retain(|p| p != from && p != to);
            node.paths.push(to.to_path_buf());
        }
    }

    /// Marks `ino` as created now: never synced, so a loss empties it.
    fn created(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.dirty = Some(Dirty {
                synced_len: 0,
                covered: BTreeMap::new(),
                undo: Vec::new(),
            });
        }
    }

    /// Marks `ino`'s current data durable.
    fn synced(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.dirty = None;
        }
        self.stats.fsyncs += 1;
    }

    /// To be called (with the lock held across the change) before bytes `range` of `ino`,
    /// open as `file`, change or its size does: saves the old bytes it will need to undo.
    /// An empty range only starts tracking the file (its size may change).
    fn before_change(
        &mut self,
        ino: u64,
        file: &File,
        range: std::ops::Range<u64>,
    ) -> io::Result<()> {
        let node = self
            .nodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESTALE))?;
        let dirty = match &mut node.dirty {
            Some(dirty) => dirty,
            slot => slot.insert(Dirty {
                synced_len: file.metadata()?.len(),
                covered: BTreeMap::new(),
                undo: Vec::new(),
            }),
        };
        let end = range.end.min(dirty.synced_len);
        if range.start >= end {
            return Ok(());
        }
        for (start, stop) in gaps(&dirty.covered, range.start, end) {
            let bytes = read_at_most(file, start, stop - start)?;
            dirty.undo.push(Undo {
                offset: start,
                bytes,
            });
        }
        cover(&mut dirty.covered, range.start, end);
        Ok(())
    }

    /// Reverts every file with unsynced changes; see [`LazyFs::lose_unsynced`].
    fn lose(&mut self, backing: &Path) -> io::Result<Loss> {
        let mut loss = Loss::default();
        let mut failure = None;
        let dirty: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.dirty.is_some())
            .map(|(&ino, _)| ino)
            .collect();
        for ino in dirty {
            let Some(node) = self.nodes.get_mut(&ino) else {
                continue;
            };
            let Some(state) = node.dirty.take() else {
                continue;
            };
            // A name that still leads to this very file (another process may have renamed
            // things in the backing directory behind our back).
            let path = node.paths.iter().map(|p| backing.join(p)).find(|p| {
                fs::symlink_metadata(p).is_ok_and(|md| md.is_file() && key_of(&md) == node.key)
            });
            if let Some(path) = path {
                match revert(&path, &state) {
                    Ok(0) => {}
                    Ok(bytes) => {
                        loss.files += 1;
                        loss.bytes += bytes;
                    }
                    Err(e) => {
                        node.dirty = Some(state);
                        failure.get_or_insert(context(e, format!("reverting {}", path.display())));
                    }
                }
            }
            self.collect(ino);
        }
        self.stats.lost_files += loss.files;
        self.stats.lost_bytes += loss.bytes;
        match failure {
            Some(e) => Err(e),
            None => Ok(loss),
        }
    }
}

/// Puts the file at `path` back to its synced state; returns the bytes thrown away.
fn revert(path: &Path, state: &Dirty) -> io::Result<u64> {
    let file = OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    // Newest first, so the oldest image of a byte wins (ranges are disjoint anyway).
    for undo in state.undo.iter().rev() {
        file.write_all_at(&undo.bytes, undo.offset)?;
    }
    file.set_len(state.synced_len)?;
    let restored: u64 = state.covered.iter().map(|(s, e)| e - s).sum();
    Ok(restored + len.saturating_sub(state.synced_len))
}

/// Reads up to `len` bytes at `offset` (fewer at end of file).
fn read_at_most(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let mut buf = vec![0; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// The parts of `[start, end)` (non-empty) not in the disjoint ranges of `covered`.
fn gaps(covered: &BTreeMap<u64, u64>, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    let before = covered.range(..=start).next_back();
    let inside = covered.range(start.saturating_add(1)..end.max(start.saturating_add(1)));
    for (&s, &e) in before.into_iter().chain(inside) {
        if e <= at {
            continue;
        }
        if s > at {
            out.push((at, s.min(end)));
        }
        at = at.max(e);
        if at >= end {
            break;
        }
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// Adds `[start, end)` to the disjoint ranges of `covered`, merging what it touches.
fn cover(covered: &mut BTreeMap<u64, u64>, start: u64, end: u64) {
    let (mut lo, mut hi) = (start, end);
    let touching: Vec<(u64, u64)> = covered
        .range(..=end)
        .rev()
        .take_while(|(_, &e)| e >= start)
        .map(|(&s, &e)| (s, e))
        .collect();
    for (s, e) in touching {
        lo = lo.min(s);
        hi = hi.max(e);
        covered.remove(&s);
    }
    covered.insert(lo, hi);
}
