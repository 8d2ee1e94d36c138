//! The Raft log's entries in files of their own (a write-ahead log), apart from the storage
//! engine.
//!
//! Each entry is one record: its length and CRC-32, little-endian `u32`s, then the entry as
//! bincode. Records are appended to the newest segment file (`<seq>.log`, hexadecimal).
//! A segment is preallocated to its full size when it is created, as etcd does with its WAL:
//! an fsync after an append then flushes the data but not a new file size, which on ext4
//! here costs ~0.09 ms instead of ~0.13–0.2 ms for a growing file (RocksDB's WAL grows).
//! Zeros are written a chunk ahead of the records, so that an fsync does not also commit the
//! conversion of the preallocated blocks it covers. When the next record does not fit, the
//! segment is fsynced and a new one begun.
//!
//! The newest entries (a few thousand) are also kept in memory, as appended: applying and
//! replicating them reads them right after they are written.
//!
//! Opening reads every segment once and keeps each entry's place in memory, skipping the
//! entries up to the purge `log_store` recorded (a purge deletes files after it). The newest
//! segment is cut after its last whole record when what follows is a record whose writing
//! never finished (some sector of it still zeros: a tail of writes that were never synced),
//! so stale bytes can never follow new ones. A record that fails its checksum otherwise is
//! damage, and so is anything short of whole in an older segment: opening fails rather than
//! forget entries that were acknowledged. Truncating removes later segments and cuts the one
//! holding the first removed entry; purging forgets entries and deletes segments that hold
//! nothing newer. A read never overlaps a truncation.
//!
//! Not here: the vote, the commit index and the purged log id (`log_store` keeps those in
//! the engine), nor when to fsync — `append` only writes, `sync` makes it durable.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use openraft::entry::RaftEntry;

use super::io_err;
use super::types::{Entry, LogId};

/// Length and CRC-32 of the entry, before it.
const HEADER: u64 = 8;

/// Size a segment is preallocated to (etcd's WAL segments are this size too).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// How far ahead of the records a segment's blocks are written with zeros (see
/// `Wal::write_out`).
const ZEROED_CHUNK: u64 = 1 << 20;

/// The newest entries kept in memory as well: at most this many, of at most this many
/// encoded bytes.
const RECENT_ENTRIES: usize = 4096;
const RECENT_BYTES: usize = 8 << 20;

/// How a [`Wal`] is kept.
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// Size segments are preallocated to and rolled over at.
    pub segment_bytes: u64,
    /// Whether `sync` fsyncs (off only for `--unsafe-no-fsync`: writes still reach the OS).
    pub fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: SEGMENT_BYTES,
            fsync: true,
        }
    }
}

/// Where one entry's record is.
#[derive(Clone, Copy, Debug)]
struct Place {
    segment: u64,
    /// Offset of the record's header in the segment.
    offset: u64,
    /// Length of the entry's bytes after the header.
    len: u32,
}

impl Place {
    fn end(&self) -> u64 {
        self.offset + HEADER + u64::from(self.len)
    }
}

struct Inner {
    /// Segment files by sequence number; the last one is written to.
    segments: BTreeMap<u64, Arc<File>>,
    /// Index of the entry `places[0]` is for (the next to append when `places` is empty).
    first: u64,
    places: VecDeque<Place>,
    /// Log id of the last entry in `places`.
    last: Option<LogId>,
    /// Where the next record is written in the newest segment.
    tail: u64,
    /// Up to where the newest segment has been written (records or zeros): blocks before it
    /// are no longer "unwritten" extents, so writing them again needs no metadata at fsync.
    written: u64,
    /// The newest entries as appended (a suffix of the log), with their encoded lengths:
    /// applying and replicating read what was just appended, and read it from here.
    recent: VecDeque<(Entry, u32)>,
    recent_bytes: usize,
}

impl Inner {
    /// Index of the first entry in `recent`.
    fn recent_first(&self) -> u64 {
        self.first + (self.places.len() - self.recent.len()) as u64
    }

