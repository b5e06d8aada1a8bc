//! The embedded durable log: a directory of segment files, each named by the offset of
//! its first record (`<offset>.seg`). Each record is `[u32 length][u32 CRC-32C][payload]`
//! (little-endian, length at least 1). The CRC covers the length and the payload and
//! continues the CRC of the record before it; the first record's continues a CRC of the
//! segment's base offset. A record therefore checks only at its own place in its own
//! segment, which is what lets segment files be reused.
//!
//! One writer thread appends and fsyncs: every append waiting while an fsync runs goes
//! into the next one (group commit), so throughput grows with concurrency while each
//! caller still waits for its own durability.
//!
//! Segment files are allocated at full size when they start, and records overwrite
//! what is there: an fsync then writes the records alone, with no change of file size or
//! block allocation to record. A segment whose records are all committed becomes a
//! spare (`<offset>.spare`, at most [`MAX_SPARES`]) that the next segment reuses;
//! beyond that it is deleted a few megabytes at a time, as a large delete on a disk
//! that discards freed blocks stalls the fsyncs queued behind it.
//!
//! On open, the last segment is read up to its first record that does not check (a
//! zero length in unwritten space, an older segment's bytes in a reused file, or the
//! torn write of a crash, never acknowledged); the writer goes on from there. Segments
//! of the earlier format (`<offset>.log`: each CRC over the payload alone, files grown
//! by appending) are still read; writing resumes in a new segment. The committed
//! consumer offset lives in `consumer.offset`, replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Take, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::{EventQueue, QueueError, QueueReader, QueueStats, Record};
use crate::background::Background;

const HEADER_BYTES: u64 = 8;
const SEGMENT_SUFFIX: &str = ".seg";
/// Segments of the earlier format, read but no longer written.
const LEGACY_SUFFIX: &str = ".log";
const SPARE_SUFFIX: &str = ".spare";
const OFFSET_FILE: &str = "consumer.offset";
/// Committed segments kept for reuse instead of deleted.
pub const MAX_SPARES: usize = 2;
/// Segments are deleted by cutting this much off at a time, then unlinking.
const DELETE_STEP: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// A segment that reaches this size is closed and a new one started; each is
    /// allocated at this size when it starts.
    pub segment_bytes: u64,
    /// Appends fail with [`QueueError::Full`] while the log's records take more than
    /// this. On top of it the disk holds the unwritten rest of the current segment and
    /// up to [`MAX_SPARES`] spare segments.
    pub max_disk_bytes: u64,
    /// Largest record.
    pub max_record_bytes: usize,
    /// Appends waiting for the writer at most; further callers wait for room.
    pub max_pending_appends: usize,
    /// Where a reader's long reads (a backlog at the tail) run: these threads, below
    /// the request handlers' priority; `None`, the calling runtime thread, which hands
    /// its other tasks on for the read (`block_in_place`).
    pub long_reads: Option<Background>,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_disk_bytes: 10 << 30,
            max_record_bytes: 16 << 20,
            max_pending_appends: 4_096,
            long_reads: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Segment {
    base: u64,
    path: PathBuf,
    /// Written in the earlier format (`.log`).
    legacy: bool,
}

impl Segment {
    fn check(&self) -> Check {
        if self.legacy {
            Check::Plain
        } else {
            Check::Chained(chain_seed(self.base))
        }
    }
}

/// How the records of a segment are checked, as it is read from its start.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Earlier format: each CRC covers its payload.
    Plain,
    /// Each CRC covers the length and payload and continues the CRC held here (the
    /// previous record's, or the segment's seed).
    Chained(u32),
}

fn chain_seed(base: u64) -> u32 {
    crc32c::crc32c(&base.to_le_bytes())
}

fn chained_crc(previous: u32, payload: &[u8]) -> u32 {
    let with_length = crc32c::crc32c_append(previous, &(payload.len() as u32).to_le_bytes());
    crc32c::crc32c_append(with_length, payload)
}

struct Shared {
    config: LogConfig,
    segments: Mutex<Vec<Segment>>,
    /// Committed segment files waiting to be reused.
    spares: Mutex<Vec<PathBuf>>,
    disk_bytes: AtomicU64,
    committed: AtomicU64,
    commit_lock: tokio::sync::Mutex<()>,
    /// Offset the next record gets; published after each fsync.
    durable_end: watch::Receiver<u64>,
    /// The segment being written (its first offset) and how many of its bytes are
    /// durable; updated before `durable_end`, so readers at the tail read no further.
    durable_tail: Mutex<(u64, u64)>,
    /// Why the writer refuses appends, after an I/O error.
    failed: Mutex<Option<String>>,
}

