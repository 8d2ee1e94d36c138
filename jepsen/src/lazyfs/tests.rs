//! Real mounts in temporary directories.

use super::*;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use tempfile::TempDir;

/// A mount over a fresh backing directory; fields drop in order, so it unmounts first.
struct Mounted {
    fs: LazyFs,
    mnt: TempDir,
    backing: TempDir,
}

fn mounted() -> Mounted {
    let backing = TempDir::new().unwrap();
    let mnt = TempDir::new().unwrap();
    let fs = LazyFs::mount(backing.path(), mnt.path()).unwrap();
    Mounted { fs, mnt, backing }
}

fn pre_populated(files: &[(&str, &[u8])]) -> Mounted {
    let backing = TempDir::new().unwrap();
    for (name, data) in files {
        fs::write(backing.path().join(name), data).unwrap();
    }
    let mnt = TempDir::new().unwrap();
    let fs = LazyFs::mount(backing.path(), mnt.path()).unwrap();
    Mounted { fs, mnt, backing }
}

impl Mounted {
    fn at(&self, rel: &str) -> PathBuf {
        self.mnt.path().join(rel)
    }
    fn backing_at(&self, rel: &str) -> PathBuf {
        self.backing.path().join(rel)
    }
}

fn in_proc_mounts(path: &Path) -> bool {
    let table = fs::read_to_string("/proc/mounts").unwrap();
    let path = path.canonicalize().unwrap();
    let needle = format!(" {} ", path.display());
    table
        .lines()
        .any(|l| l.starts_with("setpoint-lazyfs ") && l.contains(&needle))
}

/// Directory entry names as readdir(3) returns them, `.` and `..` included.
fn raw_names(dir: &Path) -> Vec<String> {
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut names = Vec::new();
    // SAFETY: test-only libc directory walk over a valid path; the stream is closed.
    unsafe {
        let stream = libc::opendir(c.as_ptr());
        assert!(!stream.is_null(), "opendir {}", dir.display());
        loop {
            let entry = libc::readdir(stream);
            if entry.is_null() {
                break;
            }
            let name = CStr::from_ptr((*entry).d_name.as_ptr());
            names.push(name.to_string_lossy().into_owned());
        }
        libc::closedir(stream);
    }
    names.sort();
    names
}

/// Asserts `got == want` without printing kilobytes of bytes.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8]) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{} bytes, wanted {}; first difference at {first_diff:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn available_here() {
    assert_eq!(available(), Ok(()));
}

#[test]
fn only_the_synced_prefix_survives() {
    let m = mounted();
    let mut f = File::create(m.at("log")).unwrap();
    f.write_all(b"hello").unwrap();
    f.sync_all().unwrap();
    f.write_all(b" world").unwrap();
    drop(f);
    // A pass-through: the bytes are really in the backing file.
    assert_eq!(fs::read(m.backing_at("log")).unwrap(), b"hello world");
    assert_eq!(fs::read(m.at("log")).unwrap(), b"hello world");

    let loss = m.fs.lose_unsynced().unwrap();
    assert_eq!(loss, Loss { files: 1, bytes: 6 });
    assert_eq!(fs::read(m.at("log")).unwrap(), b"hello");
    assert_eq!(fs::read(m.backing_at("log")).unwrap(), b"hello");
    let stats = m.fs.stats();
    assert_eq!(
        stats,
        Stats {
            bytes_written: 11,
            fsyncs: 1,
            lost_files: 1,
            lost_bytes: 6
        }
    );
    // Nothing left to lose.
    assert_eq!(m.fs.lose_unsynced().unwrap(), Loss::default());
    assert_eq!(fs::read(m.at("log")).unwrap(), b"hello");
}

#[test]
fn a_file_never_synced_comes_back_empty() {
    let m = mounted();
    fs::write(m.at("data"), vec![7u8; 100]).unwrap();
    File::create(m.at("never-written")).unwrap();
    let loss = m.fs.lose_unsynced().unwrap();
    assert_eq!(
        loss,
        Loss {
            files: 1,
            bytes: 100
        }
    );
    assert_eq!(fs::metadata(m.at("data")).unwrap().len(), 0);
    assert!(m.at("never-written").exists());
    assert_eq!(fs::metadata(m.at("never-written")).unwrap().len(), 0);
}