    fn keep_recent(&mut self, entry: Entry, len: u32) {
        self.recent.push_back((entry, len));
        self.recent_bytes += len as usize;
        while self.recent.len() > RECENT_ENTRIES || self.recent_bytes > RECENT_BYTES {
            self.drop_oldest_recent();
        }
    }

    fn drop_oldest_recent(&mut self) {
        if let Some((_, len)) = self.recent.pop_front() {
            self.recent_bytes -= len as usize;
        }
    }

    fn drop_newest_recent(&mut self) {
        if let Some((_, len)) = self.recent.pop_back() {
            self.recent_bytes -= len as usize;
        }
    }

    fn newest(&self) -> io::Result<(u64, Arc<File>)> {
        self.segments
            .last_key_value()
            .map(|(seq, file)| (*seq, file.clone()))
            .ok_or_else(|| io::Error::other("the raft log has no segment"))
    }
}

/// The Raft log's entries, in segment files under one directory.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    inner: Mutex<Inner>,
    /// Held shared by reads while they read outside `inner`'s lock, exclusively by
    /// truncation, which rewrites the bytes they read.
    reading: RwLock<()>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn damaged(segment: u64, offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "raft log segment {} is damaged at offset {offset}: {what}",
            segment_name(segment)
        ),
    )
}

/// Gives `file` its full size in allocated blocks (reading as zeros), so appends within it
/// change no file size. Where the filesystem cannot, appends simply grow the file.
fn preallocate(file: &File, bytes: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(bytes) else {
            return;
        };
        // SAFETY: fallocate only reads its integer arguments; the descriptor is open for the
        // life of `file`.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc != 0 {
            tracing::debug!(
                error = %io::Error::last_os_error(),
                "raft log: cannot preallocate a segment"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, bytes);
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How the records of a segment end.
#[derive(Debug, PartialEq)]
enum Ending {
    /// At zeros (the preallocated rest) or at the end of the file.
    Clean,
    /// At a record whose writing did not finish: part of it is still zeros.
    Torn,
    /// At a record that is not zeros and not whole: the disk changed it.
    Damaged(String),
}

/// What reading one segment found.
struct Scanned {
    entries: Vec<(Place, LogId)>,
    /// Offset after the last whole record.
    end: u64,
    ending: Ending,
}

/// Sectors are written whole: a write that did not finish leaves some sector of its record
/// as it was before, zeros (segments are preallocated, and cut back to zeros).
const SECTOR: u64 = 512;

/// Whether some sector's share of the record at `offset` (its header, then `body`) is zeros.
fn has_zero_sector(offset: u64, header: &[u8], body: &[u8]) -> bool {
    let end = offset + (header.len() + body.len()) as u64;
    let byte = |at: u64| {
        let i = (at - offset) as usize;
        if i < header.len() {
            header[i]
        } else {
            body[i - header.len()]
        }
    };
    let mut sector = offset - offset % SECTOR;
    while sector < end {
        let (from, to) = (sector.max(offset), (sector + SECTOR).min(end));
        if (from..to).all(|at| byte(at) == 0) {
            return true;
        }
        sector += SECTOR;
    }
    false
}

fn scan_segment(seq: u64, file: &File) -> io::Result<Scanned> {
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut entries = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; HEADER as usize];
    let mut body = Vec::new();
    let ending = loop {
        if offset + HEADER > size {
            // Fewer bytes than a header are left: zeros (preallocated) or a torn header.
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest)?;
            break if rest.iter().all(|b| *b == 0) {
                Ending::Clean
            } else {
                Ending::Torn
            };
        }
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 {
            // The preallocated zeros after the last record, or a header cut across sectors.
            break if crc == 0 {
                Ending::Clean
            } else {
                Ending::Torn
            };
        }
        if offset + HEADER + u64::from(len) > size {
            // A length past the file: a header half written over zeros.
            break Ending::Torn;
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            break if has_zero_sector(offset, &header, &body) {
                Ending::Torn
            } else {
                Ending::Damaged("checksum mismatch".into())
            };
        }
        let entry = match bincode::deserialize::<Entry>(&body) {
            Ok(entry) => entry,
            Err(e) => break Ending::Damaged(format!("undecodable entry: {e}")),
        };
        entries.push((
            Place {
                segment: seq,
                offset,
                len,
            },
            entry.log_id(),
        ));
        offset += HEADER + u64::from(len);
    };
    Ok(Scanned {
        entries,
        end: offset,
        ending,
    })
}

