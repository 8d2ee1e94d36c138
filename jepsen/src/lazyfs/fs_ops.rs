//! The FUSE side of lazyfs: every request is carried out on the backing directory, and each
//! change to a file's data is first recorded in the shared undo state (`Shared`).

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    DirBuilderExt, DirEntryExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, FUSE_ROOT_ID,
};

use super::{key_of, lock, read_at_most, Shared};

/// Entries and attributes are never cached by the kernel: after a loss, the next path walk
/// and `stat` see the reverted file.
const TTL: Duration = Duration::ZERO;

/// Flags for opened files: neither `FOPEN_KEEP_CACHE` (so each open drops the file's cached
/// pages, and a reopen after a loss reads the reverted bytes) nor `FOPEN_DIRECT_IO` (which
/// would make the kernel refuse `MAP_SHARED` maps, which bbolt needs).
const OPEN_FLAGS: u32 = 0;

type Errno = i32;

fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The fallocate modes carried out: plain, keep-size preallocation, hole punching and
/// zeroing. Collapsing and inserting ranges move data around; they are refused.
const FALLOCATE_MODES: [i32; 5] = [
    0,
    libc::FALLOC_FL_KEEP_SIZE,
    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    libc::FALLOC_FL_ZERO_RANGE,
    libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
];

/// An open file or directory.
enum Handle {
    File {
        ino: u64,
        file: File,
    },
    Dir {
        entries: Vec<(u64, FileType, OsString)>,
    },
}

/// The file system the fuser session runs.
pub(super) struct Ops {
    backing: PathBuf,
    shared: Arc<Mutex<Shared>>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
}

