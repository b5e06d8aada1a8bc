//! The writer thread: it appends records to the current segment and fsyncs them in
//! groups (every append waiting while an fsync runs goes into the next one), then
//! answers each append with its offset; it rolls to a new segment past
//! `segment_bytes`. After an I/O error it refuses every append: what was written is
//! uncertain.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::errors::write_failed;
use super::segment::{chain_seed, chained_crc, start_segment, Segment, HEADER_BYTES};
use super::Shared;
use crate::queue::QueueError;

/// A record to append and where its offset (or error) goes.
pub(super) type Append = (Vec<u8>, oneshot::Sender<Result<u64, QueueError>>);

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) file: BufWriter<File>,
    /// First offset of the segment being written.
    pub(super) base: u64,
    pub(super) segment_len: u64,
    pub(super) next: u64,
    /// CRC of the last record written (or the segment's seed).
    pub(super) chain: u32,
    pub(super) durable: watch::Sender<u64>,
    /// After an I/O error the log refuses appends: what was written is uncertain.
    pub(super) failed: Option<String>,
}

impl Writer {
    pub(super) fn run(mut self, mut appends: mpsc::Receiver<Append>) {
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
                let _ = reply.send(Err(write_failed(reason)));
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
                    let _ = reply.send(Err(write_failed(&message)));
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
        });
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) {
        tracing::error!(error = %e, "queue log write failed; refusing further appends");
        self.failed = Some(e.to_string());
        *self.shared.failed.lock() = Some(e.to_string());
    }
}
