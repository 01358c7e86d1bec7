//! The spool: an append-only, crash-safe queue of records on local disk.
//!
//! The [`BatchWriter`](super::BatchWriter) puts records here when its store is down (or its
//! queue is full) and replays them, oldest first, when the store is back. A store is
//! idempotent by request id, so replaying a record twice is harmless; losing one is not.
//!
//! # Layout
//!
//! A directory of **segment** files, `00000000000000000001.seg`, `…002.seg`, … (the number
//! orders them), and a `LOCK` file that one process at a time holds (an advisory lock:
//! a second writer on the same directory gets [`SpoolError::Locked`]). Records are appended
//! to the last segment; a new one starts once the last has reached
//! [`SpoolConfig::segment_bytes`].
//!
//! Each record is one **frame**:
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 (IEEE) of the 4 length bytes followed by the payload
//! …       payload: the record, in the versioned binary form of the `codec` module
//! ```
//!
//! # Durability (fsync policy)
//!
//! [`Spool::append`] writes its frames with one `write` and calls `fdatasync` before it
//! returns, so a record counts as spooled only once it is on disk; the writer lets go of a
//! batch only after that. A new segment's directory entry is synced too. Replay removes a
//! segment only after the store has acknowledged every record in it ([`Spool::pop`]);
//! a crash before that replays the acknowledged part of the segment again, which the
//! idempotent store ignores.
//!
//! # Recovery
//!
//! [`Spool::open`] reads every segment and checks every frame. The first frame that is
//! cut short (a crash during an append: it was never acknowledged) or that fails its
//! checksum ends the segment's readable part:
//!
//! * a **torn tail** — an incomplete last frame, or a last frame failing its checksum —
//!   in the last segment is truncated away (a warning);
//! * anything else — a bad frame followed by more bytes, or in an earlier segment — is
//!   **corruption**: since a bad length means the next frame cannot be found, the rest of
//!   the segment is moved to `<segment>.<offset>.corrupt` for inspection and the segment
//!   truncated there (an error log with the counts). The frames before it are kept.
//!
//! A frame that passes its checksum but does not decode (written by a newer version, say)
//! is handled like corruption when replay reaches it.
//!
//! # Size cap
//!
//! The segment files together stay under [`SpoolConfig::max_bytes`]: an append takes the
//! records that fit, in order, and refuses the rest; the caller counts them as lost.
//!
//! The spool does blocking file I/O; async code calls it from `spawn_blocking`.
//!
//! ```
//! use usage_layer::sink::{Spool, SpoolConfig};
//! use usage_layer::{RequestId, UsageRecord};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let mut spool = Spool::open(SpoolConfig::new(dir.path()))?;
//! let record = UsageRecord::new(RequestId::new(), chrono::Utc::now());
//! assert_eq!(spool.append(std::slice::from_ref(&record))?, 1); // on disk now
//! let batch = spool.peek(500)?; // the oldest records, still spooled
//! assert_eq!(batch, [record]);
//! // … the store took `batch` …
//! spool.pop()?;
//! assert!(spool.is_empty());
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::codec;
use crate::record::UsageRecord;

/// Where the spool lives and how large it may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolConfig {
    /// The spool's directory (created if missing).
    pub dir: PathBuf,
    /// The most bytes all segments together may hold; records beyond are refused.
    pub max_bytes: u64,
    /// A segment that has reached this size is closed and a new one started.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    /// A spool in `dir`, at most 1 GiB in 16 MiB segments.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
        }
    }
}

/// A failure of the spool's file I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// Reading, writing, syncing, renaming or removing a file failed.
    #[error("usage spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Another writer (this process or another) holds the spool directory.
    #[error("usage spool {0} is in use by another writer")]
    Locked(PathBuf),
}

/// The largest payload a frame may declare; larger declared lengths are corruption.
const MAX_PAYLOAD: usize = 16 << 20;
const HEADER: usize = 8;
const SUFFIX: &str = ".seg";