type Append = (Vec<u8>, oneshot::Sender<Result<u64, QueueError>>);

/// The embedded queue backend; see the module docs.
pub struct DurableLog {
    shared: Arc<Shared>,
    appends: mpsc::Sender<Append>,
}

impl std::fmt::Debug for DurableLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableLog")
            .field("dir", &self.shared.config.dir)
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Allocates `file`'s blocks up to `len` (growing it to `len`), so writes below `len`
/// change neither its size nor its allocation. Where the file system cannot, the file
/// only grows.
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(e.into()),
        }
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Starts the segment file for `base`: a spare renamed, else a new file, allocated at
/// `len` and durable with its name.
fn start_segment(shared: &Shared, base: u64) -> std::io::Result<(File, PathBuf)> {
    let dir = &shared.config.dir;
    let len = shared.config.segment_bytes;
    let path = segment_path(dir, base);
    let spare = shared.spares.lock().pop();
    let file = match spare {
        Some(spare) => {
            fs::rename(&spare, &path)?;
            let file = OpenOptions::new().write(true).open(&path)?;
            if file.metadata()?.len() > len {
                file.set_len(len)?;
            }
            file
        }
        None => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?,
    };
    preallocate(&file, len)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Deletes `path` a few megabytes at a time.
fn delete_gradually(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > DELETE_STEP {
        len -= DELETE_STEP;
        file.set_len(len)?;
    }
    drop(file);
    fs::remove_file(path)
}

/// Reads one record at the reader's position: `Ok(None)` at a clean end (the end of
/// the file, or a zero length in a segment's unwritten space), `Err` with the reason at
/// a record that does not check.
fn read_record(
    reader: &mut impl Read,
    max: usize,
    check: &mut Check,
) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; HEADER_BYTES as usize];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err("torn record header".into()),
            Ok(n) => filled += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len == 0 && matches!(check, Check::Chained(_)) {
        return Ok(None);
    }
    if len > max {
        return Err(format!("record length {len} exceeds {max}"));
    }
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|_| "torn record payload".to_string())?;
    match check {
        Check::Plain if crc32c::crc32c(&payload) == crc => {}
        Check::Chained(previous) if chained_crc(*previous, &payload) == crc => {
            *previous = crc;
        }
        _ => return Err("checksum mismatch".into()),
    }
    Ok(Some(payload))
}