impl Ops {
    pub(super) fn new(backing: PathBuf, shared: Arc<Mutex<Shared>>) -> Ops {
        Ops {
            backing,
            shared,
            handles: HashMap::new(),
            next_fh: 1,
        }
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    /// The backing path of `ino`.
    fn path_of(&self, ino: u64) -> Result<PathBuf, Errno> {
        let rel = lock(&self.shared).path(ino)?;
        Ok(self.full(&rel))
    }

    /// The relative path of `name` in directory `parent`.
    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        if name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(libc::EINVAL); // the kernel resolves these itself
        }
        Ok(lock(&self.shared).path(parent)?.join(name))
    }

    /// Stats `rel` and answers it as an entry; `lookup` when the reply hands the kernel a
    /// reference.
    fn entry(&self, rel: PathBuf, lookup: bool) -> Result<FileAttr, Errno> {
        let md = fs::symlink_metadata(self.full(&rel)).map_err(|e| errno(&e))?;
        let ino = lock(&self.shared).remember(rel, key_of(&md), md.is_dir(), lookup);
        Ok(attr(ino, &md))
    }

    fn file(&self, fh: u64) -> Result<(u64, &File), Errno> {
        match self.handles.get(&fh) {
            Some(Handle::File { ino, file }) => Ok((*ino, file)),
            _ => Err(libc::EBADF),
        }
    }

    /// An open handle of `ino`, for files that have no name left.
    fn any_file(&self, ino: u64) -> Option<&File> {
        self.handles.values().find_map(|h| match h {
            Handle::File { ino: i, file } if *i == ino => Some(file),
            _ => None,
        })
    }

    fn add_handle(&mut self, handle: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        if let Handle::File { ino, .. } = &handle {
            lock(&self.shared).opened(*ino);
        }
        self.handles.insert(fh, handle);
        fh
    }

    fn stat(&self, ino: u64, fh: Option<u64>) -> Result<fs::Metadata, Errno> {
        let by_handle = fh.and_then(|fh| self.file(fh).ok()).map(|(_, f)| f);
        let result = match (by_handle, self.path_of(ino)) {
            (Some(file), _) => file.metadata(),
            (None, Ok(path)) => fs::symlink_metadata(path),
            (None, Err(e)) => match self.any_file(ino) {
                Some(file) => file.metadata(),
                None => return Err(e),
            },
        };
        result.map_err(|e| errno(&e))
    }

    /// Truncates (or extends) `ino`, open as `file`, to `size`, recording the change.
    fn truncate(&self, ino: u64, file: &File, size: u64) -> Result<(), Errno> {
        let mut shared = lock(&self.shared);
        let len = file.metadata().map_err(|e| errno(&e))?.len();
        shared
            .before_change(ino, file, len.min(size)..len.max(size))
            .map_err(|e| errno(&e))?;
        file.set_len(size).map_err(|e| errno(&e))
    }

    /// Gives a new node to the requesting user, as the kernel would.
    fn chown_new(&self, path: &Path, req: &Request<'_>) -> Result<(), Errno> {
        if req.uid() == 0 && req.gid() == 0 {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(req.uid()), Some(req.gid())).map_err(|e| errno(&e))
    }

    #[allow(clippy::too_many_arguments)]
    fn set_attr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> Result<FileAttr, Errno> {
        let handle = fh.and_then(|fh| self.file(fh).ok()).map(|(_, f)| f);
        let path = self.path_of(ino);
        let fail = |e: io::Error| errno(&e);
        if let Some(mode) = mode {
            let perm = Permissions::from_mode(mode & 0o7777);
            match (handle, &path) {
                (Some(file), _) => file.set_permissions(perm).map_err(fail)?,
                (None, Ok(path)) => fs::set_permissions(path, perm).map_err(fail)?,
                (None, Err(e)) => return Err(*e),
            }
        }
        if uid.is_some() || gid.is_some() {
            match (handle, &path) {
                (Some(file), _) => std::os::unix::fs::fchown(file, uid, gid).map_err(fail)?,
                (None, Ok(path)) => std::os::unix::fs::lchown(path, uid, gid).map_err(fail)?,
                (None, Err(e)) => return Err(*e),
            }
        }
        if let Some(size) = size {
            match (handle, &path) {
                (Some(file), _) => self.truncate(ino, file, size)?,
                (None, Ok(path)) => {
                    let file = open_backing(path, libc::O_RDWR).map_err(fail)?;
                    self.truncate(ino, &file, size)?;
                }
                (None, Err(e)) => return Err(*e),
            }
        }
        if atime.is_some() || mtime.is_some() {
            let times = [timespec(atime), timespec(mtime)];
            // SAFETY: `times` is two valid timespecs and the fd/path outlive the calls.
            let r = match (handle, &path) {
                (Some(file), _) => unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) },
                (None, Ok(path)) => {
                    let c = cstring(path)?;
                    unsafe {
                        libc::utimensat(
                            libc::AT_FDCWD,
                            c.as_ptr(),
                            times.as_ptr(),
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    }
                }
                (None, Err(e)) => return Err(*e),
            };
            if r != 0 {
                return Err(errno(&io::Error::last_os_error()));
            }
        }
        Ok(attr(ino, &self.stat(ino, fh)?))
    }

    fn open_dir(&self, ino: u64) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
        let fail = |e: io::Error| errno(&e);
        let rel = lock(&self.shared).path(ino)?;
        let full = self.full(&rel);
        let dev = fs::metadata(&full).map_err(fail)?.dev();
        let listing = fs::read_dir(&full).map_err(fail)?;
        let parent = match rel.parent() {
            Some(p) => fs::metadata(self.full(p)).ok().map(|md| key_of(&md)),
            None => None,
        };
        let mut shared = lock(&self.shared);
        let parent_ino = parent
            .and_then(|key| shared.by_key.get(&key).copied())
            .unwrap_or(FUSE_ROOT_ID);
        let mut entries = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (parent_ino, FileType::Directory, OsString::from("..")),
        ];
        for entry in listing {
            let entry = entry.map_err(fail)?;
            let kind = kind_of_entry(entry.file_type().map_err(fail)?);
            let name = entry.file_name();
            let dir = kind == FileType::Directory;
            let child = shared.remember(rel.join(&name), (dev, entry.ino()), dir, false);
            entries.push((child, kind, name));
        }
        Ok(entries)
    }

    fn do_create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let fail = |e: io::Error| errno(&e);
        let rel = self.child(parent, name)?;
        let full = self.full(&rel);
        let existed = fs::symlink_metadata(&full).is_ok();
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .create(true)
            .mode(mode & !umask & 0o7777);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        }
        let file = options.open(&full).map_err(fail)?;
        if !existed {
            self.chown_new(&full, req)?;
        }
        let md = file.metadata().map_err(fail)?;
        let ino = lock(&self.shared).remember(rel, key_of(&md), false, true);
        if !existed {
            lock(&self.shared).created(ino);
        } else if flags & libc::O_TRUNC != 0 {
            self.truncate(ino, &file, 0)?;
        }
        let md = file.metadata().map_err(fail)?;
        let fh = self.add_handle(Handle::File { ino, file });
        Ok((attr(ino, &md), fh))
    }

    fn do_open(&mut self, ino: u64, flags: i32) -> Result<u64, Errno> {
        let file = open_backing(&self.path_of(ino)?, flags).map_err(|e| errno(&e))?;
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            self.truncate(ino, &file, 0)?;
        }
        Ok(self.add_handle(Handle::File { ino, file }))
    }

    fn do_write(&self, fh: u64, offset: i64, data: &[u8]) -> Result<u32, Errno> {
        let (ino, file) = self.file(fh)?;
        let start = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
        let len = u64::try_from(data.len()).map_err(|_| libc::EINVAL)?;
        let mut shared = lock(&self.shared);
        shared
            .before_change(ino, file, start..start.saturating_add(len))
            .map_err(|e| errno(&e))?;
        file.write_all_at(data, start).map_err(|e| errno(&e))?;
        shared.stats.bytes_written += len;
        u32::try_from(data.len()).map_err(|_| libc::EINVAL)
    }

    fn do_fallocate(&self, fh: u64, offset: i64, length: i64, mode: i32) -> Result<(), Errno> {
        if !FALLOCATE_MODES.contains(&mode) {
            return Err(libc::EOPNOTSUPP);
        }
        let (ino, file) = self.file(fh)?;
        let start = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
        let len = u64::try_from(length).map_err(|_| libc::EINVAL)?;
        let end = start.checked_add(len).ok_or(libc::EFBIG)?;
        let zeroes = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0;
        // Plain and keep-size allocation change no byte; only the size may grow.
        let range: Range<u64> = if zeroes { start..end } else { start..start };
        let mut shared = lock(&self.shared);
        shared
            .before_change(ino, file, range)
            .map_err(|e| errno(&e))?;
        // SAFETY: the fd is open for as long as `file` lives.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, length) } != 0 {
            return Err(errno(&io::Error::last_os_error()));
        }
        Ok(())
    }

    fn do_statfs(&self) -> Result<libc::statvfs, Errno> {
        let c = cstring(&self.backing)?;
        // SAFETY: statvfs is plain data, and the call fills it in from a valid path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(errno(&io::Error::last_os_error()));
        }
        Ok(st)
    }
}

