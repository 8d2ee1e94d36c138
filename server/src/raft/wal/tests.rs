use std::path::Path;

use openraft::entry::RaftEntry;

use super::*;
use crate::raft::types::{Command, TypeConfig};

/// Segments this small hold a few of the test entries each.
const SMALL: u64 = 256;

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        fsync: true,
    }
}

fn entry(term: u64, index: u64) -> Entry {
    Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(term, 1, index),
        Command::Put(vec![index as u8; 40]),
    )
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|i| entry(term, i)).collect()
}

fn ids(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries
        .iter()
        .map(|e| (e.log_id().leader_id.term, e.index()))
        .collect()
}

/// Every entry the log holds, as (term, index).
fn all(wal: &Wal) -> Vec<(u64, u64)> {
    ids(&wal.read(0, u64::MAX).expect("read"))
}

/// A log in a new directory holding entries `1..=n` of term 1, synced.
fn filled(segment_bytes: u64, n: u64) -> (tempfile::TempDir, Wal) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(segment_bytes), None).expect("open");
    wal.append(entries(1, 1..=n)).expect("append");
    wal.sync().expect("sync");
    (dir, wal)
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn entries_read_back_across_segments_and_after_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(SMALL), None).expect("open");
    wal.append(entries(1, 1..=5)).expect("append");
    wal.append(entries(1, 6..=10)).expect("append");
    wal.sync().expect("sync");
    assert!(segment_files(dir.path()).len() > 2, "rolled over");
    assert_eq!(ids(&wal.read(3, 8).expect("read")), ids(&entries(1, 3..=7)));
    drop(wal);

    let wal = Wal::open(dir.path(), opts(SMALL), None).expect("reopen");
    assert_eq!(wal.last_log_id().expect("last").map(|l| l.index), Some(10));
    assert_eq!(all(&wal), ids(&entries(1, 1..=10)));
    wal.append(entries(1, 11..=11))
        .expect("append after reopen");
    assert_eq!(wal.len().expect("len"), 11);
}

#[test]
fn a_new_segment_is_preallocated_to_its_full_size() {
    let (dir, wal) = filled(1 << 20, 3);
    let size = fs::metadata(dir.path().join(segment_name(0)))
        .expect("stat")
        .len();
    assert_eq!(size, 1 << 20);
    drop(wal);
    // The zeros after the last record end the scan; nothing is lost or added.
    let wal = Wal::open(dir.path(), opts(1 << 20), None).expect("reopen");
    assert_eq!(ids(&wal.read(1, 4).expect("read")), ids(&entries(1, 1..=3)));
}

#[test]
fn an_append_out_of_sequence_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(SMALL), None).expect("open");
    wal.append(entries(1, 1..=3)).expect("append");
    let err = wal.append(entries(1, 5..=5)).expect_err("gap");
    assert!(err.to_string().contains("entry 5 appended where 4 belongs"));
    assert_eq!(wal.len().expect("len"), 3);
}

#[test]
fn truncating_into_an_older_segment_removes_the_later_ones_durably() {
    let (dir, wal) = filled(SMALL, 12);
    let before = segment_files(dir.path()).len();
    let keep = wal.read(2, 3).expect("read")[0].log_id();
    wal.truncate_after(Some(keep)).expect("truncate");
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!(wal.last_log_id().expect("last"), Some(keep));
    wal.append(entries(2, 3..=4))
        .expect("append after truncate");
    wal.sync().expect("sync");
    drop(wal);

    let wal = Wal::open(dir.path(), opts(SMALL), None).expect("reopen");
    let mut want = entries(1, 1..=2);
    want.extend(entries(2, 3..=4));
    assert_eq!(all(&wal), ids(&want));
}

#[test]
fn truncating_everything_leaves_an_empty_log_that_takes_any_next_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(SMALL), None).expect("open");
    wal.append(entries(1, 1..=6)).expect("append");
    wal.truncate_after(None).expect("truncate");
    assert_eq!(wal.last_log_id().expect("last"), None);
    assert!(wal.is_empty().expect("empty"));
    wal.append(entries(3, 1..=2)).expect("append");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(SMALL), None).expect("reopen");
    assert_eq!(all(&wal), ids(&entries(3, 1..=2)));
}

#[test]
fn purging_deletes_segments_that_hold_nothing_newer() {
    let (dir, wal) = filled(SMALL, 12);
    let before = segment_files(dir.path()).len();
    wal.purge_through(8).expect("purge");
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!(all(&wal), ids(&entries(1, 9..=12)));
    drop(wal);
    let wal = Wal::open(dir.path(), opts(SMALL), Some(8)).expect("reopen");
    assert_eq!(all(&wal), ids(&entries(1, 9..=12)));

    // Purging past the last entry empties the log; the next entry follows the purge.
    wal.purge_through(20).expect("purge all");
    assert!(wal.is_empty().expect("empty"));
    wal.append(entries(2, 21..=21)).expect("append");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(SMALL), Some(20)).expect("reopen");
    assert_eq!(all(&wal), ids(&entries(2, 21..=21)));
}