impl DurableLog {
    /// Opens (creating) the log in `config.dir`; the writer goes on after the last
    /// record that checks.
    pub fn open(config: LogConfig) -> Result<Self, QueueError> {
        fs::create_dir_all(&config.dir)?;
        let mut segments: Vec<Segment> = Vec::new();
        let mut spares: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(&config.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let base = |suffix: &str| name.strip_suffix(suffix)?.parse::<u64>().ok();
            if let Some(base) = base(SEGMENT_SUFFIX) {
                segments.push(Segment {
                    base,
                    path: entry.path(),
                    legacy: false,
                });
            } else if let Some(base) = base(LEGACY_SUFFIX) {
                segments.push(Segment {
                    base,
                    path: entry.path(),
                    legacy: true,
                });
            } else if base(SPARE_SUFFIX).is_some() {
                spares.push(entry.path());
            }
        }
        segments.sort_by_key(|s| s.base);
        spares.sort();
        for extra in spares.split_off(spares.len().min(MAX_SPARES)) {
            delete_gradually(&extra)?;
        }

        // Find the end of the last segment.
        let (mut end, mut valid_len, mut chain) = (0u64, 0u64, None);
        if let Some(last) = segments.last() {
            let mut reader = BufReader::new(File::open(&last.path)?);
            let mut check = last.check();
            let mut records = 0u64;
            loop {
                match read_record(&mut reader, config.max_record_bytes, &mut check) {
                    Ok(Some(payload)) => {
                        records += 1;
                        valid_len += HEADER_BYTES + payload.len() as u64;
                    }
                    Ok(None) => break,
                    Err(reason) => {
                        // Also how a reused segment's older bytes end it.
                        tracing::debug!(segment = %last.path.display(), valid_len, reason, "end of the queue log");
                        break;
                    }
                }
            }
            end = last.base + records;
            match check {
                Check::Chained(c) => chain = Some(c),
                // An earlier-format segment is only read from now on: cut its torn
                // tail, so its length is its records' as the old writer left them.
                Check::Plain => {
                    let file = OpenOptions::new().write(true).open(&last.path)?;
                    if file.metadata()?.len() > valid_len {
                        file.set_len(valid_len)?;
                        file.sync_all()?;
                    }
                }
            }
        }
        let committed = read_offset(&config.dir)?.min(end);
        let mut disk_bytes = 0;
        for (i, segment) in segments.iter().enumerate() {
            disk_bytes += if i + 1 == segments.len() {
                valid_len
            } else {
                fs::metadata(&segment.path)?.len()
            };
        }

        let (durable_tx, durable_rx) = watch::channel(end);
        let (appends_tx, appends_rx) = mpsc::channel(config.max_pending_appends.max(1));
        let shared = Arc::new(Shared {
            config,
            segments: Mutex::new(Vec::new()),
            spares: Mutex::new(spares),
            disk_bytes: AtomicU64::new(disk_bytes),
            committed: AtomicU64::new(committed),
            commit_lock: tokio::sync::Mutex::new(()),
            durable_end: durable_rx,
            durable_tail: Mutex::new((0, 0)),
            failed: Mutex::new(None),
        });
        // Writing goes on in the last segment, unless there is none or it has the
        // earlier format; an empty one of those is replaced.
        let (file, chain) = match (segments.last(), chain) {
            (Some(last), Some(chain)) => {
                let mut file = OpenOptions::new().write(true).open(&last.path)?;
                file.seek(SeekFrom::Start(valid_len))?;
                (file, chain)
            }
            (last, _) => {
                if let Some(last) = last.filter(|l| l.base == end) {
                    fs::remove_file(&last.path)?;
                    segments.pop();
                }
                let (file, path) = start_segment(&shared, end)?;
                segments.push(Segment {
                    base: end,
                    path,
                    legacy: false,
                });
                valid_len = 0;
                (file, chain_seed(end))
            }
        };
        let base = segments.last().map_or(end, |s| s.base);
        *shared.durable_tail.lock() = (base, valid_len);
        *shared.segments.lock() = segments;
        let writer = Writer {
            base,
            shared: shared.clone(),
            file: BufWriter::with_capacity(1 << 20, file),
            segment_len: valid_len,
            next: end,
            chain,
            durable: durable_tx,
            failed: None,
        };
        std::thread::Builder::new()
            .name("appizer-queue-writer".into())
            .spawn(move || writer.run(appends_rx))?;
        Ok(Self {
            shared,
            appends: appends_tx,
        })
    }
}