#[test]
fn files_there_before_the_mount_count_as_durable() {
    let m = pre_populated(&[("old", b"original")]);
    let f = OpenOptions::new().write(true).open(m.at("old")).unwrap();
    f.write_all_at(b"CHANGED!", 0).unwrap();
    f.write_all_at(b"+more", 8).unwrap();
    drop(f);
    assert_eq!(fs::read(m.at("old")).unwrap(), b"CHANGED!+more");
    assert_eq!(
        m.fs.lose_unsynced().unwrap(),
        Loss {
            files: 1,
            bytes: 13
        }
    );
    assert_eq!(fs::read(m.at("old")).unwrap(), b"original");
}

#[test]
fn overwrites_inside_the_synced_region_are_undone() {
    let m = mounted();
    let f = File::create(m.at("pages")).unwrap();
    f.write_all_at(&[b'a'; 4096], 0).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(&[b'b'; 100], 100).unwrap();
    f.write_all_at(&[b'c'; 100], 50).unwrap(); // overlaps the first overwrite
    f.write_all_at(&[b'd'; 10], 4090).unwrap(); // straddles the synced end
    drop(f);
    // [50, 200) and [4090, 4096) were overwritten, [4096, 4100) is new.
    assert_eq!(
        m.fs.lose_unsynced().unwrap(),
        Loss {
            files: 1,
            bytes: 160
        }
    );
    assert_bytes(&fs::read(m.at("pages")).unwrap(), &[b'a'; 4096]);
}

#[test]
fn truncates_are_undone_both_ways() {
    let m = mounted();
    let pattern: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let f = File::create(m.at("t")).unwrap();
    f.write_all_at(&pattern, 0).unwrap();
    f.sync_data().unwrap();
    f.set_len(10).unwrap();
    f.set_len(2000).unwrap();
    f.write_all_at(&[b'x'; 100], 1500).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 2000);
    drop(f);
    let loss = m.fs.lose_unsynced().unwrap();
    assert_eq!(
        loss,
        Loss {
            files: 1,
            bytes: 990 + 1000
        }
    );
    assert_bytes(&fs::read(m.at("t")).unwrap(), &pattern);
}

#[test]
fn open_with_o_trunc_is_undone() {
    let m = mounted();
    fs::write(m.at("f"), b"old contents").unwrap();
    File::open(m.at("f")).unwrap().sync_all().unwrap();
    fs::write(m.at("f"), b"new").unwrap(); // O_TRUNC
    assert_eq!(fs::read(m.at("f")).unwrap(), b"new");
    assert_eq!(
        m.fs.lose_unsynced().unwrap(),
        Loss {
            files: 1,
            bytes: 12
        }
    );
    assert_eq!(fs::read(m.at("f")).unwrap(), b"old contents");
}

#[test]
fn renames_keep_a_files_state() {
    let m = mounted();
    let mut f = File::create(m.at("a.tmp")).unwrap();
    f.write_all(b"0123456789").unwrap();
    f.sync_all().unwrap();
    f.write_all(b"abcdef").unwrap();
    drop(f);
    fs::rename(m.at("a.tmp"), m.at("b")).unwrap();

    // A directory whose file was never synced, renamed with it.
    fs::create_dir(m.at("d1")).unwrap();
    fs::write(m.at("d1/f"), b"zzz").unwrap();
    fs::rename(m.at("d1"), m.at("d2")).unwrap();

    // A rename over a synced file: the target's durable data goes with it.
    fs::write(m.at("target"), b"target").unwrap();
    File::open(m.at("target")).unwrap().sync_all().unwrap();
    fs::write(m.at("source"), b"source!").unwrap();
    fs::rename(m.at("source"), m.at("target")).unwrap();

    let loss = m.fs.lose_unsynced().unwrap();
    assert_eq!(
        loss,
        Loss {
            files: 3,
            bytes: 6 + 3 + 7
        }
    );
    assert!(!m.at("a.tmp").exists());
    assert_eq!(fs::read(m.at("b")).unwrap(), b"0123456789");
    assert!(!m.at("d1").exists());
    assert_eq!(fs::read(m.at("d2/f")).unwrap(), b"");
    assert!(!m.at("source").exists());
    assert_eq!(fs::read(m.at("target")).unwrap(), b"");
    assert_eq!(fs::read(m.backing_at("b")).unwrap(), b"0123456789");
}