/// An append-only queue of records on disk; see the [module docs](self).
pub struct Spool {
    config: SpoolConfig,
    // Held (and locked) for the spool's life.
    _lock: File,
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    /// The last segment, open for appending.
    tail: Option<File>,
    next_id: u64,
    /// How far replay has got in the first segment: bytes and records acknowledged.
    acked: Position,
    /// What the last `peek` returned, up to where it ends; `pop` acknowledges it.
    peeked: Option<Position>,
    /// `started_at` of the next record to replay.
    head: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Position {
    offset: u64,
    records: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    /// Bytes of whole, checked frames.
    len: u64,
    records: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, checking every frame; see
    /// [Recovery](self#recovery).
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
            Err(fs::TryLockError::Error(source)) => {
                return Err(SpoolError::Io {
                    path: lock_path,
                    source,
                });
            }
        }

        let mut ids = Vec::new();
        // Past quarantined segments count too: a new segment never reuses their number.
        let mut last_id = 0;
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let Some((id, rest)) = name.to_str().and_then(|name| name.split_once(SUFFIX)) else {
                continue;
            };
            let Ok(id) = id.parse::<u64>() else { continue };
            last_id = last_id.max(id);
            if rest.is_empty() {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut spool = Spool {
            next_id: last_id + 1,
            config,
            _lock: lock,
            segments: VecDeque::with_capacity(ids.len()),
            tail: None,
            acked: Position::default(),
            peeked: None,
            head: None,
        };
        let last = ids.last().copied();
        for id in ids {
            let path = spool.segment_path(id);
            let scan = scan(&path)?;
            let mut segment = Segment {
                id,
                path,
                len: scan.valid.offset,
                records: scan.valid.records,
            };
            if scan.valid.offset < scan.file_len {
                let torn = Some(id) == last && scan.torn_tail;
                spool.cut(&mut segment, scan.file_len, torn, None)?;
            }
            if segment.records == 0 {
                remove(&segment.path)?;
            } else {
                spool.segments.push_back(segment);
            }
        }
        sync_dir(&spool.config.dir)?;
        if let Some(last) = spool.segments.back() {
            spool.tail = Some(open_append(&last.path)?);
        }
        spool.refresh_head()?;
        Ok(spool)
    }

    /// Appends as many of `records` as fit under the size cap, in order, with one write,
    /// and syncs them to disk. Returns how many were appended: the first `n`; the rest
    /// were refused. On an error nothing of this call was appended.
    pub fn append(&mut self, records: &[UsageRecord]) -> Result<usize, SpoolError> {
        let room = self.config.max_bytes.saturating_sub(self.bytes());
        let mut frames = Vec::new();
        let mut appended = 0;
        for record in records {
            let start = frames.len();
            frames.extend_from_slice(&[0; HEADER]);
            codec::encode(record, &mut frames);
            let payload_len = frames.len() - start - HEADER;
            if payload_len > MAX_PAYLOAD || frames.len() as u64 > room {
                frames.truncate(start);
                break;
            }
            let len = (payload_len as u32).to_le_bytes();
            let crc = checksum(len, &frames[start + HEADER..]);
            frames[start..start + 4].copy_from_slice(&len);
            frames[start + 4..start + HEADER].copy_from_slice(&crc);
            appended += 1;
        }
        if appended == 0 {
            return Ok(0);
        }
        let was_empty = self.is_empty();
        // A segment is closed once an append finds it full, so one append is one write.
        let full = self
            .segments
            .back()
            .is_none_or(|tail| tail.len >= self.config.segment_bytes);
        if self.tail.is_none() || full {
            self.start_segment()?;
        }
        let (Some(file), Some(segment)) = (self.tail.as_mut(), self.segments.back_mut()) else {
            unreachable!("a segment was just started");
        };
        let written = file
            .write_all(&frames)
            .and_then(|()| file.sync_data())
            .map_err(io_at(&segment.path));
        if let Err(error) = written {
            // Take back whatever part was written; and append to a new segment from now
            // on, in case that failed too (the next open then finds a bad tail here).
            let _ = file.set_len(segment.len);
            let empty = (segment.len == 0).then(|| segment.path.clone());
            self.tail = None;
            // A segment started for this append holds nothing: it goes, so that a disk
            // that stays full does not fill the directory with empty files.
            if let Some(path) = empty {
                self.segments.pop_back();
                let _ = std::fs::remove_file(&path);
            }
            return Err(error);
        }
        segment.len += frames.len() as u64;
        segment.records += appended as u64;
        if was_empty {
            self.head = records.first().map(|record| record.started_at);
        }
        Ok(appended)
    }