fn read_offset(dir: &Path) -> Result<u64, QueueError> {
    match fs::read_to_string(dir.join(OFFSET_FILE)) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| QueueError::Corrupt(format!("{OFFSET_FILE} holds `{}`", text.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

struct Writer {
    shared: Arc<Shared>,
    file: BufWriter<File>,
    /// First offset of the segment being written.
    base: u64,
    segment_len: u64,
    next: u64,
    /// CRC of the last record written (or the segment's seed).
    chain: u32,
    durable: watch::Sender<u64>,
    /// After an I/O error the log refuses appends: what was written is uncertain.
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, mut appends: mpsc::Receiver<Append>) {
        let mut batch: Vec<Append> = Vec::new();
        while let Some(first) = appends.blocking_recv() {
            batch.push(first);
            while batch.len() < 8_192 {
                match appends.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            self.write_batch(&mut batch);
        }
    }

    fn write_batch(&mut self, batch: &mut Vec<Append>) {
        let shared = self.shared.clone();
        let config = &shared.config;
        let mut accepted: Vec<(u64, oneshot::Sender<Result<u64, QueueError>>)> = Vec::new();
        let mut result: Result<(), std::io::Error> = Ok(());
        for (payload, reply) in batch.drain(..) {
            if let Some(reason) = &self.failed {
                let _ = reply.send(Err(QueueError::Io(std::io::Error::other(reason.clone()))));
                continue;
            }
            if payload.is_empty() {
                let _ = reply.send(Err(QueueError::EmptyRecord));
                continue;
            }
            if payload.len() > config.max_record_bytes {
                let _ = reply.send(Err(QueueError::RecordTooLarge {
                    size: payload.len(),
                    limit: config.max_record_bytes,
                }));
                continue;
            }
            let size = HEADER_BYTES + payload.len() as u64;
            if self.shared.disk_bytes.load(Ordering::Relaxed) + size > config.max_disk_bytes {
                let _ = reply.send(Err(QueueError::Full {
                    budget_bytes: config.max_disk_bytes,
                }));
                continue;
            }
            if result.is_ok() {
                result = self.write_record(&payload);
            }
            accepted.push((self.next, reply));
            self.next += 1;
            self.segment_len += size;
            self.shared.disk_bytes.fetch_add(size, Ordering::Relaxed);
        }
        if accepted.is_empty() {
            return;
        }
        let result = result
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.get_ref().sync_data());
        match result {
            Ok(()) => {
                *self.shared.durable_tail.lock() = (self.base, self.segment_len);
                let _ = self.durable.send(self.next);
                for (offset, reply) in accepted {
                    let _ = reply.send(Ok(offset));
                }
                if self.segment_len >= config.segment_bytes {
                    if let Err(e) = self.roll() {
                        self.fail(e);
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                self.fail(e);
                for (_, reply) in accepted {
                    let _ = reply.send(Err(QueueError::Io(std::io::Error::other(message.clone()))));
                }
            }
        }
    }

    fn write_record(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let crc = chained_crc(self.chain, payload);
        self.file.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.file.write_all(&crc.to_le_bytes())?;
        self.file.write_all(payload)?;
        self.chain = crc;
        Ok(())
    }

    fn roll(&mut self) -> std::io::Result<()> {
        // A closed segment's file is as long as its records (the disk budget and
        // reclaiming count it so): cut what is left of an allocation made for a larger
        // `segment_bytes` before a restart.
        let closing = self.file.get_ref();
        if closing.metadata()?.len() > self.segment_len {
            closing.set_len(self.segment_len)?;
        }
        let (file, path) = start_segment(&self.shared, self.next)?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.base = self.next;
        self.segment_len = 0;
        self.chain = chain_seed(self.next);
        self.shared.segments.lock().push(Segment {
            base: self.next,
            path,
            legacy: false,
        });
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) {
        tracing::error!(error = %e, "queue log write failed; refusing further appends");
        self.failed = Some(e.to_string());
        *self.shared.failed.lock() = Some(e.to_string());
    }
}

#[async_trait]
impl EventQueue for DurableLog {
    async fn append(&self, payload: Vec<u8>) -> Result<u64, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.appends
            .send((payload, reply))
            .await
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    fn reader(&self, offset: u64) -> Result<Box<dyn QueueReader>, QueueError> {
        Ok(Box::new(LogReader {
            shared: self.shared.clone(),
            durable: self.shared.durable_end.clone(),
            next: offset,
            open: None,
        }))
    }

    async fn commit(&self, offset: u64) -> Result<(), QueueError> {
        let _guard = self.shared.commit_lock.lock().await;
        let end = *self.shared.durable_end.borrow();
        let offset = offset.min(end);
        if offset <= self.shared.committed.load(Ordering::Acquire) {
            return Ok(());
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || -> Result<(), QueueError> {
            let dir = &shared.config.dir;
            let tmp = dir.join(format!("{OFFSET_FILE}.tmp"));
            let mut file = File::create(&tmp)?;
            file.write_all(offset.to_string().as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, dir.join(OFFSET_FILE))?;
            sync_dir(dir)?;
            shared.committed.store(offset, Ordering::Release);
            // Segments whose every record is below the offset are no longer needed.
            let removable: Vec<Segment> = {
                let mut segments = shared.segments.lock();
                let keep_from = segments.iter().rposition(|s| s.base <= offset).unwrap_or(0);
                segments.drain(..keep_from).collect()
            };
            for segment in removable {
                let size = fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0);
                if shared.spares.lock().len() < MAX_SPARES {
                    let spare = dir.join(format!("{:020}{SPARE_SUFFIX}", segment.base));
                    fs::rename(&segment.path, &spare)?;
                    shared.spares.lock().push(spare);
                } else {
                    delete_gradually(&segment.path)?;
                }
                let _ = shared
                    .disk_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(size))
                    });
            }
            Ok(())
        })
        .await
        .map_err(|e| QueueError::Io(std::io::Error::other(e)))?
    }

    fn max_record_bytes(&self) -> usize {
        self.shared.config.max_record_bytes
    }

    async fn ping(&self) -> Result<(), QueueError> {
        if let Some(reason) = self.shared.failed.lock().clone() {
            return Err(QueueError::Io(std::io::Error::other(reason)));
        }
        if self.appends.is_closed() {
            return Err(QueueError::Closed);
        }
        Ok(())
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            end: *self.shared.durable_end.borrow(),
            committed: self.shared.committed.load(Ordering::Acquire),
            disk_bytes: self.shared.disk_bytes.load(Ordering::Relaxed),
        }
    }
}

struct OpenSegment {
    /// Limited to the durable bytes when this is the segment being written (from
    /// opening on): a read ahead past them would hold unwritten space, or a reused
    /// segment's old records, where the next records are about to be written.
    reader: BufReader<Take<File>>,
    check: Check,
    /// Offset of the segment's first record.
    base: u64,
    /// Offset of the record at the reader's position.
    at: u64,
    /// Byte position of that record in the file.
    position: u64,
    /// First offset of the next segment, if one exists.
    next_base: Option<u64>,
}