#[test]
fn hard_links_share_one_state() {
    let m = mounted();
    let f = File::create(m.at("f")).unwrap();
    f.write_all_at(b"abc", 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::hard_link(m.at("f"), m.at("g")).unwrap();
    assert_eq!(fs::metadata(m.at("f")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.at("f")).unwrap().ino(),
        fs::metadata(m.at("g")).unwrap().ino()
    );

    OpenOptions::new()
        .append(true)
        .open(m.at("g"))
        .unwrap()
        .write_all(b"def")
        .unwrap();
    File::open(m.at("f")).unwrap().sync_all().unwrap(); // syncs g's write too
    OpenOptions::new()
        .append(true)
        .open(m.at("f"))
        .unwrap()
        .write_all(b"ghi")
        .unwrap();
    assert_eq!(m.fs.lose_unsynced().unwrap(), Loss { files: 1, bytes: 3 });
    assert_eq!(fs::read(m.at("f")).unwrap(), b"abcdef");
    assert_eq!(fs::read(m.at("g")).unwrap(), b"abcdef");

    // With one name gone, the other still loses what was not synced.
    fs::remove_file(m.at("f")).unwrap();
    OpenOptions::new()
        .append(true)
        .open(m.at("g"))
        .unwrap()
        .write_all(b"jkl")
        .unwrap();
    assert_eq!(m.fs.lose_unsynced().unwrap(), Loss { files: 1, bytes: 3 });
    assert_eq!(fs::read(m.at("g")).unwrap(), b"abcdef");
}

#[test]
fn directories_list_make_and_remove() {
    let m = mounted();
    fs::create_dir(m.at("d")).unwrap();
    fs::write(m.at("d/x"), b"x").unwrap();
    fs::write(m.at("d/y"), b"y").unwrap();
    fs::create_dir(m.at("d/sub")).unwrap();
    let mut names: Vec<String> = fs::read_dir(m.at("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["sub", "x", "y"]);
    assert_eq!(raw_names(&m.at("d")), [".", "..", "sub", "x", "y"]);
    assert_eq!(raw_names(m.mnt.path()), [".", "..", "d"]);
    assert!(fs::metadata(m.at("d/sub")).unwrap().is_dir());

    let err = fs::remove_dir(m.at("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    let err = File::open(m.at("d/missing")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

    // Metadata is durable at once: a loss keeps the tree (and empties the unsynced files).
    m.fs.lose_unsynced().unwrap();
    assert_eq!(raw_names(&m.at("d")), [".", "..", "sub", "x", "y"]);

    fs::remove_file(m.at("d/x")).unwrap();
    fs::remove_file(m.at("d/y")).unwrap();
    fs::remove_dir(m.at("d/sub")).unwrap();
    fs::remove_dir(m.at("d")).unwrap();
    assert!(!m.backing_at("d").exists());
    assert_eq!(raw_names(m.mnt.path()), [".", ".."]);
}

#[test]
fn an_unlinked_open_file_stays_usable() {
    let m = mounted();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.at("f"))
        .unwrap();
    f.write_all(b"abc").unwrap();
    fs::remove_file(m.at("f")).unwrap();
    assert!(!m.at("f").exists());
    assert!(!m.backing_at("f").exists());
    f.write_all(b"def").unwrap();
    assert_eq!(f.metadata().unwrap().len(), 6);
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"abcdef");
    drop(f);
    // Its data is gone with its last name: nothing left to lose.
    assert_eq!(m.fs.lose_unsynced().unwrap(), Loss::default());
}

#[test]
fn fdatasync_and_o_dsync_count_as_syncs() {
    let m = mounted();
    let mut f = File::create(m.at("f")).unwrap();
    f.write_all(b"aaaa").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"bbbb").unwrap();
    drop(f);
    let mut d = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DSYNC)
        .open(m.at("dsync"))
        .unwrap();
    d.write_all(b"every write is durable").unwrap();
    drop(d);
    assert!(m.fs.stats().fsyncs >= 2);
    assert_eq!(m.fs.lose_unsynced().unwrap(), Loss { files: 1, bytes: 4 });
    assert_eq!(fs::read(m.at("f")).unwrap(), b"aaaa");
    assert_eq!(fs::read(m.at("dsync")).unwrap(), b"every write is durable");
}

#[test]
fn a_reopen_after_a_loss_reads_the_reverted_data() {
    let m = mounted();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.at("same-size"))
        .unwrap();
    f.write_all_at(&[b'a'; 8192], 0).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(&[b'b'; 8192], 0).unwrap();
    let mut cached = vec![0; 8192];
    f.read_exact_at(&mut cached, 0).unwrap(); // in the kernel's page cache now
    assert_bytes(&cached, &[b'b'; 8192]);
    drop(f);
    assert_bytes(&fs::read(m.at("same-size")).unwrap(), &[b'b'; 8192]);

    let g = File::create(m.at("shrinks")).unwrap();
    g.write_all_at(&[b'1'; 100], 0).unwrap();
    g.sync_all().unwrap();
    g.write_all_at(&[b'2'; 20000], 100).unwrap();
    drop(g);
    assert_eq!(fs::read(m.at("shrinks")).unwrap().len(), 20100);

    m.fs.lose_unsynced().unwrap();
    assert_bytes(&fs::read(m.at("same-size")).unwrap(), &[b'a'; 8192]);
    assert_bytes(&fs::read(m.at("shrinks")).unwrap(), &[b'1'; 100]);
    assert_eq!(fs::metadata(m.at("shrinks")).unwrap().len(), 100);
}

