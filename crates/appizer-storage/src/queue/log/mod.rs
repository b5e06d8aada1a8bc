//! The embedded durable log: a directory of segment files ([`segment`]: the one
//! on-disk format, its checksum chain and file operations), one writer thread that
//! appends and fsyncs in groups ([`writer`]), readers that read only durable records
//! ([`reader`]), and what is found on disk at open ([`recovery`]).
//!
//! Group commit: every append waiting while an fsync runs goes into the next one, so
//! throughput grows with concurrency while each caller still waits for its own
//! durability.
//!
//! Segment files are allocated at full size when they start, and records overwrite
//! what is there: an fsync then writes the records alone, with no change of file size
//! or block allocation to record. A segment whose records are all committed becomes a
//! spare (`<offset>.spare`, at most [`MAX_SPARES`]) that the next segment reuses;
//! beyond that it is deleted a few megabytes at a time, as a large delete on a disk
//! that discards freed blocks stalls the fsyncs queued behind it.

mod config;
pub mod copy;
mod errors;
mod reader;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

pub use config::LogConfig;
pub use segment::MAX_SPARES;

use super::{EventQueue, QueueError, QueueReader, QueueStats};
use errors::write_failed;
use reader::LogReader;
use recovery::{recover, write_offset};
use segment::{chain_seed, delete_gradually, spare_path, start_segment, Segment};
use writer::{Append, Writer};

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

impl DurableLog {
    /// Opens (creating) the log in `config.dir`; the writer goes on after the last
    /// record that checks.
    pub fn open(config: LogConfig) -> Result<Self, QueueError> {
        let found = recover(&config)?;
        let (durable_tx, durable_rx) = watch::channel(found.end);
        let (appends_tx, appends_rx) = mpsc::channel(config.max_pending_appends.max(1));
        let shared = Arc::new(Shared {
            config,
            segments: Mutex::new(Vec::new()),
            spares: Mutex::new(found.spares),
            disk_bytes: AtomicU64::new(found.disk_bytes),
            committed: AtomicU64::new(found.committed),
            commit_lock: tokio::sync::Mutex::new(()),
            durable_end: durable_rx,
            durable_tail: Mutex::new((0, 0)),
            failed: Mutex::new(None),
        });
        // Writing goes on in the last segment, after its last record that checks.
        let mut segments = found.segments;
        let (file, chain, segment_len) = match segments.last() {
            Some(last) => {
                let mut file = OpenOptions::new().write(true).open(&last.path)?;
                file.seek(SeekFrom::Start(found.valid_len))?;
                (file, found.chain, found.valid_len)
            }
            None => {
                let (file, path) = start_segment(&shared, found.end)?;
                segments.push(Segment {
                    base: found.end,
                    path,
                });
                (file, chain_seed(found.end), 0)
            }
        };
        let base = segments.last().map_or(found.end, |s| s.base);
        *shared.durable_tail.lock() = (base, segment_len);
        *shared.segments.lock() = segments;
        let writer = Writer {
            base,
            shared: shared.clone(),
            file: BufWriter::with_capacity(1 << 20, file),
            segment_len,
            next: found.end,
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
        Ok(Box::new(LogReader::new(self.shared.clone(), offset)))
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
            write_offset(dir, offset)?;
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
                    let spare = spare_path(dir, segment.base);
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
        if let Some(reason) = self.shared.failed.lock().as_deref() {
            return Err(write_failed(reason));
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
