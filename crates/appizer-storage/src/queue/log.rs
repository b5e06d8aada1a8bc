//! The embedded durable log: a directory of segment files, each named by the offset of
//! its first record, each record `[u32 length][u32 CRC-32C of payload][payload]`
//! (little-endian). One writer thread appends and fsyncs: every append waiting while
//! an fsync runs goes into the next one (group commit), so throughput grows with
//! concurrency while each caller still waits for its own durability. On open, a torn
//! or corrupt tail of the last segment (never acknowledged) is cut off. The committed
//! consumer offset lives in `consumer.offset`, replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::{EventQueue, QueueError, QueueReader, QueueStats, Record};

const HEADER_BYTES: u64 = 8;
const SEGMENT_SUFFIX: &str = ".log";
const OFFSET_FILE: &str = "consumer.offset";

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// A segment that reaches this size is closed and a new one started.
    pub segment_bytes: u64,
    /// Appends fail with [`QueueError::Full`] while the log holds more than this.
    pub max_disk_bytes: u64,
    /// Largest record.
    pub max_record_bytes: usize,
    /// Appends waiting for the writer at most; further callers wait for room.
    pub max_pending_appends: usize,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_disk_bytes: 10 << 30,
            max_record_bytes: 16 << 20,
            max_pending_appends: 4_096,
        }
    }
}

#[derive(Debug, Clone)]
struct Segment {
    base: u64,
    path: PathBuf,
}

struct Shared {
    config: LogConfig,
    segments: Mutex<Vec<Segment>>,
    disk_bytes: AtomicU64,
    committed: AtomicU64,
    commit_lock: tokio::sync::Mutex<()>,
    /// Offset the next record gets; published after each fsync.
    durable_end: watch::Receiver<u64>,
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

/// Reads one record at the reader's position: `Ok(None)` at a clean end, `Err` with the
/// reason at a torn or corrupt record.
fn read_record(reader: &mut impl Read, max: usize) -> Result<Option<Vec<u8>>, String> {
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
    if len > max {
        return Err(format!("record length {len} exceeds {max}"));
    }
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|_| "torn record payload".to_string())?;
    if crc32c::crc32c(&payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(Some(payload))
}

impl DurableLog {
    /// Opens (creating) the log in `config.dir`, repairing a torn tail.
    pub fn open(config: LogConfig) -> Result<Self, QueueError> {
        fs::create_dir_all(&config.dir)?;
        let mut bases: Vec<u64> = fs::read_dir(&config.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        if bases.is_empty() {
            File::create(segment_path(&config.dir, 0))?.sync_all()?;
            sync_dir(&config.dir)?;
            bases.push(0);
        }
        let segments: Vec<Segment> = bases
            .iter()
            .map(|&base| Segment {
                base,
                path: segment_path(&config.dir, base),
            })
            .collect();

        // Validate the last segment and cut a torn tail; count its records.
        let last = segments.last().expect("one segment").clone();
        let mut reader = BufReader::new(File::open(&last.path)?);
        let (mut records, mut valid_len) = (0u64, 0u64);
        loop {
            match read_record(&mut reader, config.max_record_bytes) {
                Ok(Some(payload)) => {
                    records += 1;
                    valid_len += HEADER_BYTES + payload.len() as u64;
                }
                Ok(None) => break,
                Err(reason) => {
                    tracing::warn!(segment = %last.path.display(), valid_len, reason, "cutting the unacknowledged tail of the queue log");
                    break;
                }
            }
        }
        let file = OpenOptions::new().write(true).open(&last.path)?;
        if file.metadata()?.len() != valid_len {
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        let end = last.base + records;
        let committed = read_offset(&config.dir)?.min(end);
        let disk_bytes = segments
            .iter()
            .map(|s| fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0))
            .sum();

        let (durable_tx, durable_rx) = watch::channel(end);
        let (appends_tx, appends_rx) = mpsc::channel(config.max_pending_appends.max(1));
        let shared = Arc::new(Shared {
            config,
            segments: Mutex::new(segments),
            disk_bytes: AtomicU64::new(disk_bytes),
            committed: AtomicU64::new(committed),
            commit_lock: tokio::sync::Mutex::new(()),
            durable_end: durable_rx,
        });
        let writer = Writer {
            shared: shared.clone(),
            file: BufWriter::with_capacity(
                1 << 20,
                OpenOptions::new().append(true).open(&last.path)?,
            ),
            segment_len: valid_len,
            next: end,
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
    segment_len: u64,
    next: u64,
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
        self.file.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.file
            .write_all(&crc32c::crc32c(payload).to_le_bytes())?;
        self.file.write_all(payload)
    }

    fn roll(&mut self) -> std::io::Result<()> {
        let dir = &self.shared.config.dir;
        let path = segment_path(dir, self.next);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.sync_all()?;
        sync_dir(dir)?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.segment_len = 0;
        self.shared.segments.lock().push(Segment {
            base: self.next,
            path,
        });
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) {
        tracing::error!(error = %e, "queue log write failed; refusing further appends");
        self.failed = Some(e.to_string());
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
                fs::remove_file(&segment.path)?;
                shared.disk_bytes.fetch_sub(size, Ordering::Relaxed);
            }
            Ok(())
        })
        .await
        .map_err(|e| QueueError::Io(std::io::Error::other(e)))?
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
    reader: BufReader<File>,
    /// Offset of the segment's first record.
    base: u64,
    /// Offset of the record at the reader's position.
    at: u64,
    /// First offset of the next segment, if one exists.
    next_base: Option<u64>,
}

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
        let mut reader = BufReader::with_capacity(1 << 20, File::open(&segment.path)?);
        reader.seek(SeekFrom::Start(0))?;
        let mut at = segment.base;
        while at < self.next {
            read_record(&mut reader, self.shared.config.max_record_bytes)
                .map_err(QueueError::Corrupt)?
                .ok_or_else(|| {
                    QueueError::Corrupt(format!("offset {} is past the log", self.next))
                })?;
            at += 1;
        }
        self.open = Some(OpenSegment {
            reader,
            base: segment.base,
            at,
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
            let payload = read_record(&mut open.reader, self.shared.config.max_record_bytes)
                .map_err(QueueError::Corrupt)?
                .ok_or_else(|| QueueError::Corrupt(format!("record {} is missing", open.at)))?;
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
        // File reads are short and sequential; on a multi-threaded runtime, let the other
        // tasks move to another worker meanwhile.
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
    async fn a_torn_tail_is_cut_and_a_corrupt_record_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
            for i in 0..3u8 {
                log.append(vec![i; 10]).await.unwrap();
            }
        }
        let path = segment_path(dir.path(), 0);
        // A crash mid-write leaves half a record behind.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[10, 0, 0, 0, 1, 2]).unwrap();
        drop(file);
        let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
        assert_eq!(log.stats().end, 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 * 18);
        assert_eq!(log.append(vec![9; 10]).await.unwrap(), 3);
        assert_eq!(read_all(&log, 0).await.len(), 4);
        drop(log);

        // Flip a payload byte of record 1: the checksum catches it on open.
        let mut bytes = fs::read(&path).unwrap();
        bytes[18 + 8] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
        assert_eq!(
            log.stats().end,
            1,
            "everything from the corrupt record on is cut"
        );
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
}