#[test]
fn a_log_starting_after_its_recorded_purge_is_refused() {
    let (dir, wal) = filled(SMALL, 12);
    drop(wal);
    fs::remove_file(dir.path().join(segment_name(0))).expect("lose a segment");
    let err = Wal::open(dir.path(), opts(SMALL), Some(1))
        .err()
        .expect("a gap");
    assert!(err.to_string().contains("segments are missing"), "{err}");
}

/// The bytes of one record for `entry`, as `append` writes them.
fn record(entry: &Entry) -> Vec<u8> {
    let body = bincode::serialize(entry).expect("encode");
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn a_torn_tail_is_cut_and_stale_records_after_it_never_return() {
    let (dir, wal) = filled(1 << 20, 3);
    drop(wal);
    // A crash after two more appends, the first (a large entry) only partly on disk — one
    // of its sectors never written — and the second wholly.
    let big = Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(1, 1, 4),
        Command::Put(vec![7; 3000]),
    );
    let path = dir.path().join(segment_name(0));
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    let end: u64 = entries(1, 1..=3)
        .iter()
        .map(|e| record(e).len() as u64)
        .sum();
    let four = record(&big);
    file.write_all_at(&four, end).expect("write");
    let hole = (end / SECTOR + 2) * SECTOR;
    file.write_all_at(&[0; SECTOR as usize], hole)
        .expect("unwrite a sector");
    file.write_all_at(&record(&entry(1, 5)), end + four.len() as u64)
        .expect("write");
    drop(file);

    let wal = Wal::open(dir.path(), opts(1 << 20), None).expect("reopen");
    assert_eq!(wal.last_log_id().expect("last").map(|l| l.index), Some(3));
    // A new entry 4 of another term, the same length as the old one: were entry 5's old
    // record still there, a reopen would now read it after the new 4.
    let new_four = Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(2, 1, 4),
        Command::Put(vec![8; 3000]),
    );
    wal.append([new_four]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(1 << 20), None).expect("reopen");
    let got = all(&wal);
    assert_eq!(got, vec![(1, 1), (1, 2), (1, 3), (2, 4)]);
}

#[test]
fn a_changed_byte_in_the_newest_segment_is_an_error_not_a_cut() {
    let (dir, wal) = filled(1 << 20, 3);
    drop(wal);
    let path = dir.path().join(segment_name(0));
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0xff], 20).expect("flip a byte");
    drop(file);
    let err = Wal::open(dir.path(), opts(1 << 20), None)
        .err()
        .expect("damage");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn damage_in_an_older_segment_is_an_error_not_a_shorter_log() {
    let (dir, wal) = filled(SMALL, 12);
    drop(wal);
    let path = dir.path().join(segment_name(0));
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0xff], 20).expect("flip a byte");
    drop(file);
    let err = Wal::open(dir.path(), opts(SMALL), None)
        .err()
        .expect("damage");
    assert!(err.to_string().contains("is damaged"), "{err}");
}

#[test]
fn reads_from_disk_check_each_record() {
    let (dir, wal) = filled(1 << 20, 3);
    drop(wal);
    // Reopened, nothing is read from memory.
    let wal = Wal::open(dir.path(), opts(1 << 20), None).expect("reopen");
    let path = dir.path().join(segment_name(0));
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0xff], 20).expect("flip a byte");
    let err = wal.read(1, 4).expect_err("checksum");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // Ranges are clamped to what the log holds.
    assert!(wal.read(10, 20).expect("read").is_empty());
}

#[test]
fn reads_spanning_the_entries_kept_in_memory_and_the_older_ones_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(1 << 20), None).expect("open");
    let n = RECENT_ENTRIES as u64 + 100;
    wal.append(entries(1, 1..=n)).expect("append");
    // Entries 1..=100 are only on disk now, the rest in memory too.
    assert_eq!(
        ids(&wal.read(90, 111).expect("read")),
        ids(&entries(1, 90..=110))
    );

    // Truncating and purging keep the entries in memory the newest ones.
    let keep = wal.read(n - 10, n - 9).expect("read")[0].log_id();
    wal.truncate_after(Some(keep)).expect("truncate");
    wal.append(entries(2, n - 9..=n - 5)).expect("append");
    let mut want = entries(1, n - 12..=n - 10);
    want.extend(entries(2, n - 9..=n - 5));
    assert_eq!(ids(&wal.read(n - 12, n + 1).expect("read")), ids(&want));
    wal.purge_through(n - 7).expect("purge");
    assert_eq!(all(&wal), ids(&entries(2, n - 6..=n - 5)));
    drop(wal);
    let wal = Wal::open(dir.path(), opts(1 << 20), Some(n - 7)).expect("reopen");
    assert_eq!(all(&wal), ids(&entries(2, n - 6..=n - 5)));
}
