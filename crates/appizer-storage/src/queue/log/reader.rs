//! Readers of the log: each reads the durable records from its offset on, in order,
//! across segments, and never a byte past what the writer made durable (in the
//! segment being written, unwritten space or a reused file's older records lie
//! beyond). A short read runs on the calling thread; a backlog on
//! [`LogConfig::long_reads`](super::LogConfig::long_reads).

use std::fs::File;
use std::io::{BufReader, Read, Take};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::segment::{chain_seed, read_record, HEADER_BYTES};
use super::Shared;
use crate::queue::{QueueError, QueueReader, Record};

pub(super) struct OpenSegment {
    /// Limited to the durable bytes when this is the segment being written (from
    /// opening on): a read ahead past them would hold unwritten space, or a reused
    /// segment's old records, where the next records are about to be written.
    pub(super) reader: BufReader<Take<File>>,
    /// CRC of the record before the reader's position (or the segment's seed).
    pub(super) chain: u32,
    /// Offset of the segment's first record.
    pub(super) base: u64,
    /// Offset of the record at the reader's position.
    pub(super) at: u64,
    /// Byte position of that record in the file.
    pub(super) position: u64,
    /// First offset of the next segment, if one exists.
    pub(super) next_base: Option<u64>,
}

/// How many bytes of the segment starting at `base` are durable, when it is the segment
/// being written (`None`: an older segment, complete).
fn durable_bytes(shared: &Shared, base: u64) -> Option<u64> {
    let (tail_base, bytes) = *shared.durable_tail.lock();
    (tail_base == base).then_some(bytes)
}

/// How many durable bytes follow the reader's position in its segment, when that is
/// the segment being written (`None`: an older segment, complete).
pub(super) fn durable_ahead(shared: &Shared, open: &OpenSegment) -> Option<u64> {
    durable_bytes(shared, open.base).map(|bytes| bytes.saturating_sub(open.position))
}

/// Reads of at most this many bytes at the tail of the log run on the caller's thread;
/// larger ones on [`LogConfig::long_reads`] (without it, the runtime moves the caller's
/// other tasks to another thread meanwhile).
const INLINE_READ_BYTES: u64 = 256 * 1024;

pub(super) struct LogReader {
    pub(super) shared: Arc<Shared>,
    pub(super) durable: watch::Receiver<u64>,
    pub(super) next: u64,
    pub(super) open: Option<OpenSegment>,
}

impl LogReader {
    pub(super) fn new(shared: Arc<Shared>, next: u64) -> Self {
        Self {
            durable: shared.durable_end.clone(),
            shared,
            next,
            open: None,
        }
    }

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
        let mut chain = chain_seed(segment.base);
        let (mut at, mut position) = (segment.base, 0);
        while at < self.next {
            let payload = read_record(&mut reader, self.shared.config.max_record_bytes, &mut chain)
                .map_err(QueueError::Corrupt)?
                .ok_or_else(|| {
                    QueueError::Corrupt(format!("offset {} is past the log", self.next))
                })?;
            at += 1;
            position += HEADER_BYTES + payload.len() as u64;
        }
        self.open = Some(OpenSegment {
            reader,
            chain,
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
            let payload = read_record(&mut open.reader, max_bytes, &mut open.chain)
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