/// bbolt reads its file through a shared read-only map and writes it with pwrite: the map
/// must work (it would not with FOPEN_DIRECT_IO) and see the writes.
#[test]
fn a_shared_read_only_map_sees_writes() {
    let m = mounted();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.at("db"))
        .unwrap();
    f.write_all_at(&[1; 8192], 0).unwrap();
    f.sync_data().unwrap();
    // SAFETY: a test mapping 8192 bytes of an open 8192-byte file, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "{}", io::Error::last_os_error());
    f.write_all_at(&[2; 10], 4096).unwrap();
    // SAFETY: the mapping is 8192 readable bytes until munmap.
    let view = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), 8192) };
    assert_eq!(view[0], 1);
    assert_eq!(view[4096..4106], [2; 10]);
    assert_eq!(view[4106], 1);
    // SAFETY: unmapping what was mapped above; `view` is not used after.
    unsafe { libc::munmap(map, 8192) };
}

#[test]
fn fallocate_is_undone() {
    let m = mounted();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.at("f"))
        .unwrap();
    f.write_all_at(&[b'a'; 4096], 0).unwrap();
    f.sync_all().unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: a test calling fallocate on an open fd.
    let fallocate = |mode, offset, len| unsafe { libc::fallocate(fd, mode, offset, len) };
    assert_eq!(
        fallocate(libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20),
        0,
        "keep-size"
    );
    assert_eq!(f.metadata().unwrap().len(), 4096);
    assert_eq!(
        fallocate(0, 4096, 4096),
        0,
        "{}",
        io::Error::last_os_error()
    );
    assert_eq!(f.metadata().unwrap().len(), 8192);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    assert_eq!(
        fallocate(punch, 0, 4096),
        0,
        "{}",
        io::Error::last_os_error()
    );
    drop(f);
    let now = fs::read(m.at("f")).unwrap();
    assert_bytes(&now, &[0; 8192]);
    assert_eq!(
        m.fs.lose_unsynced().unwrap(),
        Loss {
            files: 1,
            bytes: 8192
        }
    );
    assert_bytes(&fs::read(m.at("f")).unwrap(), &[b'a'; 4096]);
}