    /// The next (at most `max`) records to replay, oldest first, without removing them:
    /// [`pop`](Self::pop) does, once the store has taken them. Empty when the spool is.
    pub fn peek(&mut self, max: usize) -> Result<Vec<UsageRecord>, SpoolError> {
        let mut records = Vec::new();
        self.peeked = None;
        if max == 0 {
            return Ok(records);
        }
        // A segment cut short by corruption may have nothing left: go on to the next.
        while records.is_empty() {
            self.remove_done()?;
            let Some(segment) = self.segments.front() else {
                break;
            };
            let path = segment.path.clone();
            let end = segment.len;
            let mut file = File::open(&path).map_err(io_at(&path))?;
            file.seek(SeekFrom::Start(self.acked.offset))
                .map_err(io_at(&path))?;
            let mut reader = BufReader::new(file.take(end - self.acked.offset));
            let mut at = self.acked;
            while records.len() < max && at.offset < end {
                let frame = read_frame(&mut reader, end - at.offset).map_err(io_at(&path))?;
                let decoded = match frame {
                    Frame::Whole(payload) => codec::decode(&payload)
                        .map(|record| (payload.len(), record))
                        .map_err(|error| error.to_string()),
                    Frame::Torn | Frame::Corrupt => {
                        Err("frame cut short or checksum mismatch".to_owned())
                    }
                };
                match decoded {
                    Ok((len, record)) => {
                        at.offset += (HEADER + len) as u64;
                        at.records += 1;
                        records.push(record);
                    }
                    Err(error) => {
                        // Checked at open: the disk changed since, or a newer version wrote it.
                        tracing::error!(%error, segment = %path.display(), offset = at.offset,
                            "usage spool frame unreadable");
                        let mut segment = self.segments.pop_front().expect("the head segment");
                        let file_len = segment.len;
                        let lost = segment.records - at.records;
                        segment.len = at.offset;
                        segment.records = at.records;
                        let cut = self.cut(&mut segment, file_len, false, Some(lost));
                        self.segments.push_front(segment);
                        cut?;
                        break;
                    }
                }
            }
            self.peeked = Some(at);
        }
        Ok(records)
    }

    /// Removes what the last [`peek`](Self::peek) returned; deletes segments that are done.
    pub fn pop(&mut self) -> Result<(), SpoolError> {
        if let Some(peeked) = self.peeked.take() {
            self.acked = peeked;
        }
        self.remove_done()?;
        self.refresh_head()
    }

    /// Records not yet replayed.
    pub fn len(&self) -> u64 {
        let total: u64 = self.segments.iter().map(|segment| segment.records).sum();
        total - self.acked.records
    }

    /// Whether every record was replayed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the segment files take on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.len).sum()
    }

    /// The `started_at` of the next record to replay.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.head
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.config.dir.join(format!("{id:020}{SUFFIX}"))
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let id = self.next_id;
        self.next_id += 1;
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        sync_dir(&self.config.dir)?;
        self.tail = Some(file);
        self.segments.push_back(Segment {
            id,
            path,
            len: 0,
            records: 0,
        });
        Ok(())
    }

    /// Deletes the first segments while every record in them was acknowledged.
    fn remove_done(&mut self) -> Result<(), SpoolError> {
        while let Some(head) = self.segments.front() {
            if self.acked.records < head.records {
                break;
            }
            let done = self.segments.pop_front().expect("the head segment");
            if self.segments.is_empty() {
                self.tail = None;
            }
            self.acked = Position::default();
            remove(&done.path)?;
        }
        Ok(())
    }

    /// Moves the bytes of `segment` past its readable part to a `.corrupt` file (or, for a
    /// torn tail, drops them) and truncates the segment there. `lost` is how many records
    /// that loses, when known.
    fn cut(
        &self,
        segment: &mut Segment,
        file_len: u64,
        torn: bool,
        lost: Option<u64>,
    ) -> Result<(), SpoolError> {
        let cut = file_len - segment.len;
        let path = &segment.path;
        if torn {
            tracing::warn!(segment = %path.display(), bytes = cut, records_kept = segment.records,
                "usage spool: dropping a torn last frame (an append cut short by a crash)");
        } else {
            let quarantine = self.config.dir.join(format!(
                "{:020}{SUFFIX}.{}.corrupt",
                segment.id, segment.len
            ));
            let mut rest = Vec::new();
            let mut file = File::open(path).map_err(io_at(path))?;
            file.seek(SeekFrom::Start(segment.len))
                .map_err(io_at(path))?;
            file.read_to_end(&mut rest).map_err(io_at(path))?;
            let mut out = File::create(&quarantine).map_err(io_at(&quarantine))?;
            out.write_all(&rest)
                .and_then(|()| out.sync_all())
                .map_err(io_at(&quarantine))?;
            tracing::error!(segment = %path.display(), quarantined = %quarantine.display(),
                bytes = cut, records_kept = segment.records, records_lost = ?lost,
                "usage spool corrupt: the rest of the segment cannot be read; records in it are lost");
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_at(path))?;
        file.set_len(segment.len)
            .and_then(|()| file.sync_all())
            .map_err(io_at(path))
    }

    fn refresh_head(&mut self) -> Result<(), SpoolError> {
        let acked = self.acked;
        self.head = None;
        if !self.is_empty() {
            let next = self.peek(1)?;
            self.peeked = None;
            self.acked = acked;
            self.head = next.first().map(|record| record.started_at);
        }
        Ok(())
    }
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.config.dir)
            .field("segments", &self.segments.len())
            .field("records", &self.len())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

