//! The embedded log's settings.

use std::path::PathBuf;

use crate::background::Background;

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