#[test]
fn metadata_operations_pass_through() {
    let m = mounted();
    fs::write(m.at("f"), b"x").unwrap();
    fs::set_permissions(m.at("f"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(m.at("f")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(m.backing_at("f")).unwrap().mode() & 0o777,
        0o600
    );
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(m.at("f"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(fs::metadata(m.at("f")).unwrap().modified().unwrap(), when);
    std::os::unix::fs::symlink("f", m.at("link")).unwrap();
    assert_eq!(fs::read_link(m.at("link")).unwrap(), Path::new("f"));
    assert_eq!(fs::read(m.at("link")).unwrap(), b"x");
    assert!(fs::metadata(m.mnt.path()).unwrap().is_dir());

    let c = CString::new(m.at("f").into_os_string().into_vec()).unwrap();
    // SAFETY: valid NUL-terminated paths and a zeroed plain-data out parameter.
    unsafe {
        assert_eq!(libc::access(c.as_ptr(), libc::R_OK | libc::W_OK), 0);
        assert_eq!(libc::access(c.as_ptr(), libc::X_OK), -1); // mode 0600: nobody may run it
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        assert!(st.f_blocks > 0 && st.f_bsize > 0);
    }
}

/// An append-only log, fsynced every few records and rotated, written from a thread; after
/// the loss exactly the synced records remain.
#[test]
fn an_append_only_log_keeps_exactly_its_synced_prefix() {
    let m = mounted();
    fs::create_dir(m.at("wal")).unwrap();
    let dir = m.at("wal");
    let record = |i: u32| format!("record {i:05}\n").into_bytes();
    let writer = thread::spawn(move || {
        let mut segment = File::create(dir.join("0.log")).unwrap();
        for i in 1..=100u32 {
            if i == 51 {
                segment.sync_all().unwrap();
                segment = File::create(dir.join("1.log")).unwrap();
            }
            segment.write_all(&record(i)).unwrap();
            if i % 7 == 0 {
                segment.sync_data().unwrap();
            }
        }
    });
    writer.join().unwrap();
    let loss = m.fs.lose_unsynced().unwrap();
    let mut all = fs::read(m.at("wal/0.log")).unwrap();
    all.extend(fs::read(m.at("wal/1.log")).unwrap());
    let synced: Vec<u8> = (1..=98).flat_map(record).collect();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        String::from_utf8(synced).unwrap()
    );
    assert_eq!(
        loss,
        Loss {
            files: 1,
            bytes: 2 * 13
        }
    );
}

#[test]
fn drop_unmounts() {
    let backing = TempDir::new().unwrap();
    let mnt = TempDir::new().unwrap();
    let lazy = LazyFs::mount(backing.path(), mnt.path()).unwrap();
    assert!(in_proc_mounts(mnt.path()));
    fs::write(mnt.path().join("f"), b"through").unwrap();
    drop(lazy);
    assert!(!in_proc_mounts(mnt.path()));
    assert!(!mnt.path().join("f").exists());
    assert_eq!(fs::read(backing.path().join("f")).unwrap(), b"through");
}

#[test]
fn mounting_twice_at_one_place_is_a_clear_error() {
    let m = mounted();
    let other = TempDir::new().unwrap();
    let err = LazyFs::mount(other.path(), m.mnt.path()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("already a lazyfs mount"), "{err}");
    // The first mount is unharmed.
    fs::write(m.at("f"), b"ok").unwrap();
    assert_eq!(fs::read(m.backing_at("f")).unwrap(), b"ok");
}

/// The child process of `a_mount_left_by_a_dead_process_is_replaced`: mounts and exits
/// without unmounting, as a crashed harness would. Does nothing when run on its own.
#[test]
#[ignore = "run as a child process by a_mount_left_by_a_dead_process_is_replaced"]
fn child_mounts_and_dies() {
    let (Some(backing), Some(mnt)) = (
        std::env::var_os("LAZYFS_CHILD_BACKING"),
        std::env::var_os("LAZYFS_CHILD_MNT"),
    ) else {
        return;
    };
    let lazy = LazyFs::mount(Path::new(&backing), Path::new(&mnt)).unwrap();
    fs::write(Path::new(&mnt).join("from-the-child"), b"child").unwrap();
    std::mem::forget(lazy);
    std::process::exit(0);
}

#[test]
fn a_mount_left_by_a_dead_process_is_replaced() {
    let backing = TempDir::new().unwrap();
    let mnt = TempDir::new().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lazyfs::tests::child_mounts_and_dies",
            "--ignored",
        ])
        .env("LAZYFS_CHILD_BACKING", backing.path())
        .env("LAZYFS_CHILD_MNT", mnt.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let dead = fs::metadata(mnt.path()).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");

    let lazy = LazyFs::mount(backing.path(), mnt.path()).unwrap();
    assert_eq!(
        fs::read(mnt.path().join("from-the-child")).unwrap(),
        b"child"
    );
    fs::write(mnt.path().join("f"), b"alive").unwrap();
    assert_eq!(fs::read(backing.path().join("f")).unwrap(), b"alive");
    drop(lazy);
    assert!(!in_proc_mounts(mnt.path()));
    assert!(fs::metadata(mnt.path()).is_ok());
}

#[test]
fn intervals_merge_and_gap() {
    let mut covered = BTreeMap::new();
    cover(&mut covered, 10, 20);
    cover(&mut covered, 30, 40);
    assert_eq!(gaps(&covered, 0, 50), [(0, 10), (20, 30), (40, 50)]);
    assert_eq!(gaps(&covered, 12, 18), []);
    assert_eq!(gaps(&covered, 15, 35), [(20, 30)]);
    cover(&mut covered, 20, 30);
    assert_eq!(covered.into_iter().collect::<Vec<_>>(), [(10, 40)]);
}

#[test]
fn the_handle_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LazyFs>();
}