impl Wal {
    /// Opens (or creates) the log in `dir`; entries up to `purged` are forgotten.
    pub fn open(dir: &Path, opts: WalOptions, purged: Option<u64>) -> io::Result<Wal> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut seqs = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            if let Some(seq) = item.file_name().to_str().and_then(parse_segment_name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut places: VecDeque<Place> = VecDeque::new();
        let mut first = None;
        let mut last: Option<LogId> = None;
        let mut tail = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(segment_name(seq)))?;
            let scanned = scan_segment(seq, &file)?;
            let newest = i + 1 == seqs.len();
            match &scanned.ending {
                Ending::Clean => {}
                // Only the newest segment can hold writes that never finished.
                Ending::Torn if newest => {}
                Ending::Torn => return Err(damaged(seq, scanned.end, "a record cut short")),
                Ending::Damaged(what) => return Err(damaged(seq, scanned.end, what)),
            }
            // Entries up to the purge are dead, whatever precedes or follows them.
            for (place, log_id) in scanned.entries {
                if Some(log_id.index) <= purged {
                    continue;
                }
                if let Some(prev) = last {
                    if log_id.index != prev.index + 1 {
                        return Err(damaged(
                            seq,
                            place.offset,
                            &format!("entry {} follows entry {}", log_id.index, prev.index),
                        ));
                    }
                }
                first.get_or_insert(log_id.index);
                places.push_back(place);
                last = Some(log_id);
            }
            if newest {
                tail = scanned.end;
                if scanned.ending == Ending::Torn {
                    tracing::warn!(
                        segment = %segment_name(seq),
                        offset = scanned.end,
                        "raft log: cutting a torn tail of unsynced writes"
                    );
                }
                // Nothing after the last whole record may survive (a later append could end
                // where an old record begins); the cut bytes are zeros again, preallocated.
                file.set_len(scanned.end)?;
                preallocate(&file, opts.segment_bytes);
                file.sync_data()?;
            }
            segments.insert(seq, Arc::new(file));
        }
        if let (Some(first), Some(purged)) = (first, purged) {
            if first > purged + 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the raft log starts at entry {first} but only entries up to {purged} \
                         were purged: segments are missing from {}",
                        dir.display()
                    ),
                ));
            }
        }
        let mut inner = Inner {
            segments,
            first: first.or(purged.map(|p| p + 1)).unwrap_or(0),
            places,
            last,
            tail,
            written: tail,
            recent: VecDeque::new(),
            recent_bytes: 0,
        };
        if inner.segments.is_empty() {
            let file = create_segment(dir, 0, opts.segment_bytes)?;
            inner.segments.insert(0, Arc::new(file));
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            inner: Mutex::new(inner),
            reading: RwLock::new(()),
        })
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("the raft log lock is poisoned"))
    }

    /// Log id of the last entry, if the log holds any.
    pub fn last_log_id(&self) -> io::Result<Option<LogId>> {
        Ok(self.lock()?.last)
    }

    /// Number of entries held.
    #[cfg(test)]
    pub fn len(&self) -> io::Result<usize> {
        Ok(self.lock()?.places.len())
    }

    /// Whether the log holds no entry.
    #[cfg(test)]
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes `entries` after the last one (each must follow the one before); readable at
    /// once, durable after the next [`Wal::sync`].
    pub fn append(&self, entries: impl IntoIterator<Item = Entry>) -> io::Result<()> {
        let mut inner = self.lock()?;
        let mut buf = Vec::new();
        let mut placed: Vec<(Place, Entry)> = Vec::new();
        let mut expected = inner.first + inner.places.len() as u64;
        for entry in entries {
            let log_id = entry.log_id();
            let empty = inner.places.is_empty() && placed.is_empty();
            if !empty && log_id.index != expected {
                return Err(io::Error::other(format!(
                    "raft log: entry {} appended where {expected} belongs",
                    log_id.index
                )));
            }
            if empty {
                inner.first = log_id.index;
            }
            expected = log_id.index + 1;
            let body = bincode::serialize(&entry).map_err(io_err)?;
            let len = u32::try_from(body.len())
                .map_err(|_| io::Error::other("raft log: an entry over 4 GiB"))?;
            let record = HEADER + u64::from(len);
            let at = inner.tail + buf.len() as u64;
            if at > 0 && at + record > self.opts.segment_bytes {
                self.write_out(&mut inner, &mut buf, &mut placed)?;
                self.roll(&mut inner)?;
            }
            let (segment, _) = inner.newest()?;
            let offset = inner.tail + buf.len() as u64;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            buf.extend_from_slice(&body);
            placed.push((
                Place {
                    segment,
                    offset,
                    len,
                },
                entry,
            ));
        }
        self.write_out(&mut inner, &mut buf, &mut placed)
    }

    /// Writes `buf` at the tail of the newest segment and records the places of its entries.
    fn write_out(
        &self,
        inner: &mut Inner,
        buf: &mut Vec<u8>,
        placed: &mut Vec<(Place, Entry)>,
    ) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (_, file) = inner.newest()?;
        let end = inner.tail + buf.len() as u64;
        if end > inner.written {
            // Zeros ahead of the records, a chunk at a time: preallocated blocks are
            // "unwritten" until first written, and converting them is metadata that every
            // fsync touching new blocks would otherwise commit (an append of a few KiB then
            // costs as much as growing the file). Only this append's fsync pays for it.
            let ahead = (end / ZEROED_CHUNK + 1) * ZEROED_CHUNK;
            let ahead = ahead.min(self.opts.segment_bytes.max(end));
            if ahead > end {
                file.write_all_at(&vec![0; (ahead - end) as usize], end)?;
            }
            inner.written = ahead;
        }
        file.write_all_at(buf, inner.tail)?;
        inner.tail = end;
        buf.clear();
        for (place, entry) in placed.drain(..) {
            inner.places.push_back(place);
            inner.last = Some(entry.log_id());
            inner.keep_recent(entry, place.len);
        }
        Ok(())
    }

    /// Ends the newest segment (synced, so a later segment never holds the only copy of
    /// what follows an unsynced gap, and opening never finds an older segment torn — even
    /// without fsync otherwise, it is once per segment) and begins the next.
    fn roll(&self, inner: &mut Inner) -> io::Result<()> {
        let (seq, file) = inner.newest()?;
        file.sync_data()?;
        let next = create_segment(&self.dir, seq + 1, self.opts.segment_bytes)?;
        inner.segments.insert(seq + 1, Arc::new(next));
        inner.tail = 0;
        inner.written = 0;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> io::Result<()> {
        // Older segments were synced when they were ended.
        let (_, file) = self.lock()?.newest()?;
        if self.opts.fsync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Entries with index in `start..end`, as many as the log holds of them.
    pub fn read(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        // Which bytes to read is decided under the lock, the reading is done outside it (but
        // never during a truncation).
        let _reading = self
            .reading
            .read()
            .map_err(|_| io::Error::other("the raft log lock is poisoned"))?;
        let mut runs: Vec<(Arc<File>, Vec<Place>)> = Vec::new();
        let begin;
        let mut from_memory = Vec::new();
        {
            let inner = self.lock()?;
            let held_end = inner.first + inner.places.len() as u64;
            begin = start.max(inner.first);
            let end = end.min(held_end);
            let recent_first = inner.recent_first();
            for index in begin.max(recent_first)..end {
                let (entry, _) = &inner.recent[(index - recent_first) as usize];
                from_memory.push(entry.clone());
            }
            for index in begin..end.min(recent_first) {
                let place = inner.places[(index - inner.first) as usize];
                match runs.last_mut() {
                    Some((_, run))
                        if run.last().is_some_and(|p| {
                            p.segment == place.segment && p.end() == place.offset
                        }) =>
                    {
                        run.push(place)
                    }
                    _ => {
                        let file =
                            inner.segments.get(&place.segment).cloned().ok_or_else(|| {
                                io::Error::other("raft log: an entry's segment is gone")
                            })?;
                        runs.push((file, vec![place]));
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for (file, run) in runs {
            let (Some(head), Some(tail)) = (run.first(), run.last()) else {
                continue;
            };
            let from = head.offset;
            buf.resize((tail.end() - from) as usize, 0);
            file.read_exact_at(&mut buf, from)?;
            for place in &run {
                let at = (place.offset - from) as usize;
                let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
                let body = &buf[at + HEADER as usize..(place.end() - from) as usize];
                if crc32fast::hash(body) != crc {
                    return Err(damaged(place.segment, place.offset, "checksum mismatch"));
                }
                let entry: Entry = bincode::deserialize(body).map_err(io_err)?;
                let index = begin + out.len() as u64;
                if entry.index() != index {
                    return Err(damaged(
                        place.segment,
                        place.offset,
                        &format!("entry {} where {index} belongs", entry.index()),
                    ));
                }
                out.push(entry);
            }
        }
        out.append(&mut from_memory);
        Ok(out)
    }

    /// Removes every entry after `index` (all of them for `None`), durably: later segments
    /// are deleted and the one holding the first removed entry cut before it.
    pub fn truncate_after(&self, last_kept: Option<LogId>) -> io::Result<()> {
        let _no_reads = self
            .reading
            .write()
            .map_err(|_| io::Error::other("the raft log lock is poisoned"))?;
        let mut inner = self.lock()?;
        let from = last_kept.map_or(0, |l| l.index + 1).max(inner.first);
        let held_end = inner.first + inner.places.len() as u64;
        if from >= held_end {
            return Ok(());
        }
        let cut = inner.places[(from - inner.first) as usize];
        let later: Vec<u64> = inner
            .segments
            .range(cut.segment + 1..)
            .map(|(seq, _)| *seq)
            .collect();
        // Newest first: a crash part way leaves the log a prefix of what it was.
        for seq in later.iter().rev() {
            fs::remove_file(self.dir.join(segment_name(*seq)))?;
            inner.segments.remove(seq);
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        let file = inner
            .segments
            .get(&cut.segment)
            .cloned()
            .ok_or_else(|| io::Error::other("raft log: an entry's segment is gone"))?;
        file.set_len(cut.offset)?;
        preallocate(&file, self.opts.segment_bytes);
        file.sync_data()?;
        inner.tail = cut.offset;
        inner.written = cut.offset;
        let keep = (from - inner.first) as usize;
        let removed = inner.places.len() - keep;
        for _ in 0..removed.min(inner.recent.len()) {
            inner.drop_newest_recent();
        }
        inner.places.truncate(keep);
        inner.last = if inner.places.is_empty() {
            None
        } else {
            last_kept
        };
        Ok(())
    }

    /// Forgets every entry up to `index` and deletes the segments that then hold nothing
    /// (never the newest, which is written to). The caller records the purge durably first:
    /// opening skips entries up to it, wherever they are.
    pub fn purge_through(&self, index: u64) -> io::Result<()> {
        let mut inner = self.lock()?;
        let held_end = inner.first + inner.places.len() as u64;
        if index + 1 >= held_end {
            inner.places.clear();
            inner.last = None;
        } else if index >= inner.first {
            let n = (index + 1 - inner.first) as usize;
            inner.places.drain(..n);
        }
        while inner.recent.len() > inner.places.len() {
            inner.drop_oldest_recent();
        }
        inner.first = inner.first.max(index + 1);
        let (newest, _) = inner.newest()?;
        let keep_from = inner.places.front().map_or(newest, |p| p.segment);
        let doomed: Vec<u64> = inner
            .segments
            .range(..keep_from)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &doomed {
            inner.segments.remove(seq);
        }
        drop(inner);
        for seq in doomed {
            fs::remove_file(self.dir.join(segment_name(seq)))?;
        }
        Ok(())
    }
}

/// Creates segment `seq`, preallocated, and makes its name durable.
fn create_segment(dir: &Path, seq: u64, bytes: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(segment_name(seq)))?;
    preallocate(&file, bytes);
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests;