/// How many bytes of the segment starting at `base` are durable, when it is the segment
/// being written (`None`: an older segment, complete).
fn durable_bytes(shared: &Shared, base: u64) -> Option<u64> {
    let (tail_base, bytes) = *shared.durable_tail.lock();
    (tail_base == base).then_some(bytes)
}

/// How many durable bytes follow the reader's position in its segment, when that is
/// the segment being written (`None`: an older segment, complete).
fn durable_ahead(shared: &Shared, open: &OpenSegment) -> Option<u64> {
    durable_bytes(shared, open.base).map(|bytes| bytes.saturating_sub(open.position))
}

/// Reads of at most this many bytes at the tail of the log run on the caller's thread;
/// larger ones on [`LogConfig::long_reads`] (without it, the runtime moves the caller's
/// other tasks to another thread meanwhile).
const INLINE_READ_BYTES: u64 = 256 * 1024;

struct LogReader {
    shared: Arc<Shared>,
    durable: watch::Receiver<u64>,
    next: u64,
    open: Option<OpenSegment>,
}

impl LogReader {
    /// Positions the reader at `self.next`, opening its segment.
    fn seek(&mut self) -> Result<(), QueueError> {
        let segments = self.shared.segments.lock().clone();
        let index = segments
            .iter()
            .rposition(|s| s.base <= self.next)
            .ok_or_else(|| {
                QueueError::Corrupt(format!("offset {} is no longer in the log", self.next))
            })?;
        let segment = &segments[index];
        // In the segment being written, positioning reads only durable records too.
        let limit = durable_bytes(&self.shared, segment.base).unwrap_or(u64::MAX);
        let mut reader = BufReader::with_capacity(1 << 20, File::open(&segment.path)?.take(limit));
        let mut check = segment.check();
        let (mut at, mut position) = (segment.base, 0);
        while at < self.next {
            let payload = read_record(&mut reader, self.shared.config.max_record_bytes, &mut check)
                .map_err(QueueError::Corrupt)?
                .ok_or_else(|| {
                    QueueError::Corrupt(format!("offset {} is past the log", self.next))
                })?;
            at += 1;
            position += HEADER_BYTES + payload.len() as u64;
        }
        self.open = Some(OpenSegment {
            reader,
            check,
            base: segment.base,
            at,
            position,
            next_base: segments.get(index + 1).map(|s| s.base),
        });
        Ok(())
    }

    fn read_available(&mut self, max: usize, end: u64) -> Result<Vec<Record>, QueueError> {
        let mut out = Vec::new();
        while out.len() < max && self.next < end {
            if self.open.as_ref().is_none_or(|o| o.next_base == Some(o.at)) {
                self.open = None;
                self.seek()?;
            }
            let open = self.open.as_mut().expect("opened");
            if open.next_base.is_none() {
                // The last segment may have been rolled since it was opened; the next
                // one may start exactly where this reader stands.
                let segments = self.shared.segments.lock();
                open.next_base = segments.iter().find(|s| s.base > open.base).map(|s| s.base);
            }
            if open.next_base == Some(open.at) {
                continue;
            }
            let ahead = durable_ahead(&self.shared, open).unwrap_or(u64::MAX);
            let buffered = open.reader.buffer().len() as u64;
            open.reader
                .get_mut()
                .set_limit(ahead.saturating_sub(buffered));
            let max_bytes = self.shared.config.max_record_bytes;
            // Every byte the reader may read is durable (in the segment being written,
            // no further than the writer's durable bytes), so the record is there.
            let payload = read_record(&mut open.reader, max_bytes, &mut open.check)
                .map_err(QueueError::Corrupt)?
                .ok_or_else(|| QueueError::Corrupt(format!("record {} is missing", open.at)))?;
            open.position += HEADER_BYTES + payload.len() as u64;
            out.push(Record {
                offset: open.at,
                payload,
            });
            open.at += 1;
            self.next += 1;
        }
        Ok(out)
    }
}