/// Opens a backing file for the access mode in `flags`: read-only, or read-write (reading is
/// needed to save old bytes). Other flags are the kernel's business (`O_APPEND` offsets come
/// computed, `O_SYNC` arrives as fsync requests) and are left out; `O_TRUNC` is applied by
/// the caller so that it is recorded.
fn open_backing(path: &Path, flags: i32) -> io::Result<File> {
    let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
    OpenOptions::new().read(true).write(writable).open(path)
}

fn cstring(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

fn timespec(time: Option<TimeOrNow>) -> libc::timespec {
    let (tv_sec, tv_nsec) = match time {
        None => (0, libc::UTIME_OMIT),
        Some(TimeOrNow::Now) => (0, libc::UTIME_NOW),
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                libc::c_long::from(d.subsec_nanos()),
            ),
            Err(before) => {
                let d = before.duration();
                let secs = -libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX);
                match d.subsec_nanos() {
                    0 => (secs, 0),
                    n => (secs - 1, 1_000_000_000 - libc::c_long::from(n)),
                }
            }
        },
    };
    libc::timespec { tv_sec, tv_nsec }
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0);
    let moved = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
    };
    moved.unwrap_or(UNIX_EPOCH)
}

fn kind_of_mode(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn kind_of_entry(t: fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    }
}

/// `md` as the kernel should see it, under our inode number.
fn attr(ino: u64, md: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino,
        size: md.size(),
        blocks: md.blocks(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind_of_mode(md.mode()),
        perm: u16::try_from(md.mode() & 0o7777).unwrap_or(0o644),
        nlink: u32::try_from(md.nlink()).unwrap_or(u32::MAX),
        uid: md.uid(),
        gid: md.gid(),
        rdev: u32::try_from(md.rdev()).unwrap_or(0),
        blksize: u32::try_from(md.blksize()).unwrap_or(4096),
        flags: 0,
    }
}