enum Frame {
    Whole(Vec<u8>),
    /// The bytes end inside the frame.
    Torn,
    /// The length is impossible or the checksum does not match.
    Corrupt,
}

/// Reads one frame of at most `left` bytes.
fn read_frame(reader: &mut impl Read, left: u64) -> io::Result<Frame> {
    if left < HEADER as u64 {
        return Ok(Frame::Torn);
    }
    let mut header = [0; HEADER];
    reader.read_exact(&mut header)?;
    let (len, crc) = header.split_at(4);
    let len_bytes: [u8; 4] = len.try_into().expect("4 bytes");
    let payload_len = u32::from_le_bytes(len_bytes) as usize;
    if payload_len > MAX_PAYLOAD {
        return Ok(Frame::Corrupt);
    }
    if left < (HEADER + payload_len) as u64 {
        return Ok(Frame::Torn);
    }
    let mut payload = vec![0; payload_len];
    reader.read_exact(&mut payload)?;
    if checksum(len_bytes, &payload) != crc {
        return Ok(Frame::Corrupt);
    }
    Ok(Frame::Whole(payload))
}

/// A segment file's readable part.
struct Scan {
    valid: Position,
    file_len: u64,
    /// What follows the readable part is one incomplete or failing frame, nothing after it.
    torn_tail: bool,
}

fn scan(path: &Path) -> Result<Scan, SpoolError> {
    let file = File::open(path).map_err(io_at(path))?;
    let file_len = file.metadata().map_err(io_at(path))?.len();
    let mut reader = BufReader::new(file);
    let mut valid = Position::default();
    let mut torn_tail = false;
    while valid.offset < file_len {
        match read_frame(&mut reader, file_len - valid.offset).map_err(io_at(path))? {
            Frame::Whole(payload) => {
                valid.offset += (HEADER + payload.len()) as u64;
                valid.records += 1;
            }
            Frame::Torn => {
                torn_tail = true;
                break;
            }
            Frame::Corrupt => {
                torn_tail = rest_is_torn(path, valid.offset)?;
                break;
            }
        }
    }
    Ok(Scan {
        valid,
        file_len,
        torn_tail,
    })
}

/// Whether the bytes of `path` from `offset` on look like an append cut short: one frame
/// (of a sane length) that ends exactly at the end of the file, or only zeros (a file
/// system that grew the file but had not written its data yet).
fn rest_is_torn(path: &Path, offset: u64) -> Result<bool, SpoolError> {
    let mut file = File::open(path).map_err(io_at(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io_at(path))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(io_at(path))?;
    let one_frame = rest
        .first_chunk::<4>()
        .is_some_and(|len| HEADER + u32::from_le_bytes(*len) as usize == rest.len());
    Ok(one_frame || rest.iter().all(|byte| *byte == 0))
}

/// The checksum of a frame: over its length bytes, then its payload.
fn checksum(len: [u8; 4], payload: &[u8]) -> [u8; 4] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize().to_le_bytes()
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_at(path))
}