#[async_trait]
impl QueueReader for LogReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, QueueError> {
        let end = *self.durable.borrow_and_update();
        if self.next >= end {
            let changed = tokio::time::timeout(wait, self.durable.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return Err(QueueError::Closed);
            }
        }
        let end = *self.durable.borrow_and_update();
        // A few records just written come from the page cache in microseconds: handing
        // the thread's other tasks to another thread for that would cost more than it
        // saves. A long read (a backlog) lets them move.
        let short = self
            .open
            .as_ref()
            .and_then(|open| durable_ahead(&self.shared, open))
            .is_some_and(|ahead| ahead <= INLINE_READ_BYTES);
        if short {
            return self.read_available(max, end);
        }
        if let Some(pool) = self.shared.config.long_reads.clone() {
            // The read moves to the pool with the reader's position; if this call is
            // dropped before it comes back, the reader seeks there again next time.
            let mut detached = LogReader {
                shared: self.shared.clone(),
                durable: self.durable.clone(),
                next: self.next,
                open: self.open.take(),
            };
            let (detached, read) = pool
                .run(move || {
                    let read = detached.read_available(max, end);
                    (detached, read)
                })
                .await;
            (self.next, self.open) = (detached.next, detached.open);
            return read;
        }
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.read_available(max, end))
            }
            _ => self.read_available(max, end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> LogConfig {
        LogConfig {
            segment_bytes: 200,
            ..LogConfig::new(dir)
        }
    }

    async fn read_all(log: &DurableLog, from: u64) -> Vec<Record> {
        let mut reader = log.reader(from).unwrap();
        let mut out = Vec::new();
        loop {
            let batch = reader
                .next_batch(7, Duration::from_millis(20))
                .await
                .unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_read_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let log = DurableLog::open(config(dir.path())).unwrap();
        for i in 0..50u64 {
            assert_eq!(
                log.append(format!("record {i}").into_bytes())
                    .await
                    .unwrap(),
                i
            );
        }
        let records = read_all(&log, 0).await;
        assert_eq!(records.len(), 50);
        assert!(records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as u64 && r.payload == format!("record {i}").into_bytes()));
        assert!(log.shared.segments.lock().len() > 3, "segments rolled");
        let from_middle = read_all(&log, 33).await;
        assert_eq!(from_middle.first().unwrap().offset, 33);
        drop(log);

        let log = DurableLog::open(config(dir.path())).unwrap();
        assert_eq!(log.stats().end, 50);
        assert_eq!(log.append(b"after restart".to_vec()).await.unwrap(), 50);
        assert_eq!(read_all(&log, 48).await.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caught_up_reader_follows_segment_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let log = DurableLog::open(config(dir.path())).unwrap();
        let mut reader = log.reader(0).unwrap();
        // Each append is read at once, so the reader stands exactly at every roll.
        for i in 0..60u64 {
            assert_eq!(
                log.append(format!("record {i}").into_bytes())
                    .await
                    .unwrap(),
                i
            );
            let batch = reader.next_batch(10, Duration::from_secs(1)).await.unwrap();
            assert_eq!(batch.len(), 1, "record {i}");
            assert_eq!(batch[0].offset, i);
        }
        let segments = log.shared.segments.lock().len();
        assert!(segments >= 4, "segments rolled: {segments}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_fsyncs_and_all_get_distinct_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(DurableLog::open(LogConfig::new(dir.path())).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![i as u8; 100]).await.unwrap() })
            })
            .collect();
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.unwrap());
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_tail_is_overwritten_and_a_corrupt_record_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 4096,
            ..LogConfig::new(dir.path())
        };
        {
            let log = DurableLog::open(cfg.clone()).unwrap();
            for i in 0..3u8 {
                log.append(vec![i; 10]).await.unwrap();
            }
        }
        let path = segment_path(dir.path(), 0);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            4096,
            "allocated in full"
        );
        // A crash mid-write leaves half a record behind, then a whole one that was
        // never acknowledged (written out of order).
        let mut bytes = fs::read(&path).unwrap();
        let torn_at = 3 * 18;
        bytes[torn_at..torn_at + 6].copy_from_slice(&[10, 0, 0, 0, 1, 2]);
        let crc = chained_crc(chain_seed(0), &[7; 10]);
        let whole = [&10u32.to_le_bytes()[..], &crc.to_le_bytes(), &[7; 10]].concat();
        bytes[torn_at + 18..torn_at + 36].copy_from_slice(&whole);
        fs::write(&path, &bytes).unwrap();

        let log = DurableLog::open(cfg.clone()).unwrap();
        assert_eq!(log.stats().end, 3);
        assert_eq!(log.stats().disk_bytes, 3 * 18);
        assert_eq!(log.append(vec![9; 10]).await.unwrap(), 3);
        let records = read_all(&log, 0).await;
        assert_eq!(records.len(), 4);
        assert_eq!(records[3].payload, vec![9; 10]);
        drop(log);
        // The stray record after the new one does not continue its chain.
        let log = DurableLog::open(cfg.clone()).unwrap();
        assert_eq!(log.stats().end, 4);
        drop(log);

        // Flip a payload byte of record 1: the checksum catches it on open.
        let mut bytes = fs::read(&path).unwrap();
        bytes[18 + 8] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let log = DurableLog::open(cfg).unwrap();
        assert_eq!(
            log.stats().end,
            1,
            "everything from the corrupt record on is cut"
        );
        assert!(matches!(
            log.append(Vec::new()).await,
            Err(QueueError::EmptyRecord)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_at_the_tail_reads_no_byte_past_the_durable_records() {
        let dir = tempfile::tempdir().unwrap();
        // One segment (allocated in full) holds every record of the test.
        let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
        let mut reader = LogReader {
            shared: log.shared.clone(),
            durable: log.shared.durable_end.clone(),
            next: 0,
            open: None,
        };
        for i in 0..20u64 {
            for j in 0..3 {
                log.append(format!("record {i}.{j}").into_bytes())
                    .await
                    .unwrap();
            }
            let batch = reader.next_batch(10, Duration::from_secs(1)).await.unwrap();
            let read: Vec<_> = batch.iter().map(|r| r.payload.clone()).collect();
            let written: Vec<_> = (0..3)
                .map(|j| format!("record {i}.{j}").into_bytes())
                .collect();
            assert_eq!(read, written);
            // Nothing beyond the records was buffered, and the reader may read no
            // further until more are durable.
            let open = reader.open.as_ref().unwrap();
            assert!(open.reader.buffer().is_empty());
            assert_eq!(open.reader.get_ref().limit(), 0);
            assert_eq!(durable_ahead(&log.shared, open), Some(0));
        }
        // A reader that starts inside the segment (positioning past records) buffers
        // no byte past them either.
        let mut late = LogReader {
            shared: log.shared.clone(),
            durable: log.shared.durable_end.clone(),
            next: 55,
            open: None,
        };
        let batch = late.next_batch(10, Duration::from_secs(1)).await.unwrap();
        let read: Vec<_> = batch.iter().map(|r| r.offset).collect();
        assert_eq!(read, (55..60).collect::<Vec<_>>());
        let open = late.open.as_ref().unwrap();
        assert!(open.reader.buffer().is_empty());
        assert_eq!(open.reader.get_ref().limit(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_segments_are_reused_and_their_old_records_never_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 256,
            ..LogConfig::new(dir.path())
        };
        let files = |suffix: &str| {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(suffix)
                })
                .count()
        };
        let log = DurableLog::open(cfg.clone()).unwrap();
        // 40-byte records (48 on disk): a segment rolls after 6.
        let record = |i: u64| format!("{i:040}").into_bytes();
        // 31 records: the writer rolls a full segment after answering, so the answer
        // to the 31st means the roll after the 30th is done.
        for i in 0..31 {
            log.append(record(i)).await.unwrap();
        }
        log.commit(30).await.unwrap();
        assert_eq!(files(SPARE_SUFFIX), MAX_SPARES, "kept for reuse");
        assert_eq!(files(SEGMENT_SUFFIX), 1);
        // The next segments take the spares: the files hold older records behind the
        // new ones, which must not be read as if they followed them.
        for i in 31..45 {
            log.append(record(i)).await.unwrap();
        }
        assert_eq!(files(SPARE_SUFFIX), 0);
        let read: Vec<u64> = read_all(&log, 30).await.iter().map(|r| r.offset).collect();
        assert_eq!(read, (30..45).collect::<Vec<_>>());
        drop(log);
        let log = DurableLog::open(cfg).unwrap();
        assert_eq!(log.stats().end, 45);
        let records = read_all(&log, 30).await;
        assert!(records.iter().all(|r| r.payload == record(r.offset)));
        assert_eq!(records.len(), 15);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_of_the_earlier_format_are_read_and_writing_goes_on_in_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        // Two records the way the earlier format wrote them: CRC over the payload only,
        // the file ending at the last record.
        let mut legacy = Vec::new();
        for payload in [&b"first"[..], b"second"] {
            legacy.extend((payload.len() as u32).to_le_bytes());
            legacy.extend(crc32c::crc32c(payload).to_le_bytes());
            legacy.extend(payload);
        }
        let records_len = legacy.len() as u64;
        // And half a record a crash left behind.
        legacy.extend([10, 0, 0, 0, 1, 2]);
        let legacy_path = dir.path().join(format!("{:020}.log", 0));
        fs::write(&legacy_path, &legacy).unwrap();
        let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
        assert_eq!(log.stats().end, 2);
        assert_eq!(fs::metadata(&legacy_path).unwrap().len(), records_len);
        assert_eq!(log.stats().disk_bytes, records_len);
        assert_eq!(log.append(b"third".to_vec()).await.unwrap(), 2);
        assert!(segment_path(dir.path(), 2).exists());
        let payloads: Vec<Vec<u8>> = read_all(&log, 0)
            .await
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(payloads, [&b"first"[..], b"second", b"third"]);
        drop(log);
        let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
        assert_eq!(log.stats().end, 3);
        log.commit(3).await.unwrap();
        assert!(!legacy_path.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_smaller_segment_size_after_a_restart_keeps_the_disk_count_true() {
        let dir = tempfile::tempdir().unwrap();
        let big = LogConfig {
            segment_bytes: 64 << 10,
            ..LogConfig::new(dir.path())
        };
        let log = DurableLog::open(big.clone()).unwrap();
        log.append(vec![1; 100]).await.unwrap();
        drop(log);
        // The segment was allocated at 64 KiB; it now closes at 256 bytes.
        let log = DurableLog::open(LogConfig {
            segment_bytes: 256,
            ..big
        })
        .unwrap();
        for _ in 0..5 {
            log.append(vec![2; 100]).await.unwrap();
        }
        assert_eq!(log.stats().disk_bytes, 6 * 108);
        assert_eq!(
            fs::metadata(segment_path(dir.path(), 0)).unwrap().len(),
            3 * 108
        );
        // The writer rolls a full segment after answering its last append: the commit
        // below frees both full segments only once the third one has started.
        let started = std::time::Instant::now();
        while log.shared.segments.lock().len() < 3 {
            assert!(started.elapsed() < Duration::from_secs(10), "no roll");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        log.commit(6).await.unwrap();
        assert_eq!(log.stats().disk_bytes, 0, "{:?}", log.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_persist_reclaim_segments_and_the_budget_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 100,
            max_disk_bytes: 1_000,
            ..LogConfig::new(dir.path())
        };
        let log = DurableLog::open(cfg.clone()).unwrap();
        let mut full = None;
        for _ in 0..100 {
            match log.append(vec![1; 42]).await {
                Ok(_) => {}
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(
            full,
            Some(QueueError::Full {
                budget_bytes: 1_000
            })
        ));
        let stats = log.stats();
        assert_eq!(stats.depth(), stats.end);
        assert!(stats.disk_bytes <= 1_000);

        log.commit(stats.end).await.unwrap();
        assert!(log.stats().disk_bytes < 100, "{:?}", log.stats());
        assert!(log.append(vec![1; 42]).await.is_ok(), "room again");
        drop(log);
        let log = DurableLog::open(cfg).unwrap();
        assert_eq!(log.stats().committed, stats.end);
        assert_eq!(read_all(&log, stats.end).await.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_is_read_on_the_long_reads_pool_even_when_a_read_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Background::new("test-reads", 1, Default::default()).unwrap();
        let log = DurableLog::open(LogConfig {
            segment_bytes: 256 << 10,
            long_reads: Some(pool.clone()),
            ..LogConfig::new(dir.path())
        })
        .unwrap();
        let payload = |i: u64| format!("{i:08}").repeat(512).into_bytes();
        for i in 0..300u64 {
            log.append(payload(i)).await.unwrap();
        }
        // 1.2 MB behind: every read below is a long one.
        let mut reader = log.reader(0).unwrap();
        let first = reader.next_batch(40, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 40);
        // The pool's one thread held busy, so the next read waits behind it there.
        let (started, has_started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn(async move {
            pool.run(move || {
                started.send(()).unwrap();
                let _ = released.recv();
            })
            .await
        });
        tokio::task::spawn_blocking(move || has_started.recv().unwrap())
            .await
            .unwrap();
        // Polled once and dropped: the pool still reads later, the reader forgets that
        // read and seeks again.
        let polled_once = tokio::select! {
            biased;
            batch = reader.next_batch(40, Duration::ZERO) => Some(batch),
            _ = std::future::ready(()) => None,
        };
        assert!(
            polled_once.is_none(),
            "the read went to the pool (inline, it would be done at once)"
        );
        release.send(()).unwrap();
        holder.await.unwrap();
        let mut read = first;
        while read.len() < 300 {
            let batch = reader
                .next_batch(40, Duration::from_millis(50))
                .await
                .unwrap();
            assert!(!batch.is_empty(), "stalled at {}", read.len());
            read.extend(batch);
        }
        for (i, record) in read.iter().enumerate() {
            assert_eq!(record.offset, i as u64);
            assert_eq!(record.payload, payload(i as u64), "record {i}");
        }
        assert!(reader
            .next_batch(40, Duration::from_millis(20))
            .await
            .unwrap()
            .is_empty());
    }
}