impl Filesystem for Ops {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self
            .child(parent, name)
            .and_then(|rel| self.entry(rel, true))
        {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        lock(&self.shared).forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        match self.stat(ino, fh) {
            Ok(md) => reply.attr(&TTL, &attr(ino, &md)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        match self.set_attr(ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self
            .path_of(ino)
            .and_then(|p| fs::read_link(p).map_err(|e| errno(&e)))
        {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.child(parent, name).and_then(|rel| {
            let full = self.full(&rel);
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&full)
                .map_err(|e| errno(&e))?;
            self.chown_new(&full, req)?;
            self.entry(rel, true)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let done = self.child(parent, name).and_then(|rel| {
            let full = self.full(&rel);
            let md = fs::symlink_metadata(&full).map_err(|e| errno(&e))?;
            fs::remove_file(&full).map_err(|e| errno(&e))?;
            lock(&self.shared).unlinked(key_of(&md), &rel, md.nlink() <= 1);
            Ok(())
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let done = self.child(parent, name).and_then(|rel| {
            let full = self.full(&rel);
            let md = fs::symlink_metadata(&full).map_err(|e| errno(&e))?;
            fs::remove_dir(&full).map_err(|e| errno(&e))?;
            lock(&self.shared).unlinked(key_of(&md), &rel, true);
            Ok(())
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let made = self.child(parent, link_name).and_then(|rel| {
            let full = self.full(&rel);
            std::os::unix::fs::symlink(target, &full).map_err(|e| errno(&e))?;
            self.chown_new(&full, req)?;
            self.entry(rel, true)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            // RENAME_NOREPLACE / EXCHANGE / WHITEOUT: not at this protocol version.
            reply.error(libc::EINVAL);
            return;
        }
        let done = self.child(parent, name).and_then(|from| {
            let to = self.child(newparent, newname)?;
            let (full_from, full_to) = (self.full(&from), self.full(&to));
            let src = fs::symlink_metadata(&full_from).map_err(|e| errno(&e))?;
            let dst = fs::symlink_metadata(&full_to).ok();
            fs::rename(&full_from, &full_to).map_err(|e| errno(&e))?;
            let replaced = dst.map(|md| (key_of(&md), md.is_dir() || md.nlink() <= 1));
            lock(&self.shared).renamed(&from, &to, key_of(&src), src.is_dir(), replaced);
            Ok(())
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let made = self.path_of(ino).and_then(|from| {
            let to = self.child(newparent, newname)?;
            fs::hard_link(from, self.full(&to)).map_err(|e| errno(&e))?;
            self.entry(to, true)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        match self.do_open(ino, flags) {
            Ok(fh) => reply.opened(fh, OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(req, parent, name, mode, umask, flags) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, 0, fh, OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let data = self.file(fh).and_then(|(_, file)| {
            let start = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
            read_at_most(file, start, u64::from(size)).map_err(|e| errno(&e))
        });
        match data {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(Handle::File { ino, .. }) = self.handles.remove(&fh) {
            lock(&self.shared).closed(ino);
        }
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Durable in the model; the backing file itself is deliberately not fsynced.
        lock(&self.shared).synced(ino);
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.open_dir(ino) {
            Ok(entries) => reply.opened(self.add_handle(Handle::Dir { entries }), 0),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(Handle::Dir { entries }) = self.handles.get(&fh) else {
            reply.error(libc::EBADF);
            return;
        };
        let skip = usize::try_from(offset).unwrap_or(0);
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(skip) {
            let next = i64::try_from(i + 1).unwrap_or(i64::MAX);
            if reply.add(*ino, next, *kind, name) {
                break; // the kernel's buffer is full
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory entries are durable as soon as they are made (see the module docs).
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        match self.do_statfs() {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                u32::try_from(st.f_bsize).unwrap_or(4096),
                u32::try_from(st.f_namemax).unwrap_or(255),
                u32::try_from(st.f_frsize).unwrap_or(4096),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, mask: i32, reply: ReplyEmpty) {
        let checked = self.path_of(ino).and_then(|p| cstring(&p)).and_then(|c| {
            // SAFETY: `c` is a valid NUL-terminated path.
            match unsafe { libc::access(c.as_ptr(), mask) } {
                0 => Ok(()),
                _ => Err(errno(&io::Error::last_os_error())),
            }
        });
        match checked {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.do_fallocate(fh, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