fn remove(path: &Path) -> Result<(), SpoolError> {
    fs::remove_file(path).map_err(io_at(path))
}

/// Makes created, renamed and removed entries of `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_at(dir))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tempfile::TempDir;

    use super::*;
    use crate::record::RequestId;
    use crate::sink::codec::tests::any_record;

    fn records(n: usize) -> Vec<UsageRecord> {
        (0..n)
            .map(|_| UsageRecord::new(RequestId::new(), Utc::now()))
            .collect()
    }

    fn config(dir: &TempDir) -> SpoolConfig {
        SpoolConfig::new(dir.path())
    }

    fn drain(spool: &mut Spool) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        loop {
            let batch = spool.peek(3).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch);
            spool.pop().unwrap();
        }
    }

    fn segments(dir: &Path, suffix: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_str().unwrap().ends_with(suffix))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir);
        config.segment_bytes = 300; // a few appends per segment
        let sent = records(20);
        let mut spool = Spool::open(config.clone()).unwrap();
        for chunk in sent.chunks(2) {
            assert_eq!(spool.append(chunk).unwrap(), chunk.len());
        }
        assert_eq!(spool.len(), 20);
        assert!(segments(dir.path(), SUFFIX).len() > 2);
        assert_eq!(spool.oldest(), Some(sent[0].started_at));

        // Peeked but not popped: still there after a reopen.
        assert_eq!(spool.peek(2).unwrap(), sent[..2]);
        drop(spool);
        let mut spool = Spool::open(config).unwrap();
        assert_eq!(spool.len(), 20);
        assert_eq!(drain(&mut spool), sent);
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(spool.oldest(), None);
        assert!(
            segments(dir.path(), SUFFIX).is_empty(),
            "replayed segments are removed"
        );
    }

    #[test]
    fn the_size_cap_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let sent = records(10);
        let mut frame = Vec::new();
        codec::encode(&sent[0], &mut frame);
        let mut config = config(&dir);
        config.max_bytes = 4 * (HEADER + frame.len()) as u64;
        let mut spool = Spool::open(config).unwrap();
        assert_eq!(spool.append(&sent[..3]).unwrap(), 3);
        assert_eq!(spool.append(&sent[3..]).unwrap(), 1, "room for one more");
        assert_eq!(spool.append(&sent[4..]).unwrap(), 0);
        assert_eq!(drain(&mut spool), sent[..4]);
        assert_eq!(
            spool.append(&sent[4..6]).unwrap(),
            2,
            "room again once replayed"
        );
    }

    #[test]
    fn a_second_writer_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(config(&dir)).unwrap();
        assert!(matches!(
            Spool::open(config(&dir)),
            Err(SpoolError::Locked(_))
        ));
    }

    /// Writes `sent` to a fresh spool in one segment, and returns that segment's path.
    fn one_segment(dir: &TempDir, sent: &[UsageRecord]) -> PathBuf {
        let mut spool = Spool::open(config(dir)).unwrap();
        spool.append(sent).unwrap();
        drop(spool);
        let [segment] = segments(dir.path(), SUFFIX).try_into().unwrap();
        segment
    }

    #[test]
    fn a_torn_last_frame_is_cut_at_every_offset_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sent = records(3);
        let segment = one_segment(&dir, &sent);
        let whole = fs::read(&segment).unwrap();
        let frame = whole.len() / 3;
        for cut in 2 * frame..whole.len() {
            fs::write(&segment, &whole[..cut]).unwrap();
            let mut spool = Spool::open(config(&dir)).unwrap();
            assert_eq!(spool.len(), 2, "cut at {cut}");
            assert_eq!(fs::metadata(&segment).unwrap().len(), 2 * frame as u64);
            assert_eq!(spool.peek(10).unwrap(), sent[..2]);
            assert!(
                segments(dir.path(), ".corrupt").is_empty(),
                "a torn tail is no corruption"
            );
        }
        // Appending after a cut continues the segment on a frame boundary.
        let mut spool = Spool::open(config(&dir)).unwrap();
        spool.append(&sent[2..]).unwrap();
        drop(spool);
        assert_eq!(drain(&mut Spool::open(config(&dir)).unwrap()), sent);
    }

    #[test]
    fn a_last_frame_failing_its_checksum_or_zeros_after_the_last_frame_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let sent = records(3);
        let segment = one_segment(&dir, &sent);
        let whole = fs::read(&segment).unwrap();
        let frame = whole.len() / 3;

        let mut bad_last = whole.clone();
        bad_last[2 * frame + HEADER + 1] ^= 0x10;
        let mut zeros = whole[..2 * frame].to_vec();
        zeros.extend_from_slice(&[0; 100]);
        for bytes in [bad_last, zeros] {
            fs::write(&segment, &bytes).unwrap();
            let mut spool = Spool::open(config(&dir)).unwrap();
            assert_eq!(spool.peek(10).unwrap(), sent[..2]);
            assert_eq!(fs::metadata(&segment).unwrap().len(), 2 * frame as u64);
            assert!(segments(dir.path(), ".corrupt").is_empty());
        }
    }

    #[test]
    fn a_bad_checksum_in_the_middle_is_quarantined_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sent = records(5);
        let segment = one_segment(&dir, &sent);
        let mut bytes = fs::read(&segment).unwrap();
        let frame = bytes.len() / 5;
        bytes[2 * frame + HEADER + 3] ^= 0x40; // the third record's payload
        fs::write(&segment, &bytes).unwrap();

        let mut spool = Spool::open(config(&dir)).unwrap();
        assert_eq!(spool.len(), 2);
        let [quarantined] = segments(dir.path(), ".corrupt").try_into().unwrap();
        assert_eq!(fs::read(quarantined).unwrap(), bytes[2 * frame..]);
        assert_eq!(drain(&mut spool), sent[..2]);
    }

    #[test]
    fn corruption_in_an_earlier_segment_keeps_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir);
        config.segment_bytes = 1; // one append per segment
        let sent = records(6);
        let mut spool = Spool::open(config.clone()).unwrap();
        for pair in sent.chunks(2) {
            spool.append(pair).unwrap();
        }
        drop(spool);
        let first = segments(dir.path(), SUFFIX)[0].clone();
        let mut bytes = fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1; // the second frame of the first segment
        fs::write(&first, &bytes).unwrap();

        let mut spool = Spool::open(config).unwrap();
        assert_eq!(spool.len(), 5);
        assert_eq!(segments(dir.path(), ".corrupt").len(), 1);
        let expected: Vec<_> = [&sent[..1], &sent[2..]].concat();
        assert_eq!(drain(&mut spool), expected);
    }

    #[test]
    fn corruption_found_during_replay_skips_to_the_next_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir);
        config.segment_bytes = 1;
        let sent = records(4);
        let mut spool = Spool::open(config).unwrap();
        spool.append(&sent[..2]).unwrap();
        spool.append(&sent[2..]).unwrap();
        // The disk changes under the open spool: the first frame goes bad.
        let first = segments(dir.path(), SUFFIX)[0].clone();
        let mut bytes = fs::read(&first).unwrap();
        bytes[HEADER] ^= 1;
        fs::write(&first, &bytes).unwrap();

        assert_eq!(spool.peek(10).unwrap(), sent[2..]);
        spool.pop().unwrap();
        assert!(spool.is_empty());
        assert_eq!(segments(dir.path(), ".corrupt").len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_truncation_keeps_every_whole_frame_before_it(
            sent in proptest::collection::vec(any_record(), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let segment = one_segment(&dir, &sent);
            let whole = fs::read(&segment).unwrap();
            let cut = cut.index(whole.len() + 1);
            fs::write(&segment, &whole[..cut]).unwrap();

            let mut spool = Spool::open(config(&dir)).unwrap();
            // The frames that end at or before the cut.
            let mut end = 0;
            let kept = sent.iter().take_while(|record| {
                let mut payload = Vec::new();
                codec::encode(record, &mut payload);
                end += HEADER + payload.len();
                end <= cut
            }).count();
            prop_assert_eq!(spool.len(), kept as u64);
            prop_assert_eq!(drain(&mut spool), sent[..kept].to_vec());
            prop_assert!(segments(dir.path(), ".corrupt").is_empty());
        }
    }
}
